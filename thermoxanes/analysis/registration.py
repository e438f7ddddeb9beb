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
from skimage.registration import phase_cross_correlation


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
    f = np.asarray(frame, dtype=np.float64)
    good = np.isfinite(f)
    if not good.any():
        return np.zeros_like(f)
    f = np.where(good, f, float(np.median(f[good])))
    return f - f.mean()


#: A correlation peak is trusted when its normalized height exceeds this many times
#: ``1 / sqrt(n_pixels)`` (the height reached by chance between unrelated noise frames).
PEAK_SIGNIFICANCE = 6.0


class RunningRegistration:
    """Register frames one at a time against the sum of the frames registered so far.

    The reference is kept in Fourier space; a registered frame is added to it with the
    Fourier shift theorem. A frame whose correlation peak is not significant (no
    contrast, e.g. far below the edge of a thin sample) is given the last trusted shift
    (zero before any) and is not added to the reference.

    Parameters
    ----------
    frame_shape : tuple of int
        (H, W) of the frames.
    upsample : int
        Sub-pixel precision is 1/upsample pixel.
    """

    def __init__(self, frame_shape: tuple[int, int], upsample: int = 20) -> None:
        self.frame_shape = tuple(frame_shape)
        self.upsample = int(upsample)
        self._ref_f: np.ndarray | None = None
        self._ref_energy = 0.0
        self._last = np.zeros(2)
        self.n_untrusted = 0
        n_h, n_w = self.frame_shape
        self._fy = np.fft.fftfreq(n_h)[:, None]
        self._fx = np.fft.fftfreq(n_w)[None, :]

    def shift_for(self, frame: np.ndarray) -> np.ndarray:
        """Shift (rows, columns; pixels) that registers ``frame`` with the reference, and
        add the registered frame to the reference. The first frame defines zero shift."""
        prepared = _prepare(frame)
        energy = float(np.sum(prepared * prepared))
        mov_f = np.fft.fft2(prepared)
        if self._ref_f is None:
            if energy > 0:
                self._ref_f = mov_f
                self._ref_energy = energy
            return np.zeros(2)
        if energy == 0.0:
            self.n_untrusted += 1
            return self._last.copy()
        cc = np.fft.ifft2(self._ref_f * np.conj(mov_f)).real
        peak = float(cc.max()) / np.sqrt(self._ref_energy * energy)
        if peak < PEAK_SIGNIFICANCE / np.sqrt(prepared.size):
            self.n_untrusted += 1
            return self._last.copy()
        shift, _, _ = phase_cross_correlation(
            self._ref_f, mov_f, space="fourier", upsample_factor=self.upsample,
            normalization=None,
        )
        shift = np.asarray(shift, dtype=np.float64)
        ramp = np.exp(-2j * np.pi * (self._fy * shift[0] + self._fx * shift[1]))
        self._ref_f = self._ref_f + mov_f * ramp
        self._ref_energy = float(np.sum(np.abs(self._ref_f) ** 2)) / prepared.size
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
