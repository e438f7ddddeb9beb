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

Per chunk of ``CHUNK`` pixels (a chunk with no pixel to do is skipped), passes whose
state lives in the rows of scratch arrays (so that the pixel loops are branch-free and
LLVM vectorizes them):

A. per point of the edge window, ``y`` (NaN if not finite) and
   ``z = (half - y) / (sigma + tiny)`` (the only square roots and divisions of the point
   values); then, per pair, the index of the first pair that crosses or is not finite;
B. the interpolation in that pair and its linear variance (the pair's points gathered
   by each pixel's index);
C. the recursion, fused with the hop variance, over the pairs that can carry a
   probability: ``_phi(z)`` is exactly 1 (0) for ``z >= _Z_CERTAIN`` (``<= -``), so
   before the first point where some pixel of the chunk is not certainly below the half
   level every probability is 0 and the state stays "below", and after the last point
   where some pixel is not certainly above, the "below" state is 0 and so is every
   probability. The skipped pairs would add exact zeros: the result is the same as a
   recursion over every pair. At high dose only the few pairs around the crossing run.

Every array a pixel loop touches is a C-contiguous 1-D row slice indexed from 0: loops
over strided views (``a[:, x0:x1]``) or indexed with ``x0 + x`` stay scalar.
"""

import numpy as np
from numba import njit

from thermoxanes.analysis.fit_plan import ROW_ALPHA, ROW_BETA, ROW_JUMP, T_SCALE_EV
from thermoxanes.analysis.kernel_base import (
    FM_READOUT,
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

# Scratch rows: the half level, the recursion state, the stop index, the interpolation
# and its variance, the hop sums; per pair, its first energy and its width.
(_HALF, _PB, _PC, _K, _EXC, _VAR, _HOP, _M0, _EA, _H) = range(10)
N_SCRATCH = 10
#: "No stop yet" value of the stop index.
_NONE = 1.0e6
# The hop weight ``min(w * dk^2, 1)`` of a pair ``dk`` pairs from the stop pair is 0 for
# the stop pair, ``w`` for its neighbours and 1 beyond only if ``4 w >= 1``.
assert 0.25 <= HOP_NEIGHBOUR_WEIGHT <= 1.0
#: ``_phi(z)`` is exactly 1 for ``z >= _Z_CERTAIN`` and exactly 0 for ``z <= -_Z_CERTAIN``
#: (its rational part saturates at ``|u| = 3``, reached at ``|z| = 2.79``).
_Z_CERTAIN = 2.9


@njit(cache=True, fastmath=FM_READOUT, error_model="numpy", inline="always")
def _phi(z):
    """Standard normal CDF, approximated to ~1e-2 without libm calls (vectorizes)."""
    f = np.float32
    z = min(max(z, f(-4.0)), f(4.0))
    u = z * (f(0.7978845608) + f(0.0356774081) * z * z)
    u = min(max(u, f(-3.0)), f(3.0))
    return f(0.5) + f(0.5) * u * (f(27.0) + u * u) / (f(27.0) + f(9.0) * u * u)


@njit(cache=True, fastmath=FM_READOUT, error_model="numpy")
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
    n_pt = edge_hi - edge_lo + 1
    scr = np.empty((N_SCRATCH, CHUNK), dtype=acc.dtype)
    pts = np.empty((2 * n_pt, CHUNK), dtype=acc.dtype)
    for x0 in range(0, w, CHUNK):
        n = min(CHUNK, w - x0)
        _edge_chunk(blk_mu, blk_var, acc, sv, todo, e_blk, t_blk, e0, edge_lo, edge_hi,
                    out_e, out_s, scr, pts, x0, n)


@njit(cache=True, fastmath=FM_READOUT, error_model="numpy", inline="always")
def _edge_chunk(blk_mu, blk_var, acc, sv, todo, e_blk, t_blk, e0, edge_lo, edge_hi, out_e,
                out_s, scr, pts, x0, n):
    """:func:`_edge_row` on pixels ``x0 .. x0 + n - 1`` (``n <= CHUNK``); scratch ``scr``
    (N_SCRATCH, CHUNK) and ``pts`` (2 * points, CHUNK): rows ``j`` hold ``y`` of point
    ``j``, rows ``n_pt + j`` its ``z = (half - y) / sigma``."""
    dt = scr.dtype
    one = dt.type(1.0)
    zero = dt.type(0.0)
    tiny = dt.type(1e-30)
    floor = dt.type(1e-20)
    big = dt.type(_NONE)
    inf = dt.type(np.inf)
    z_lim = dt.type(_Z_CERTAIN)
    n_pt = edge_hi - edge_lo + 1
    ec = 0.5 * (e_blk[edge_lo] + e_blk[edge_hi])
    x1 = x0 + n
    sv = sv[x0:x1]
    half_r = scr[_HALF]
    kk_r = scr[_K]
    out_e = out_e[x0:x1]
    out_s = out_s[x0:x1]
    todo = todo[x0:x1]
    n_todo = 0
    for x in range(n):
        n_todo += 1 if todo[x] else 0
    if n_todo == 0:  # e.g. a chunk of background outside the edge-jump mask
        for x in range(n):
            out_e[x] = np.nan
            out_s[x] = np.nan
        return
    acc_a = acc[ROW_ALPHA, x0:x1]
    acc_b = acc[ROW_BETA, x0:x1]
    acc_j = acc[ROW_JUMP, x0:x1]
    for x in range(n):
        half_r[x] = dt.type(0.5) * acc_j[x]
        kk_r[x] = big
    # Pass A, per point: y = mu - pre and z = (half - y) / (sigma + tiny) (y = 0 and
    # 1 / sigma = 1e30 where y is not finite).
    for j in range(n_pt):
        t = dt.type(t_blk[edge_lo + j])
        mu_r = blk_mu[edge_lo + j, x0:x1]
        var_r = blk_var[edge_lo + j, x0:x1]
        y_r = pts[j]
        z_r = pts[n_pt + j]
        for x in range(n):
            y = mu_r[x] - (acc_a[x] + acc_b[x] * t)
            v = var_r[x]
            ok = np.abs(y) < inf
            y_r[x] = y
            yc = y if ok else zero
            z_r[x] = (half_r[x] - yc) * (one / (np.sqrt(v if ok else zero) + tiny))
    # Pass A2, per pair: the first pair that crosses or is not finite.
    for k in range(n_pt - 1):
        kf = dt.type(k)
        y0_r = pts[k]
        y1_r = pts[k + 1]
        for x in range(n):
            y0 = y0_r[x]
            y1 = y1_r[x]
            half = half_r[x]
            ok = (np.abs(y0) < inf) & (np.abs(y1) < inf)
            stop = ((y0 < half) & (y1 >= half)) | (~ok)
            kk = kk_r[x]
            kk_r[x] = (kf if ok else dt.type(-5.0)) if (stop & (kk == big)) else kk
    # Pass B, per pixel: interpolation in the stop pair and its linear variance.
    v_jj = acc[V_JJ, x0:x1]
    v_aa = acc[V_AA, x0:x1]
    v_bb = acc[V_BB, x0:x1]
    v_ja = acc[V_JA, x0:x1]
    v_jb = acc[V_JB, x0:x1]
    v_ab = acc[V_AB, x0:x1]
    shift = dt.type((ec - e0) / T_SCALE_EV)
    inv_t = dt.type(1.0 / T_SCALE_EV)
    nan = dt.type(np.nan)
    ecf = dt.type(ec)
    exc_r = scr[_EXC]
    var_r = scr[_VAR]
    ea_t = scr[_EA]
    h_t = scr[_H]
    for k in range(n_pt - 1):
        ea_t[k] = dt.type(e_blk[edge_lo + k] - ec)
        h_t[k] = dt.type(e_blk[edge_lo + k + 1] - e_blk[edge_lo + k])
    vblk = blk_var[edge_lo:edge_hi + 1]
    for x in range(n):
        kk = kk_r[x]
        good = (kk >= zero) & (kk < big) & todo[x]
        k = int(kk) if good else 0
        ya = pts[k, x]
        dy = pts[k + 1, x] - ya
        va = vblk[k, x0 + x]
        vb = vblk[k + 1, x0 + x]
        h = h_t[k]
        tt = (half_r[x] - ya) / dy
        exc = ea_t[k] + tt * h
        tx = exc * inv_t + shift
        var_l = dt.type(sv[x]) * (dt.type(0.25) * v_jj[x] + v_aa[x] + tx * tx * v_bb[x]
                                  + v_ja[x] + tx * v_jb[x] + dt.type(2.0) * tx * v_ab[x])
        g = h / dy
        var = g * g * ((one - tt) * (one - tt) * va + tt * tt * vb + var_l)
        out_e[x] = exc + ecf if good else nan
        exc_r[x] = exc if good else zero
        var_r[x] = var if good else zero
        kk_r[x] = kk if good else dt.type(-10.0)
    # The points where some pixel with a result is not certainly below / above the half
    # level: outside them the recursion is exact without being run (below: P = 0 and the
    # state stays "below" with probability 1; above: P = 0 once the "below" state is 0).
    j_lo = n_pt
    j_hi = -1
    for j in range(n_pt):
        z_r = pts[n_pt + j]
        nb = 0
        na = 0
        for x in range(n):
            g = kk_r[x] >= zero
            z = z_r[x]
            nb += 1 if g & (~(z >= z_lim)) else 0
            na += 1 if g & (~(z <= -z_lim)) else 0
        if nb > 0 and j_lo == n_pt:
            j_lo = j
        if na > 0:
            j_hi = j
    # Pass C: the recursion over the pairs that can have a probability, fused with the
    # hop variance (pairs outside add exact zeros).
    hop_r = scr[_HOP]
    m0_r = scr[_M0]
    for x in range(n):
        hop_r[x] = zero
        m0_r[x] = zero
    k_lo = max(j_lo - 1, 0)
    k_hi = min(j_hi, n_pt - 2)
    if k_lo <= k_hi:
        pb_r = scr[_PB]
        pc_r = scr[_PC]
        z_r = pts[n_pt + k_lo]
        for x in range(n):
            a = _phi(z_r[x])
            pb_r[x] = a
            pc_r[x] = one - a
        wn = dt.type(HOP_NEIGHBOUR_WEIGHT)
        for k in range(k_lo, k_hi + 1):
            kf = dt.type(k)
            mid = dt.type(0.5 * (e_blk[edge_lo + k] + e_blk[edge_lo + k + 1]) - ec)
            zb_r = pts[n_pt + k + 1]
            for x in range(n):
                a1 = _phi(zb_r[x])
                pb = pb_r[x]
                pc = pc_r[x]
                p = pb * (one - a1)
                pb1 = (pb + pc) * a1
                pc1 = pc * (one - a1)
                pb_r[x] = pb1 if pb1 > floor else zero
                pc_r[x] = pc1 if pc1 > floor else zero
                # Hop weight 0 at the stop pair, wn for its neighbours, 1 beyond.
                dk = kf - kk_r[x]
                d = mid - exc_r[x]
                m0_r[x] += p
                hop_r[x] += p * d * d * min(wn * dk * dk, one)
    for x in range(n):
        m0 = m0_r[x]
        hop = hop_r[x] / m0 if m0 > tiny else zero
        out_s[x] = np.sqrt(var_r[x] + hop) if kk_r[x] >= zero else np.nan
