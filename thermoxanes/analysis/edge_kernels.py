"""Numba kernels of the edge-energy read-out (private; see :mod:`thermoxanes.analysis.fit`).

The edge energy is the first rise of ``y = mu - pre`` through half the edge jump in the
edge window, interpolated linearly in the crossing pair. Its variance is the linear
propagation through that pair and the pre/post lines, plus a "hop" term: with each
point's true ``y`` taken as normal around the observed one, a forward recursion gives the
probability ``P_k`` that the first crossing is at pair ``k``, and the variance adds
``P_k * (midpoint_k - estimate)^2`` over the pairs more than one pair away from the
observed one, and ``HOP_NEIGHBOUR_WEIGHT`` times that for its two neighbours (a hop to a
neighbour is mostly continuous, already in the linear term, unless the noise makes the
rise non-monotonic), normalized by ``sum_k P_k``.

Per chunk of ``CHUNK`` pixels, four passes whose state lives in the rows of scratch
arrays (so that the pixel loops are branch-free and LLVM vectorizes them):

0. per point of the edge window, ``y`` (NaN if not finite) and ``1 / (sigma + tiny)``
   (the only square roots and divisions of the point values);
1. one ascending pass over the pairs: the recursion, the probability of every pair
   (stored), and the index of the first pair that crosses or is not finite;
2. the interpolation in that pair and its linear variance (scalar: it reads the points
   of each pixel's own pair);
3. the hop variance, a second pass over the stored probabilities.

Every array a pixel loop touches is a C-contiguous 1-D row slice indexed from 0: loops
over strided views (``a[:, x0:x1]``) or indexed with ``x0 + x`` stay scalar.
"""

import numpy as np
from numba import njit

from thermoxanes.analysis.fit_plan import ROW_ALPHA, ROW_BETA, ROW_JUMP, T_SCALE_EV
from thermoxanes.analysis.kernel_base import (
    V_AA,
    V_AB,
    V_BB,
    V_JA,
    V_JB,
    V_JJ,
)

#: Columns per chunk: a compile-time row stride lets LLVM prove that the scratch rows do
#: not overlap (their loops vectorize), and the state of a chunk stays in L1 cache.
CHUNK = 128
#: Weight of hops of the first crossing to a neighbouring pair in the edge-energy
#: variance: calibrated on simulated stacks at three doses
#: (``benchmarks/bench_accuracy.py``) so that the pulls have unit spread.
HOP_NEIGHBOUR_WEIGHT = 0.3

# Scratch rows.
(_HALF, _PB, _PC, _K, _EXC, _VAR, _HOP, _M0) = range(8)
N_SCRATCH = 8
#: "No stop yet" value of the stop index.
_NONE = 1.0e6


@njit(cache=True, error_model="numpy", inline="always")
def _phi(z):
    """Standard normal CDF, approximated to ~1e-2 without libm calls (vectorizes)."""
    f = np.float32
    z = min(max(z, f(-4.0)), f(4.0))
    u = z * (f(0.7978845608) + f(0.0356774081) * z * z)
    u = min(max(u, f(-3.0)), f(3.0))
    return f(0.5) + f(0.5) * u * (f(27.0) + u * u) / (f(27.0) + f(9.0) * u * u)


@njit(cache=True, error_model="numpy")
def _edge_row(blk_mu, blk_var, acc, sv, todo, e_blk, t_blk, e0, edge_lo, edge_hi, out_e,
              out_s):
    """Edge energy and its 1-sigma uncertainty of one row of pixels, in place.

    ``blk_mu`` (n_blk, W) and its variances ``blk_var`` hold the block of energies
    ``e_blk`` / reduced energies ``t_blk`` around the edge; ``acc`` (rows, W) the pixels'
    sums (pre-edge line, jump, variance sums), whose variances scale with ``sv``; all
    C-contiguous. ``edge_lo..edge_hi`` is the
    edge window (block indices, inclusive). A non-finite point met before the crossing,
    no crossing, or ``todo`` false give NaN.
    """
    w = blk_mu.shape[1]
    scr = np.empty((N_SCRATCH, CHUNK), dtype=acc.dtype)
    prob = np.empty((edge_hi - edge_lo, CHUNK), dtype=acc.dtype)
    pts = np.empty((2 * (edge_hi - edge_lo + 1), CHUNK), dtype=acc.dtype)
    for x0 in range(0, w, CHUNK):
        n = min(CHUNK, w - x0)
        _edge_chunk(blk_mu, blk_var, acc, sv, todo, e_blk, t_blk, e0, edge_lo, edge_hi,
                    out_e, out_s, scr, prob, pts, x0, n)


@njit(cache=True, error_model="numpy", inline="always")
def _edge_chunk(blk_mu, blk_var, acc, sv, todo, e_blk, t_blk, e0, edge_lo, edge_hi, out_e,
                out_s, scr, prob, pts, x0, n):
    """:func:`_edge_row` on pixels ``x0 .. x0 + n - 1`` (``n <= CHUNK``); scratch ``scr``
    (N_SCRATCH, CHUNK), ``prob`` (pairs, CHUNK) and ``pts`` (2 * points, CHUNK)."""
    dt = scr.dtype
    one = dt.type(1.0)
    zero = dt.type(0.0)
    tiny = dt.type(1e-30)
    floor = dt.type(1e-20)
    big = dt.type(_NONE)
    inf = dt.type(np.inf)
    n_pt = edge_hi - edge_lo + 1
    ec = 0.5 * (e_blk[edge_lo] + e_blk[edge_hi])
    x1 = x0 + n
    sv = sv[x0:x1]
    half_r = scr[_HALF]
    acc_a = acc[ROW_ALPHA, x0:x1]
    acc_b = acc[ROW_BETA, x0:x1]
    acc_j = acc[ROW_JUMP, x0:x1]
    kk_r = scr[_K]
    for x in range(n):
        half_r[x] = dt.type(0.5) * acc_j[x]
        kk_r[x] = big
    # Pass 0: per point y = mu - pre (NaN if not finite) and 1 / (sigma + tiny)
    # (1e30 if not finite).
    for j in range(n_pt):
        t = dt.type(t_blk[edge_lo + j])
        mu_r = blk_mu[edge_lo + j, x0:x1]
        var_r = blk_var[edge_lo + j, x0:x1]
        y_r = pts[2 * j]
        is_r = pts[2 * j + 1]
        for x in range(n):
            y = mu_r[x] - (acc_a[x] + acc_b[x] * t)
            v = var_r[x]
            ok = np.abs(y) < inf
            y_r[x] = y
            is_r[x] = one / (np.sqrt(v if ok else zero) + tiny)
    pb_r = scr[_PB]
    pc_r = scr[_PC]
    y_r = pts[0]
    is_r = pts[1]
    for x in range(n):
        y = y_r[x]
        yc = y if np.abs(y) < inf else zero
        a = _phi((half_r[x] - yc) * is_r[x])
        pb_r[x] = a
        pc_r[x] = one - a
    # Pass 1: recursion, pair probabilities and the first pair that crosses or is not
    # finite (its index only).
    for k in range(n_pt - 1):
        kf = dt.type(k)
        ya_r = pts[2 * k]
        yb_r = pts[2 * k + 2]
        ib_r = pts[2 * k + 3]
        p_row = prob[k]
        for x in range(n):
            y0 = ya_r[x]
            y1 = yb_r[x]
            f0 = np.abs(y0) < inf
            f1 = np.abs(y1) < inf
            y1c = y1 if f1 else zero
            half = half_r[x]
            a1 = _phi((half - y1c) * ib_r[x])
            pb = pb_r[x]
            pc = pc_r[x]
            p_row[x] = pb * (one - a1)
            pb1 = (pb + pc) * a1
            pc1 = pc * (one - a1)
            pb_r[x] = pb1 if pb1 > floor else zero
            pc_r[x] = pc1 if pc1 > floor else zero
            ok = f0 & f1
            stop = ((y0 < half) & (y1 >= half)) | (~ok)
            kk = kk_r[x]
            kk_r[x] = (kf if ok else dt.type(-5.0)) if (stop & (kk == big)) else kk
    # Pass 2: interpolation in the first pair and its linear variance (scalar: it reads
    # the stop pair's points).
    out_e = out_e[x0:x1]
    todo = todo[x0:x1]
    v_jj = acc[V_JJ, x0:x1]
    v_aa = acc[V_AA, x0:x1]
    v_bb = acc[V_BB, x0:x1]
    v_ja = acc[V_JA, x0:x1]
    v_jb = acc[V_JB, x0:x1]
    v_ab = acc[V_AB, x0:x1]
    shift = dt.type((ec - e0) / T_SCALE_EV)
    inv_t = dt.type(1.0 / T_SCALE_EV)
    nan = dt.type(np.nan)
    exc_r = scr[_EXC]
    var_r = scr[_VAR]
    for x in range(n):
        kk = kk_r[x]
        good = (kk >= zero) & (kk < big) & todo[x]
        if not good:
            out_e[x] = nan
            kk_r[x] = dt.type(-10.0)
            exc_r[x] = zero
            var_r[x] = zero
            continue
        k = int(kk)
        ya = pts[2 * k, x]
        dy = pts[2 * k + 2, x] - ya
        va = blk_var[edge_lo + k, x0 + x]
        vb = blk_var[edge_lo + k + 1, x0 + x]
        h = dt.type(e_blk[edge_lo + k + 1] - e_blk[edge_lo + k])
        e_a = dt.type(e_blk[edge_lo + k] - ec)
        tt = (half_r[x] - ya) / dy
        exc = e_a + tt * h
        tx = exc * inv_t + shift
        var_l = dt.type(sv[x]) * (dt.type(0.25) * v_jj[x] + v_aa[x] + tx * tx * v_bb[x]
                                  + v_ja[x] + tx * v_jb[x] + dt.type(2.0) * tx * v_ab[x])
        g = h / dy
        out_e[x] = exc + dt.type(ec)
        exc_r[x] = exc
        var_r[x] = g * g * ((one - tt) * (one - tt) * va + tt * tt * vb + var_l)
    hop_r = scr[_HOP]
    m0_r = scr[_M0]
    for x in range(n):
        hop_r[x] = zero
        m0_r[x] = zero
    # Pass 3: hop variance over the pair probabilities.
    wn = dt.type(HOP_NEIGHBOUR_WEIGHT)
    for j in range(edge_hi - edge_lo):
        mid = dt.type(0.5 * (e_blk[edge_lo + j] + e_blk[edge_lo + j + 1]) - ec)
        jf = dt.type(j)
        p_row = prob[j]
        for x in range(n):
            p = p_row[x]
            dk = jf - kk_r[x]
            far = dt.type(dk * dk > dt.type(1.5))
            near = dt.type(dk * dk > dt.type(0.5)) - far
            d = mid - exc_r[x]
            m0_r[x] += p
            hop_r[x] += p * d * d * (far + wn * near)
    out_s = out_s[x0:x1]
    for x in range(n):
        m0 = m0_r[x]
        hop = hop_r[x] / m0 if m0 > tiny else zero
        out_s[x] = np.sqrt(var_r[x] + hop) if kk_r[x] >= zero else np.nan
