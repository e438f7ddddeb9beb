"""Detector: structured flat field, dark current, hot pixels, noise, saturation.

A frame is rendered by one numba pass over the detector pixels: map each pixel to the
sample's model grid (magnification about the centre, drift), sample the transmission
bilinearly, multiply by the shifted flat field, scale by exposure, ring current and dose,
then draw photon noise (Gaussian for >= 30 photons, exact Poisson below), add dark current
and read noise, round and clip at saturation. The noise comes from a splitmix64 stream
seeded from the world's :class:`numpy.random.Generator` for each frame, with normal
deviates from a 65536-entry inverse-CDF table (tails cut at 4.3 sigma).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.special import ndtri

from thermoxanes.simulators.geometry import correlated_field

_NORMAL_TABLE = ndtri((np.arange(65536, dtype=np.float64) + 0.5) / 65536.0).astype(np.float32)


@dataclass(frozen=True)
class DetectorParams:
    """sCMOS camera behind the TXM (ADU = counts in the raw frame)."""

    #: Flat-field mean above the dark offset (ADU; raw mean ~1350) at
    #: ``reference_exposure_s`` and the nominal ring current.
    flat_mean_adu: float = 1250.0
    #: Spatial standard deviation of the flat structure (ADU); gives 1st-99th pct ~370-2400.
    flat_sigma_adu: float = 440.0
    reference_exposure_s: float = 0.3
    dark_offset_adu: float = 100.0
    dark_current_adu_per_s: float = 2.0
    read_noise_adu: float = 1.6
    #: Photons (detected) per ADU: sets shot noise, ~1.6 % in a 1350 ADU flat.
    photons_per_adu: float = 3.3
    saturation_adu: int = 65535
    hot_pixel_fraction: float = 2e-4
    hot_pixel_adu_per_s: float = 3000.0


def make_flat_field(
    shape: tuple[int, int], params: DetectorParams, rng: np.random.Generator
) -> np.ndarray:
    """Structured flat field (ADU at the reference exposure), float32 (H, W).

    Condenser illumination (broad, off-centre) times stripes and blobs from the optics,
    scaled to ``flat_mean_adu`` +- ``flat_sigma_adu``.
    """
    h, w = shape
    scale = max(h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = h * rng.uniform(0.4, 0.6), w * rng.uniform(0.4, 0.6)
    broad = -(((yy - cy) / (0.55 * h)) ** 2 + ((xx - cx) / (0.6 * w)) ** 2)
    # Structure is physical (optics), a few pixels at least whatever the binning.
    medium = correlated_field(shape, max(scale / 24.0, 8.0), rng)
    fine = correlated_field(shape, max(scale / 150.0, 3.0), rng)
    stripes = gaussian_filter(rng.standard_normal(w), max(scale / 200.0, 3.0))
    stripes = (stripes - stripes.mean()) / (stripes.std() + 1e-12)
    g = 1.0 * broad + 0.9 * medium + 0.35 * fine + 0.3 * stripes[None, :]
    g = (g - g.mean()) / g.std()
    flat = params.flat_mean_adu + params.flat_sigma_adu * g
    return np.clip(flat, 0.05 * params.flat_mean_adu, None).astype(np.float32)


def make_dark_rate(
    shape: tuple[int, int], params: DetectorParams, rng: np.random.Generator
) -> np.ndarray:
    """Dark current per pixel (ADU/s), float32 (H, W), with hot pixels."""
    rate = np.full(shape, params.dark_current_adu_per_s, dtype=np.float32)
    n_hot = int(round(params.hot_pixel_fraction * rate.size))
    if n_hot:
        idx = rng.choice(rate.size, n_hot, replace=False)
        rate.flat[idx] = params.hot_pixel_adu_per_s * rng.uniform(0.2, 1.0, n_hot)
    return rate


@numba.njit(cache=True, inline="always")
def _splitmix(state):
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return state, z


def _axis_taps(n: int, scale: float, offset: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Left tap index and weight of the bilinear sample at ``k * scale + offset``, clamped."""
    pos = np.clip(np.arange(n) * scale + offset, 0.0, size - 1.0)
    i0 = np.minimum(pos.astype(np.int64), max(size - 2, 0))
    return i0, (pos - i0).astype(np.float32)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _render_rows(
    out, transmission, flat, dark_rate, normal_table, seed,
    ty0, tfy, tx0, tfx, by0, bfy, bx0, bfx,
    signal_scale, photons_per_adu, exposure_s, dark_offset_adu, read_noise_adu,
    saturation_adu, use_sample, use_beam,
):
    h, w = out.shape
    mw = transmission.shape[1]
    fw = flat.shape[1]
    trow = np.empty(mw, dtype=np.float32)
    frow = np.empty(fw, dtype=np.float32)
    state = np.uint64(seed)
    z = np.uint64(0)
    nbuf = 0
    read2 = read_noise_adu * read_noise_adu
    inv_ppa = 1.0 / photons_per_adu
    for i in range(h):
        if use_beam:
            a = bfy[i]
            r0 = by0[i]
            for k in range(fw):
                frow[k] = flat[r0, k] * (1.0 - a) + flat[r0 + 1, k] * a
            if use_sample:
                a = tfy[i]
                r0 = ty0[i]
                for k in range(mw):
                    trow[k] = transmission[r0, k] * (1.0 - a) + transmission[r0 + 1, k] * a
        for j in range(w):
            signal = 0.0
            if use_beam:
                c = bx0[j]
                fl = frow[c] + (frow[c + 1] - frow[c]) * bfx[j]
                if use_sample:
                    c = tx0[j]
                    fl *= trow[c] + (trow[c + 1] - trow[c]) * tfx[j]
                signal = fl * signal_scale
            if nbuf == 0:
                state, z = _splitmix(state)
                nbuf = 4
            zn = normal_table[np.int64(z & np.uint64(0xFFFF))]
            z = z >> np.uint64(16)
            nbuf -= 1
            lam = signal * photons_per_adu
            base = dark_offset_adu + dark_rate[i, j] * exposure_s
            if lam >= 30.0:
                # Photon and read noise together: one Gaussian deviate.
                value = signal + base + math.sqrt(signal * inv_ppa + read2) * zn
            else:
                photons = 0.0
                if lam > 0.0:
                    # Knuth's product of uniforms (exact Poisson for small means).
                    limit = math.exp(-lam)
                    k = -1
                    prod = 1.0
                    while prod > limit:
                        state, u = _splitmix(state)
                        prod *= (np.float64(u >> np.uint64(11)) + 0.5) * (
                            1.0 / 9007199254740992.0
                        )
                        k += 1
                    photons = float(k)
                value = photons * inv_ppa + base + read_noise_adu * zn
            value = math.floor(value + 0.5)
            if value < 0.0:
                value = 0.0
            elif value > saturation_adu:
                value = saturation_adu
            out[i, j] = np.uint16(value)


def render_kernel(
    out: np.ndarray,
    transmission: np.ndarray,
    flat: np.ndarray,
    dark_rate: np.ndarray,
    normal_table: np.ndarray,
    seed: int,
    scale_rows: float,
    scale_cols: float,
    offset_rows: float,
    offset_cols: float,
    beam_rows: float,
    beam_cols: float,
    signal_scale: float,
    photons_per_adu: float,
    exposure_s: float,
    dark_offset_adu: float,
    read_noise_adu: float,
    saturation_adu: float,
    use_sample: bool,
    use_beam: bool,
) -> None:
    """Fill ``out`` (H, W) uint16 with one noisy frame.

    Detector pixel (i, j) sees model-grid point ``(i * scale_rows + offset_rows,
    j * scale_cols + offset_cols)`` of ``transmission`` (bilinear, edge-clamped) and flat
    pixel ``(i - beam_rows, j - beam_cols)``; counts are ``flat * transmission *
    signal_scale`` plus dark offset and dark current (``dark_rate * exposure_s``), with
    photon noise (``photons_per_adu``) and read noise.
    """
    h, w = out.shape
    mh, mw = transmission.shape
    fh, fw = flat.shape
    ty0, tfy = _axis_taps(h, scale_rows, offset_rows, mh)
    tx0, tfx = _axis_taps(w, scale_cols, offset_cols, mw)
    by0, bfy = _axis_taps(h, 1.0, -beam_rows, fh)
    bx0, bfx = _axis_taps(w, 1.0, -beam_cols, fw)
    if mh < 2 or mw < 2:
        transmission = np.ones((2, 2), dtype=np.float32)
        ty0[:] = 0
        tx0[:] = 0
    _render_rows(
        out, transmission, flat, dark_rate, normal_table, np.uint64(seed),
        ty0, tfy, tx0, tfx, by0, bfy, bx0, bfx,
        float(signal_scale), float(photons_per_adu), float(exposure_s),
        float(dark_offset_adu), float(read_noise_adu), float(saturation_adu),
        bool(use_sample), bool(use_beam),
    )


@numba.njit(cache=True, nogil=True)
def resample_kernel(out, maps, scale_rows, scale_cols, offset_rows, offset_cols):
    """Bilinear, edge-clamped resampling of ``maps`` (C, M, M) onto ``out`` (C, H, W).

    Same pixel mapping as :func:`render_kernel`.
    """
    nc, h, w = out.shape
    mh, mw = maps.shape[1], maps.shape[2]
    for i in range(h):
        ym = i * scale_rows + offset_rows
        ym = min(max(ym, 0.0), mh - 1.0)
        y0 = min(int(ym), mh - 2)
        fy = ym - y0
        for j in range(w):
            xm = j * scale_cols + offset_cols
            xm = min(max(xm, 0.0), mw - 1.0)
            x0 = min(int(xm), mw - 2)
            fx = xm - x0
            for c in range(nc):
                out[c, i, j] = (
                    maps[c, y0, x0] * (1 - fy) * (1 - fx)
                    + maps[c, y0, x0 + 1] * (1 - fy) * fx
                    + maps[c, y0 + 1, x0] * fy * (1 - fx)
                    + maps[c, y0 + 1, x0 + 1] * fy * fx
                )
