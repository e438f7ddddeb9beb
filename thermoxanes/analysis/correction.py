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


@njit(parallel=True, cache=True, error_model="numpy")
def _absorbance_kernel(sample, flat, dark, saturation, gain, n_flat, n_sample, mu, var, bad):
    """Flat 1-D arrays (float64 scalars): fill ``mu``, ``var`` and ``bad`` in place."""
    for i in prange(sample.size):
        s = np.float64(sample[i])
        f = np.float64(flat[i])
        d = np.float64(dark[i])
        fs = f - d
        ss = s - d
        if (
            not (fs > 0.0)
            or not (ss > 0.0)
            or not (f < saturation)
            or not (s < saturation)
            or not np.isfinite(d)
        ):
            mu[i] = np.nan
            var[i] = np.nan
            bad[i] = True
        else:
            mu[i] = -np.log(ss / fs)
            var[i] = gain * (1.0 / (ss * n_sample) + 1.0 / (fs * n_flat))
            bad[i] = False


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
