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

Per chunk of ``CHUNK`` pixels, three passes whose state lives in the rows of scratch
arrays (so that the pixel loops are branch-free and LLVM vectorizes them):

1. one ascending pass over the edge window: the recursion, the probability of every
   pair (stored), and the first pair that crosses or is not finite, captured with its
   values;
2. the interpolation in that pair and its linear variance;
3. the hop variance, a second pass over the stored probabilities.

Every array a pixel loop touches is a C-contiguous 1-D row slice indexed from 0: loops
over strided views (``a[:, x0:x1]``) or indexed with ``x0 + x`` stay scalar.
"""

import numpy as np
from numba import njit

from thermoxanes.analysis.fit_plan import ROW_ALPHA, ROW_BETA, ROW_JUMP, T_SCALE_EV
from thermoxanes.analysis.kernel_base import (
    FM,
    V_AA,
    V_AB,
    V_BB,
    V_JA,
    V_JB,
    V_JJ,
)

#: Columns per chunk: a compile-time row stride lets LLVM prove that the scratch rows do
#: not overlap (their loops vectorize), and the state of a chunk stays in L1 cache.
CHUNK = 256
#: Weight of hops of the first crossing to a neighbouring pair in the edge-energy
#: variance: calibrated on simulated stacks at three doses
#: (``benchmarks/bench_accuracy.py``) so that the pulls have unit spread.
HOP_NEIGHBOUR_WEIGHT = 0.3

# Scratch rows.
(_ALPHA, _BETA, _HALF, _PB, _PC, _K, _EXC, _VAR, _HOP, _M0, _YA, _YB, _VA, _VB, _EA,
 _H) = range(16)
N_SCRATCH = 16
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
    for x0 in range(0, w, CHUNK):
        n = min(CHUNK, w - x0)
        _edge_chunk(blk_mu, blk_var, acc, sv, todo, e_blk, t_blk, e0, edge_lo, edge_hi,
                    out_e, out_s, scr, prob, x0, n)


@njit(fastmath=FM, cache=True, error_model="numpy", inline="always")
def _point(mu_row, var_row, alpha, beta, t, x):
    """``(y, var, finite)`` of pixel ``x``: ``y = mu - pre`` (0 if not finite), its
    variance (0 if not finite) and 1/0 finiteness."""
    dt = alpha.dtype
    y = mu_row[x] - (alpha[x] + beta[x] * t)
    v = var_row[x]
    fine = dt.type(np.abs(y) < dt.type(np.inf))
    ok = fine > dt.type(0.0)
    return (y if ok else dt.type(0.0)), (v if ok else dt.type(0.0)), fine


@njit(cache=True, error_model="numpy", inline="always")
def _edge_chunk(blk_mu, blk_var, acc, sv, todo, e_blk, t_blk, e0, edge_lo, edge_hi, out_e,
                out_s, scr, prob, x0, n):
    """:func:`_edge_row` on pixels ``x0 .. x0 + n - 1`` (``n <= CHUNK``); scratch ``scr``
    (N_SCRATCH, CHUNK) and ``prob`` (pairs, CHUNK)."""
    dt = scr.dtype
    one = dt.type(1.0)
    zero = dt.type(0.0)
    tiny = dt.type(1e-30)
    floor = dt.type(1e-20)
    big = dt.type(_NONE)
    ec = 0.5 * (e_blk[edge_lo] + e_blk[edge_hi])  # energies in the hop pass relative to this
    x1 = x0 + n
    # 1-D row slices (C-contiguous, indexed from 0): loops over them vectorize, loops
    # indexed with ``x0 + x`` do not (numba's negative-index wraparound hides the bounds).
    sv = sv[x0:x1]
    alpha = scr[_ALPHA]
    beta = scr[_BETA]
    half_r = scr[_HALF]
    acc_a = acc[ROW_ALPHA, x0:x1]
    acc_b = acc[ROW_BETA, x0:x1]
    acc_j = acc[ROW_JUMP, x0:x1]
    for x in range(n):
        scr[_ALPHA, x] = acc_a[x]
        scr[_BETA, x] = acc_b[x]
        scr[_HALF, x] = dt.type(0.5) * acc_j[x]
        scr[_K, x] = big
    for r in range(_YA, N_SCRATCH):  # blended rows start finite
        for x in range(n):
            scr[r, x] = zero
    t0 = dt.type(t_blk[edge_lo])
    mu0 = blk_mu[edge_lo, x0:x1]
    var0 = blk_var[edge_lo, x0:x1]
    for x in range(n):
        y, v, f = _point(mu0, var0, alpha, beta, t0, x)
        a = _phi((half_r[x] - y) / (np.sqrt(v) + tiny))
        scr[_PB, x] = a  # P(no crossing yet, last point below half)
        scr[_PC, x] = one - a  # P(no crossing yet, every point so far above half)
    # Pass 1: recursion, pair probabilities, first crossing or non-finite pair.
    for k in range(edge_lo, edge_hi):
        t_a = dt.type(t_blk[k])
        t_b = dt.type(t_blk[k + 1])
        kf = dt.type(k - edge_lo)
        mu_a = blk_mu[k, x0:x1]
        mu_b = blk_mu[k + 1, x0:x1]
        var_a = blk_var[k, x0:x1]
        var_b = blk_var[k + 1, x0:x1]
        e_a = dt.type(e_blk[k] - ec)
        h = dt.type(e_blk[k + 1] - e_blk[k])
        p_row = prob[k - edge_lo]
        for x in range(n):
            y0, v0, f0 = _point(mu_a, var_a, alpha, beta, t_a, x)
            y1, v1, f1 = _point(mu_b, var_b, alpha, beta, t_b, x)
            half = half_r[x]
            a1 = _phi((half - y1) / (np.sqrt(v1) + tiny))
            pb = scr[_PB, x]
            pc = scr[_PC, x]
            p_row[x] = pb * (one - a1)
            # Probabilities below 1e-20 are flushed to 0: products of small ones would
            # pass through the denormal range, where every operation is ~100x slower.
            pb1 = (pb + pc) * a1
            pc1 = pc * (one - a1)
            scr[_PB, x] = pb1 * dt.type(pb1 > floor)
            scr[_PC, x] = pc1 * dt.type(pc1 > floor)
            stop = dt.type(((y0 < half) & (y1 >= half)) | (f0 * f1 == zero))
            # The first stop is kept, with the values of its pair: unconditional blends
            # (a min() here becomes a masked store, microcoded on AMD). A non-finite
            # pair stops with K = -5.
            kk = scr[_K, x]
            sel = stop * dt.type(kk == big)
            ok = f0 * f1
            scr[_K, x] = kk + sel * (ok * kf - (one - ok) * dt.type(5.0) - kk)
            scr[_YA, x] += sel * (y0 - scr[_YA, x])
            scr[_YB, x] += sel * (y1 - scr[_YB, x])
            scr[_VA, x] += sel * (v0 - scr[_VA, x])
            scr[_VB, x] += sel * (v1 - scr[_VB, x])
            scr[_EA, x] += sel * (e_a - scr[_EA, x])
            scr[_H, x] += sel * (h - scr[_H, x])
    # Pass 2: interpolation in the first pair and its linear variance (float32 lanes).
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
    for x in range(n):
        kk = scr[_K, x]
        ya = scr[_YA, x]
        dy = scr[_YB, x] - ya
        h = scr[_H, x]
        tt = (half_r[x] - ya) / dy
        exc = scr[_EA, x] + tt * h
        tx = exc * inv_t + shift
        var_l = dt.type(sv[x]) * (dt.type(0.25) * v_jj[x] + v_aa[x] + tx * tx * v_bb[x]
                                  + v_ja[x] + tx * v_jb[x] + dt.type(2.0) * tx * v_ab[x])
        g = h / dy
        var_e = g * g * ((one - tt) * (one - tt) * scr[_VA, x] + tt * tt * scr[_VB, x]
                         + var_l)
        good = (kk >= zero) & (kk < big) & todo[x]
        out_e[x] = (exc + dt.type(ec)) if good else nan
        scr[_K, x] = kk if good else dt.type(-10.0)
        scr[_EXC, x] = exc if good else zero
        scr[_VAR, x] = var_e if good else zero
        scr[_HOP, x] = zero
        scr[_M0, x] = zero
    # Pass 3: hop variance over the pair probabilities.
    wn = dt.type(HOP_NEIGHBOUR_WEIGHT)
    for j in range(edge_hi - edge_lo):
        mid = dt.type(0.5 * (e_blk[edge_lo + j] + e_blk[edge_lo + j + 1]) - ec)
        jf = dt.type(j)
        p_row = prob[j]
        for x in range(n):
            p = p_row[x]
            dk = jf - scr[_K, x]
            far = dt.type(dk * dk > dt.type(1.5))
            near = dt.type(dk * dk > dt.type(0.5)) - far
            d = mid - scr[_EXC, x]
            scr[_M0, x] += p
            scr[_HOP, x] += p * d * d * (far + wn * near)
    out_s = out_s[x0:x1]
    for x in range(n):
        m0 = scr[_M0, x]
        hop = scr[_HOP, x] / m0 if m0 > tiny else zero
        out_s[x] = np.sqrt(scr[_VAR, x] + hop) if scr[_K, x] >= zero else np.nan
