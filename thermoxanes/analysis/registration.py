"""Registration of frames across energies: sub-pixel phase correlation, bilinear shifts.

Each frame is correlated against a running reference (the sum of the frames already
registered), so the reference gains contrast and signal as frames arrive; the
low-contrast frames below the edge are matched against a reference that already holds
the high-contrast post-edge frames when a stack is registered in descending energy.
Frames are NaN-filled and mean-subtracted before the correlation (no apodization
window: a fixed window biases the shift of a large, smooth sample).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from scipy import fft as sfft


@njit(parallel=True, cache=True)
def _shift_bilinear(src, dy, dx, square, out):
    """``out[y, x] = src[y - dy, x - dx]`` by bilinear interpolation; NaN outside.

    With ``square`` the interpolation weights are squared (propagates a variance map).
    """
    n_h, n_w = src.shape
    for y in prange(n_h):
        sy = y - dy
        y0 = int(np.floor(sy))
        fy = sy - y0
        for x in range(n_w):
            sx = x - dx
            x0 = int(np.floor(sx))
            fx = sx - x0
            y1 = y0 + 1 if fy > 0.0 else y0
            x1 = x0 + 1 if fx > 0.0 else x0
            if y0 < 0 or x0 < 0 or y1 > n_h - 1 or x1 > n_w - 1:
                out[y, x] = np.nan
                continue
            w00 = (1.0 - fy) * (1.0 - fx)
            w01 = (1.0 - fy) * fx
            w10 = fy * (1.0 - fx)
            w11 = fy * fx
            if square:
                w00 *= w00
                w01 *= w01
                w10 *= w10
                w11 *= w11
            v = w00 * src[y0, x0]
            if w01 != 0.0:
                v += w01 * src[y0, x1]
            if w10 != 0.0:
                v += w10 * src[y1, x0]
            if w11 != 0.0:
                v += w11 * src[y1, x1]
            out[y, x] = v


def shift_frame(frame: np.ndarray, shift_px: tuple[float, float], *,
                variance: bool = False) -> np.ndarray:
    """Shift a 2-D frame by ``shift_px`` = (rows, columns) pixels, bilinear, NaN outside.

    Same convention as ``scipy.ndimage.shift``: ``out[i] = frame[i - shift]``. With
    ``variance`` the frame is a variance map and the squared weights are used.
    """
    frame = np.asarray(frame)
    if frame.ndim != 2:
        raise ValueError(f"frame: expected a 2-D array, got shape {frame.shape}")
    dtype = frame.dtype if frame.dtype in (np.float32, np.float64) else np.float32
    out = np.empty(frame.shape, dtype=dtype)
    _shift_bilinear(frame.astype(dtype, copy=False), float(shift_px[0]), float(shift_px[1]),
                    bool(variance), out)
    return out


def _prepare(frame: np.ndarray) -> np.ndarray:
    """Frame as float32 with NaNs replaced by the median of the finite pixels, minus its
    mean (the correlation then sees contrast, not the mean level)."""
    f = np.array(frame, dtype=np.float32)
    good = np.isfinite(f)
    if not good.all():
        if not good.any():
            return np.zeros_like(f)
        f[~good] = np.median(f[good])
    f -= np.float32(f.mean(dtype=np.float64))
    return f


#: A correlation peak is trusted when its normalized height exceeds this many times
#: ``1 / sqrt(n_pixels)`` (the height reached by chance between unrelated noise frames).
PEAK_SIGNIFICANCE = 6.0


def _half_weights(n_w: int) -> np.ndarray:
    """Weights of the columns of a real FFT (W // 2 + 1 of them) in sums over the full
    spectrum: 2 for the columns that stand for a conjugate pair, 1 for the zero (and, for
    even W, the Nyquist) column."""
    w = np.full(n_w // 2 + 1, 2.0)
    w[0] = 1.0
    if n_w % 2 == 0:
        w[-1] = 1.0
    return w


def _refine_shift(product: np.ndarray, coarse: np.ndarray, upsample: int, n_w: int,
                  col_weights: np.ndarray) -> np.ndarray:
    """Sub-pixel peak of the cross-correlation whose half spectrum (real FFT) is
    ``product``, near the whole-pixel shift ``coarse`` (rows, columns), on a grid of
    1/upsample pixel: the matrix-multiply DFT of Guizar-Sicairos et al. (2008), as in
    ``skimage.registration.phase_cross_correlation``, over the half spectrum (the
    correlation of real frames is real)."""
    n_h = product.shape[0]
    shift = np.round(coarse * upsample) / upsample
    size = int(np.ceil(upsample * 1.5))
    centre = np.trunc(size / 2.0)
    offset = centre - shift * upsample
    grid = np.arange(size, dtype=np.float64)
    fy = np.fft.fftfreq(n_h, upsample)
    fx = np.fft.rfftfreq(n_w, upsample)
    kx = col_weights[:, None] * np.exp(2j * np.pi * fx[:, None] * (grid - offset[1])[None, :])
    ky = np.exp(2j * np.pi * (grid - offset[0])[:, None] * fy[None, :])
    cc = (ky.astype(np.complex64) @ (product @ kx.astype(np.complex64))).real
    peak = np.unravel_index(int(np.argmax(np.abs(cc))), cc.shape)
    return shift + (np.asarray(peak, dtype=np.float64) - centre) / upsample


class RunningRegistration:
    """Register frames one at a time against the sum of the frames registered so far.

    The reference is kept in Fourier space (half spectrum of a real FFT, complex64); a
    registered frame is added to it with the Fourier shift theorem. A frame whose
    correlation peak is not significant (no contrast, e.g. far below the edge of a thin
    sample) is given the last trusted shift (zero before any) and is not added to the
    reference. The whole-pixel peak comes from one inverse FFT, then the sub-pixel peak
    from a matrix-multiply DFT around it, as in
    ``skimage.registration.phase_cross_correlation`` (``normalization=None``).

    Parameters
    ----------
    frame_shape : tuple of int
        (H, W) of the frames.
    upsample : int
        Sub-pixel precision is 1/upsample pixel.
    workers : int
        Threads of the FFTs (``scipy.fft``); -1: all cores.
    """

    def __init__(self, frame_shape: tuple[int, int], upsample: int = 20,
                 workers: int = -1) -> None:
        self.frame_shape = tuple(int(n) for n in frame_shape)
        self.upsample = int(upsample)
        self.workers = int(workers)
        self._ref_f: np.ndarray | None = None
        self._ref_energy = 0.0
        self._last = np.zeros(2)
        self.n_untrusted = 0
        n_h, n_w = self.frame_shape
        self._col_weights = _half_weights(n_w)
        self._fy = np.fft.fftfreq(n_h)
        self._fx = np.fft.rfftfreq(n_w)

    def _energy(self, spectrum: np.ndarray) -> float:
        """Sum of squares of the real frame whose half spectrum is ``spectrum``."""
        power = (spectrum.real ** 2 + spectrum.imag ** 2).sum(axis=0, dtype=np.float64)
        return float(power @ self._col_weights) / (self.frame_shape[0] * self.frame_shape[1])

    def shift_for(self, frame: np.ndarray) -> np.ndarray:
        """Shift (rows, columns; pixels) that registers ``frame`` with the reference, and
        add the registered frame to the reference. The first frame defines zero shift."""
        prepared = _prepare(frame)
        energy = float(np.dot(prepared.ravel(), prepared.ravel()))
        mov_f = sfft.rfft2(prepared, workers=self.workers)
        if self._ref_f is None:
            if energy > 0:
                self._ref_f = mov_f
                self._ref_energy = energy
            return np.zeros(2)
        if energy == 0.0:
            self.n_untrusted += 1
            return self._last.copy()
        product = self._ref_f * np.conj(mov_f)
        cc = sfft.irfft2(product, s=self.frame_shape, workers=self.workers)
        if float(cc.max()) / np.sqrt(self._ref_energy * energy) < (
                PEAK_SIGNIFICANCE / np.sqrt(prepared.size)):
            self.n_untrusted += 1
            return self._last.copy()
        peak = np.unravel_index(int(np.argmax(np.abs(cc))), cc.shape)
        coarse = np.asarray(peak, dtype=np.float64)
        dims = np.asarray(self.frame_shape, dtype=np.float64)
        wrap = coarse > np.trunc(dims / 2)
        coarse[wrap] -= dims[wrap]
        shift = coarse
        if self.upsample > 1:
            shift = _refine_shift(product, coarse, self.upsample, self.frame_shape[1],
                                  self._col_weights)
        ramp_y = np.exp(-2j * np.pi * self._fy * shift[0]).astype(np.complex64)
        ramp_x = np.exp(-2j * np.pi * self._fx * shift[1]).astype(np.complex64)
        mov_f *= ramp_y[:, None]
        mov_f *= ramp_x[None, :]
        self._ref_f += mov_f
        self._ref_energy = self._energy(self._ref_f)
        self._last = shift
        return shift.copy()


def register_stack(
    stack: np.ndarray,
    variance: np.ndarray | None,
    energies_ev: np.ndarray,
    *,
    upsample: int = 20,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Register every frame of ``stack`` (E, H, W); return shifted copies and the shifts.

    Frames are taken in descending energy (the post-edge frames have the most contrast)
    against a running reference. Pixels shifted in from outside the frame are NaN.

    Returns
    -------
    stack, variance : numpy.ndarray
        Registered copies (``variance`` None if not given).
    shifts : numpy.ndarray
        (E, 2) float64 (rows, columns) shifts in pixels, in the order of ``energies_ev``.
    """
    n_e = stack.shape[0]
    reg = RunningRegistration(stack.shape[1:], upsample)
    shifts = np.zeros((n_e, 2))
    out = np.empty_like(stack)
    out_var = None if variance is None else np.empty_like(variance)
    for i in np.argsort(-np.asarray(energies_ev), kind="stable"):
        shifts[i] = reg.shift_for(stack[i])
        _shift_bilinear(stack[i], shifts[i, 0], shifts[i, 1], False, out[i])
        if variance is not None:
            _shift_bilinear(variance[i], shifts[i, 0], shifts[i, 1], True, out_var[i])
    return out, out_var, shifts
