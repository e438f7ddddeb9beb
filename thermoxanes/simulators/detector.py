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
    # Row by row: draw the row's normal deviates (4 per 64-bit draw), build the expected
    # signal, then a branch-free (vectorizable) pass when every pixel of the row has
    # >= 30 photons, or an exact pass with small-count Poisson otherwise.
    h, w = out.shape
    mw = transmission.shape[1]
    fw = flat.shape[1]
    trow = np.empty(mw, dtype=np.float32)
    frow = np.empty(fw, dtype=np.float32)
    sig = np.zeros(w, dtype=np.float32)
    zrow = np.empty(w + 4, dtype=np.float32)
    state = np.uint64(seed)
    mask16 = np.uint64(0xFFFF)
    read2 = np.float32(read_noise_adu * read_noise_adu)
    inv_ppa = np.float32(1.0 / photons_per_adu)
    sat = np.float32(saturation_adu)
    low = np.float32(30.0 / photons_per_adu)
    scale = np.float32(signal_scale)
    expo = np.float32(exposure_s)
    off = np.float32(dark_offset_adu)
    rn = np.float32(read_noise_adu)
    half = np.float32(0.5)
    zero = np.float32(0.0)
    for i in range(h):
        for j in range(0, w, 4):
            state, z = _splitmix(state)
            zrow[j] = normal_table[np.int64(z & mask16)]
            zrow[j + 1] = normal_table[np.int64((z >> np.uint64(16)) & mask16)]
            zrow[j + 2] = normal_table[np.int64((z >> np.uint64(32)) & mask16)]
            zrow[j + 3] = normal_table[np.int64(z >> np.uint64(48))]
        drow = dark_rate[i]
        orow = out[i]
        if not use_beam:
            for j in range(w):
                v = off + drow[j] * expo + rn * zrow[j]
                orow[j] = np.uint16(min(max(math.floor(v + half), zero), sat))
            continue
        a = np.float32(bfy[i])
        r0 = by0[i]
        for k in range(fw):
            frow[k] = flat[r0, k] * (1 - a) + flat[r0 + 1, k] * a
        if use_sample:
            a = np.float32(tfy[i])
            r0 = ty0[i]
            for k in range(mw):
                trow[k] = transmission[r0, k] * (1 - a) + transmission[r0 + 1, k] * a
            for j in range(w):
                c = bx0[j]
                fl = frow[c] + (frow[c + 1] - frow[c]) * bfx[j]
                c = tx0[j]
                sig[j] = fl * (trow[c] + (trow[c + 1] - trow[c]) * tfx[j]) * scale
        else:
            for j in range(w):
                c = bx0[j]
                sig[j] = (frow[c] + (frow[c + 1] - frow[c]) * bfx[j]) * scale
        smin = sig[0]
        for j in range(w):
            smin = min(smin, sig[j])
        if smin >= low:
            for j in range(w):
                sj = sig[j]
                # Photon and read noise together: one Gaussian deviate.
                v = sj + off + drow[j] * expo + math.sqrt(sj * inv_ppa + read2) * zrow[j]
                orow[j] = np.uint16(min(max(math.floor(v + half), zero), sat))
            continue
        for j in range(w):
            sj = sig[j]
            lam = sj * photons_per_adu
            base = off + drow[j] * expo
            if lam >= 30.0:
                v = sj + base + math.sqrt(sj * inv_ppa + read2) * zrow[j]
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
                v = photons * inv_ppa + base + rn * zrow[j]
            orow[j] = np.uint16(min(max(math.floor(v + 0.5), 0.0), sat))


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
