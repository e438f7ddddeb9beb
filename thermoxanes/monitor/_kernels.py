"""One-pass numba kernels that reduce a map update for the browser.

A 2048 x 2048 map update is reduced in one pass per map: the NaN-aware block mean for
display and, when the publisher sent none, the full-resolution histogram; significance
(``|z| > threshold``) is counted at full resolution and block-maxed for the outline;
display maps are colour-mapped to RGBA here, so that the browser only has to draw them.

The kernels release the GIL (``nogil``): the Bokeh server thread keeps pushing while a
receiver thread reduces the next map.  Signatures are given up front with read-only
``A``-layout arrays, so one compiled version takes wire buffers (read-only), ordinary
arrays and strided views alike; ``cache=True`` keeps the compiled code between runs.
:func:`thermoxanes.monitor.state.block_reduce` is the numpy reference they are tested
against.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import types

_F32_2D = types.Array(types.float32, 2, "A", readonly=True)
_BOOL_2D = types.Array(types.boolean, 2, "A", readonly=True)
_F64_1D = types.Array(types.float64, 1, "A", readonly=True)
_U32_1D = types.Array(types.uint32, 1, "A", readonly=True)

_REDUCE_SIG = types.Tuple((types.Array(types.float32, 2, "C"),
                           types.Array(types.int64, 1, "C")))(
    _F32_2D, _BOOL_2D, types.boolean, types.intp, _F64_1D)


@numba.njit(_REDUCE_SIG, nogil=True, cache=True)
def reduce_map(values, mask, use_mask, factor, edges):  # pragma: no cover - compiled
    """Block mean (NaN-aware, masked) and histogram of the valid pixels.

    Parameters
    ----------
    values : float32 (H, W)
        The map.
    mask : bool (H, W)
        Pixels to use (ignored unless ``use_mask``).
    use_mask : bool
        Whether ``mask`` applies.
    factor : int
        Block side (>= 1); partial blocks at the edges average what they hold.
    edges : float64 (n + 1,)
        Increasing histogram bin edges, uniform; ``n == 0`` (a single edge) skips the
        histogram.  Bins are half-open except the last, as ``numpy.histogram``.

    Returns
    -------
    (display, counts)
        ``ceil(H / factor) x ceil(W / factor)`` float32 means (NaN where a block has no
        valid pixel) and int64 counts per bin.
    """
    h, w = values.shape
    hb = (h + factor - 1) // factor
    wb = (w + factor - 1) // factor
    sums = np.zeros((hb, wb), np.float32)
    counts = np.zeros((hb, wb), np.int32)
    nbins = edges.shape[0] - 1
    hist = np.zeros(max(nbins, 0), np.int64)
    lo = edges[0]
    hi = edges[nbins] if nbins > 0 else lo
    scale = nbins / (hi - lo) if nbins > 0 else 0.0
    for i in range(h):
        bi = i // factor
        for j in range(w):
            x = values[i, j]
            if x != x or (use_mask and not mask[i, j]):
                continue
            if math.isinf(x):
                continue
            bj = j // factor
            sums[bi, bj] += x
            counts[bi, bj] += 1
            if nbins > 0:
                xd = np.float64(x)
                if xd < lo or xd > hi:
                    continue
                k = int((xd - lo) * scale)
                if k >= nbins:
                    k = nbins - 1
                # the same bin as numpy.histogram, whatever the rounding above
                while k > 0 and xd < edges[k]:
                    k -= 1
                while k < nbins - 1 and xd >= edges[k + 1]:
                    k += 1
                hist[k] += 1
    out = np.empty((hb, wb), np.float32)
    for bi in range(hb):
        for bj in range(wb):
            n = counts[bi, bj]
            out[bi, bj] = sums[bi, bj] / n if n > 0 else np.float32(np.nan)
    return out, hist


_SIG_SIG = types.Tuple((types.Array(types.boolean, 2, "C"), types.int64))(
    _F32_2D, _BOOL_2D, types.boolean, types.float64, types.intp)


@numba.njit(_SIG_SIG, nogil=True, cache=True)
def significance(z, mask, use_mask, threshold, factor):  # pragma: no cover - compiled
    """Pixels with ``|z| > threshold`` (NaN: not), block-maxed, and their full count."""
    h, w = z.shape
    hb = (h + factor - 1) // factor
    wb = (w + factor - 1) // factor
    out = np.zeros((hb, wb), np.bool_)
    n = 0
    for i in range(h):
        bi = i // factor
        for j in range(w):
            x = z[i, j]
            if use_mask and not mask[i, j]:
                continue
            if abs(x) > threshold:  # False for NaN
                n += 1
                out[bi, j // factor] = True
    return out, n


_CMAP_SIG = types.Array(types.uint32, 2, "C")(_F32_2D, types.float64, types.float64, _U32_1D)


@numba.njit(_CMAP_SIG, nogil=True, cache=True)
def colormap(values, low, high, lut):  # pragma: no cover - compiled
    """RGBA (uint32) of ``values`` as Bokeh's LinearColorMapper maps them; NaN: clear."""
    h, w = values.shape
    n = lut.shape[0]
    out = np.zeros((h, w), np.uint32)
    span = high - low
    scale = n / span if span > 0 else 0.0
    for i in range(h):
        for j in range(w):
            x = values[i, j]
            if x != x:
                continue
            k = int(math.floor((np.float64(x) - low) * scale))
            if k < 0:
                k = 0
            elif k >= n:
                k = n - 1
            out[i, j] = lut[k]
    return out


def rgba_lut(palette: list[str] | tuple[str, ...]) -> np.ndarray:
    """``#rrggbb`` colours as opaque RGBA uint32 (R in the lowest byte, as Bokeh reads)."""
    out = np.empty(len(palette), np.uint32)
    for k, colour in enumerate(palette):
        value = colour.lstrip("#")
        r, g, b = int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)
        out[k] = r | (g << 8) | (b << 16) | (255 << 24)
    return out
