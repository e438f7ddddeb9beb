"""Dark/flat correction of raw counts to absorbance, with bad-pixel masking.

``mu = -ln((I - dark) / (flat - dark))``. A pixel is bad (``mu`` NaN) where the flat is
not above the dark (zero or negative flat), the flat or the sample is saturated, any
input is NaN, or the sample is not above the dark. Bad pixels stay local: they never
change other pixels.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from thermoxanes.analysis.validation import check_frames

#: Pixels per chunk of the correction kernel (its scratch stays in L1 cache).
_CHUNK = 512
_LN2 = 0.6931471805599453
_SQRT2 = 1.4142135623730951
_TINY = 2.2250738585072014e-308  # smallest normal float64
_EXP_MASK = 0x7FF
_MANT_MASK = 0xFFFFFFFFFFFFF
_ONE_BITS = 0x3FF0000000000000


@njit(cache=True, error_model="numpy", inline="always")
def _log_chunk(r, mant, out, n):
    """``out[:n] = log(r[:n])`` for positive normal float64 ``r``, vectorized (numba has no
    vector libm log): ``r = m * 2**e`` from the bits, ``m`` in ``[sqrt(1/2), sqrt(2))``,
    ``log m = 2 atanh(s)``, ``s = (m - 1) / (m + 1)``, series to ``s**11``
    (relative error below 1e-10). ``mant`` is (n,) int64 scratch."""
    bits = r.view(np.int64)
    for x in range(n):
        mant[x] = (bits[x] & _MANT_MASK) | _ONE_BITS
    m_r = mant.view(np.float64)
    for x in range(n):
        b = bits[x]
        e = np.float64(((b >> 52) & _EXP_MASK) - 1023)
        m = m_r[x]
        up = m > _SQRT2
        m = m * 0.5 if up else m
        e = e + 1.0 if up else e
        s = (m - 1.0) / (m + 1.0)
        s2 = s * s
        poly = 1.0 + s2 * (1.0 / 3.0 + s2 * (0.2 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0
                                                                          + s2 / 11.0))))
        out[x] = e * _LN2 + 2.0 * s * poly


@njit(parallel=True, cache=True, error_model="numpy")
def _absorbance_kernel(sample, flat, dark, saturation, gain, n_flat, n_sample, mu, var, bad):
    """Flat 1-D arrays (float64 scalars): fill ``mu``, ``var`` and ``bad`` in place."""
    size = sample.size
    for c in prange((size + _CHUNK - 1) // _CHUNK):
        i0 = c * _CHUNK
        n = min(_CHUNK, size - i0)
        r = np.empty(_CHUNK)
        mant = np.empty(_CHUNK, dtype=np.int64)
        s_c = sample[i0:i0 + n]
        f_c = flat[i0:i0 + n]
        d_c = dark[i0:i0 + n]
        var_c = var[i0:i0 + n]
        bad_c = bad[i0:i0 + n]
        for x in range(n):
            s = np.float64(s_c[x])
            f = np.float64(f_c[x])
            d = np.float64(d_c[x])
            fs = f - d
            ss = s - d
            ok = ((fs > 0.0) & (ss > 0.0) & (f < saturation) & (s < saturation)
                  & (np.abs(d) < np.inf))
            r[x] = ss / fs if ok else 1.0
            v = gain * (1.0 / (ss * n_sample) + 1.0 / (fs * n_flat))
            var_c[x] = v if ok else np.nan
            bad_c[x] = not ok
        lg = np.empty(_CHUNK)
        _log_chunk(r, mant, lg, n)
        mu_c = mu[i0:i0 + n]
        for x in range(n):
            mu_c[x] = np.nan if bad_c[x] else -lg[x]
        for x in range(n):  # ratios outside the normal range (float input): libm
            if not bad_c[x] and not (_TINY <= r[x] < np.inf):
                mu_c[x] = -np.log(r[x])


def _saturation(*arrays: np.ndarray, saturation_adu: float | None) -> float:
    if saturation_adu is not None:
        return float(saturation_adu)
    levels = [np.iinfo(a.dtype).max for a in arrays if np.issubdtype(a.dtype, np.integer)]
    return float(min(levels)) if levels else np.inf


def correct_counts(
    sample: np.ndarray,
    flat: np.ndarray,
    dark: np.ndarray,
    *,
    gain_adu_per_photon: float = 1.0,
    n_flat: float = 1.0,
    n_sample: float = 1.0,
    saturation_adu: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Absorbance, its Poisson variance and the bad-pixel mask of raw counts.

    Parameters
    ----------
    sample : numpy.ndarray
        Raw sample counts (ADU), any shape.
    flat, dark : numpy.ndarray
        Flat-field and dark counts (ADU), broadcastable to ``sample``. Averages of
        ``n_flat`` flat frames (darks are assumed well averaged: their noise is ignored).
    gain_adu_per_photon : float
        ADU per detected photon: ``var(counts_adu) = gain * signal_adu``.
    n_flat, n_sample : float
        Number of flat (sample) frames averaged into ``flat`` (``sample``).
    saturation_adu : float, optional
        Counts at or above this level are saturated. Default: the integer dtype's
        maximum, no limit for float input.

    Returns
    -------
    mu : numpy.ndarray
        float32 absorbance (natural log), NaN where bad.
    var : numpy.ndarray
        float32 variance of ``mu`` (absorbance^2), NaN where bad.
    bad : numpy.ndarray
        bool, True where the pixel could not be corrected.
    """
    sample = np.asarray(sample)
    flat = np.asarray(flat)
    dark = np.asarray(dark)
    check_frames(sample, flat, dark)
    saturation = _saturation(sample, flat, saturation_adu=saturation_adu)
    shape = sample.shape
    s = np.ascontiguousarray(sample).reshape(-1)
    f = np.ascontiguousarray(np.broadcast_to(flat, shape)).reshape(-1)
    d = np.ascontiguousarray(np.broadcast_to(dark, shape)).reshape(-1)
    mu = np.empty(s.size, dtype=np.float32)
    var = np.empty(s.size, dtype=np.float32)
    bad = np.empty(s.size, dtype=np.bool_)
    _absorbance_kernel(s, f, d, saturation, float(gain_adu_per_photon), float(n_flat),
                       float(n_sample), mu, var, bad)
    return mu.reshape(shape), var.reshape(shape), bad.reshape(shape)


def absorbance(
    sample: np.ndarray,
    flat: np.ndarray,
    dark: np.ndarray,
    *,
    saturation_adu: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Dark/flat-corrected absorbance ``mu = -ln((I - dark) / (flat - dark))``.

    Parameters
    ----------
    sample : numpy.ndarray
        Raw sample counts (ADU), e.g. a frame (H, W) or a stack (E, H, W).
    flat, dark : numpy.ndarray
        Flat and dark counts (ADU), broadcastable to ``sample`` (e.g. (1, H, W) or (H, W)).
    saturation_adu : float, optional
        Saturation level (ADU); default the integer dtype's maximum.

    Returns
    -------
    mu : numpy.ndarray
        float32, same shape as ``sample``; NaN where bad.
    bad : numpy.ndarray
        bool mask of pixels that are zero, negative, saturated or NaN in the flat, or not
        above the dark in the sample.
    """
    mu, _, bad = correct_counts(sample, flat, dark, saturation_adu=saturation_adu)
    return mu, bad
