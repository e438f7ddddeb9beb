"""Numba kernels of the per-pixel fit (private; see :mod:`thermoxanes.analysis.fit`).

Small functions over arrays and scalars, one stage each, working on one row (or one tile
of a row) of pixels so that the inner loops run over contiguous pixels:

``_accumulate_row``
    adds one energy to the weighted sums of the linear functionals (pre-edge line, edge
    jump, linear-combination weights), their variances and the pre-edge scatter;
``_lines_row``
    edge jump, its sigma, the pre-edge noise scale and the edge-jump mask;
``_edge_row``, ``_whiteline_row``, ``_valence_row``
    the read-outs with their propagated 1-sigma uncertainties.

Variances come either from a variance array (Poisson, from raw counts) or, with
``model_var``, from the model ``var(mu_e) = sigma_pre^2 exp(mu_e) / <exp(mu)>_pre``
(photon noise with a flat flux), where ``exp`` is the approximation :func:`_fexp`.

Output rows of ``out`` (float32): see ``OUT_*``.
"""

import numpy as np
from numba import njit, prange

from thermoxanes.analysis.fit_plan import (
    N_ACC,
    N_LIN,
    ROW_A23,
    ROW_A34,
    ROW_ALPHA,
    ROW_B23,
    ROW_B34,
    ROW_BETA,
    ROW_EXP,
    ROW_JUMP,
    ROW_REF,
    ROW_S2,
    T_SCALE_EV,
)
from thermoxanes.analysis.kernel_base import (
    FM,
    OUT_EDGE,
    OUT_EDGE_S,
    OUT_JUMP,
    OUT_JUMP_S,
    OUT_VAL,
    OUT_VAL_S,
    OUT_WL,
    OUT_WL_S,
    V_A23,
    V_A34,
    V_AA,
    V_AB,
    V_AB23,
    V_AB34,
    V_B23,
    V_B34,
    V_BB,
    V_JA,
    V_JB,
    V_JJ,
    _fexp,
)
from thermoxanes.analysis.whiteline_kernels import _whiteline_row

#: Pixels per tile of the one-pass batch kernel (sums of a tile stay in L1 cache).
TILE = 512


@njit(fastmath=FM, cache=True, error_model="numpy", inline="always")
def _accumulate_row(mu_row, var_row, ref_row, model_var, lin_c, var_c, in_pre, acc, vtmp):
    """Add one energy's row of absorbance to the sums ``acc`` (N_ACC, W), in place.

    ``in_pre`` is the weight of the pre-edge sums (1 in the pre-edge window, else 0;
    negated, with negated ``lin_c`` and ``var_c``, to take a row back out). ``ref_row``
    is the per-pixel offset of the pre-edge sums (see ``fit_plan.ROW_REF``).
    """
    w = mu_row.size
    for r in range(lin_c.size):
        c = lin_c[r]
        if c != 0.0:
            for x in range(w):
                acc[r, x] += c * mu_row[x]
    need_var = False
    for q in range(var_c.size):
        if var_c[q] != 0.0:
            need_var = True
    if need_var or (model_var and in_pre != 0.0):
        if model_var:
            for x in range(w):
                vtmp[x] = _fexp(mu_row[x] - ref_row[x])
        else:
            for x in range(w):
                vtmp[x] = var_row[x]
    if need_var:
        for q in range(var_c.size):
            c = var_c[q]
            if c != 0.0:
                for x in range(w):
                    acc[N_LIN + q, x] += c * vtmp[x]
    if in_pre != 0.0:
        for x in range(w):
            d = mu_row[x] - ref_row[x]
            acc[ROW_S2, x] += in_pre * d * d
        if model_var:
            for x in range(w):
                acc[ROW_EXP, x] += in_pre * vtmp[x]


@njit(cache=True, error_model="numpy")
def _lines_row(acc, n_pre, pre_st, pre_stt, k_sigma, model_var, jump, jump_s, sv, mask):
    """Edge jump and its sigma, variance scale ``sv`` and mask of one row, in place.

    The row's width is ``jump.size``; ``acc`` may be wider (unused columns).
    """
    for x in range(jump.size):
        a = acc[ROW_ALPHA, x] - acc[ROW_REF, x]
        b = acc[ROW_BETA, x]
        ssr = acc[ROW_S2, x] - (n_pre * a * a + 2.0 * a * b * pre_st + b * b * pre_stt)
        if ssr < 0.0:
            ssr = 0.0
        sig2 = ssr / (n_pre - 2.0)
        s = sig2 / (acc[ROW_EXP, x] / n_pre) if model_var else 1.0
        sv[x] = s
        j = acc[ROW_JUMP, x]
        jump[x] = j
        jump_s[x] = np.sqrt(acc[V_JJ, x] * s)
        mask[x] = j > k_sigma * np.sqrt(sig2)


#: Columns per chunk of the scratch-array kernels: a compile-time row stride lets LLVM
#: prove that the scratch rows do not overlap, so that their loops vectorize.
CHUNK = 512
#: Weight of hops of the first crossing to a neighbouring pair in the edge-energy
#: variance (see ``_edge_hop_chunk``): calibrated on simulated stacks at three doses
#: (``benchmarks/bench_accuracy.py``) so that the pulls have unit spread.
HOP_NEIGHBOUR_WEIGHT = 0.3
# Scratch rows of the edge scan.
_E_ALPHA, _E_BETA, _E_HALF, _E_Y1, _E_V1, _E_F1, _E_K, _E_YA, _E_YB, _E_VA, _E_VB = range(11)
_E_MU, _E_VAR, _E_FINE, _E_HOP, _E_S0, _E_PB, _E_PC, _E_EX = 11, 12, 13, 14, 15, 16, 17, 18


@njit(cache=True, error_model="numpy")
def _edge_row(blk_mu, blk_var, acc, sv, todo, model_var, e_blk, t_blk, e0, edge_lo, edge_hi,
              kx, out_e, out_s):
    """First rise of ``(mu - pre) / jump`` through 0.5 in the edge window, and its sigma.

    ``blk_mu`` (n_blk, W) holds the block of energies around the edge; ``kx`` (W,) int64
    receives the crossing pair (< 0: none). A NaN met before the crossing makes the
    pixel's edge energy NaN. One branch-free descending scan keeps, per pixel, the values
    of the lowest crossing pair; the read-out is then plain arithmetic. Both work on a
    scratch array of CHUNK columns (their loops vectorize).
    """
    w = blk_mu.shape[1]
    scr = np.empty((19, CHUNK), dtype=acc.dtype)
    below = np.empty((edge_hi - edge_lo + 1, CHUNK), dtype=acc.dtype)
    for x0 in range(0, w, CHUNK):
        n = min(CHUNK, w - x0)
        x1 = x0 + n
        _edge_chunk(blk_mu[:, x0:x1], blk_var[:, x0:x1], acc[:, x0:x1], sv[x0:x1],
                    todo[x0:x1], model_var, e_blk, t_blk, e0, edge_lo, edge_hi, kx[x0:x1],
                    out_e[x0:x1], out_s[x0:x1], scr, below, n)


@njit(cache=True, error_model="numpy", inline="always")
def _edge_chunk(blk_mu, blk_var, acc, sv, todo, model_var, e_blk, t_blk, e0, edge_lo,
                edge_hi, kx, out_e, out_s, scr, below, n):
    """:func:`_edge_row` on ``n <= CHUNK`` columns, with scratch ``scr`` (19, CHUNK).

    The scan keeps its state as blends with 0/1 masks (``old + m * (new - old)``) of
    NaN-free values: branch-free code that LLVM vectorizes (ternaries there would not).
    """
    dt = scr.dtype
    one = dt.type(1.0)
    zero = dt.type(0.0)
    for x in range(n):
        scr[_E_ALPHA, x] = acc[ROW_ALPHA, x]
    for x in range(n):
        scr[_E_BETA, x] = acc[ROW_BETA, x]
    for x in range(n):
        scr[_E_HALF, x] = dt.type(0.5) * acc[ROW_JUMP, x]
    for x in range(n):
        scr[_E_K, x] = -one
        scr[_E_YA, x] = zero
        scr[_E_YB, x] = one
        scr[_E_VA, x] = zero
        scr[_E_VB, x] = zero
    _edge_y_chunk(blk_mu[edge_hi], dt.type(t_blk[edge_hi]), scr, n)
    _edge_var_chunk(blk_mu[edge_hi], blk_var[edge_hi], acc[ROW_REF], sv, model_var, scr, n)
    for x in range(n):
        scr[_E_Y1, x] = scr[_E_MU, x]
        scr[_E_V1, x] = scr[_E_VAR, x]
        scr[_E_F1, x] = scr[_E_FINE, x]
    _below_half(scr, below[edge_hi - edge_lo], n)
    for k in range(edge_hi - 1, edge_lo - 1, -1):
        kf = dt.type(k)
        _edge_y_chunk(blk_mu[k], dt.type(t_blk[k]), scr, n)
        _edge_var_chunk(blk_mu[k], blk_var[k], acc[ROW_REF], sv, model_var, scr, n)
        _below_half(scr, below[k - edge_lo], n)
        for x in range(n):
            y0 = scr[_E_MU, x]
            y1 = scr[_E_Y1, x]
            v0 = scr[_E_VAR, x]
            v1 = scr[_E_V1, x]
            f0 = scr[_E_FINE, x]
            half = scr[_E_HALF, x]
            hit = dt.type((y0 < half) & (y1 >= half)) * f0 * scr[_E_F1, x]
            bad = one - f0 * scr[_E_F1, x]
            k_old = scr[_E_K, x]
            kk = k_old + hit * (kf - k_old)
            scr[_E_K, x] = kk + bad * (dt.type(-2.0) - kk)
            scr[_E_YA, x] += hit * (y0 - scr[_E_YA, x])
            scr[_E_YB, x] += hit * (y1 - scr[_E_YB, x])
            scr[_E_VA, x] += hit * (v0 - scr[_E_VA, x])
            scr[_E_VB, x] += hit * (v1 - scr[_E_VB, x])
            scr[_E_Y1, x] = y0
            scr[_E_V1, x] = v0
            scr[_E_F1, x] = f0
    for x in range(n):
        k = int(scr[_E_K, x])
        kx[x] = k
        kc = k if k >= 0 else 0
        e_a = e_blk[kc]
        h = e_blk[kc + 1] - e_a
        ya = scr[_E_YA, x]
        dy = scr[_E_YB, x] - ya
        tt = (scr[_E_HALF, x] - ya) / dy
        ex = e_a + tt * h
        tx = (ex - e0) / T_SCALE_EV
        var_l = sv[x] * (0.25 * acc[V_JJ, x] + acc[V_AA, x] + tx * tx * acc[V_BB, x]
                         + acc[V_JA, x] + tx * acc[V_JB, x] + 2.0 * tx * acc[V_AB, x])
        var_e = (h / dy) ** 2 * ((1.0 - tt) ** 2 * scr[_E_VA, x] + tt * tt * scr[_E_VB, x]
                                 + var_l)
        out_e[x] = ex
        out_s[x] = var_e
    _edge_hop_chunk(e_blk, edge_lo, edge_hi, out_e, scr, below, n)
    for x in range(n):
        ok = (kx[x] >= 0) & todo[x]
        out_s[x] = np.sqrt(out_s[x] + scr[_E_HOP, x]) if ok else np.nan
        out_e[x] = out_e[x] if ok else np.nan


@njit(cache=True, error_model="numpy", inline="always")
def _phi(z):
    """Standard normal CDF, approximated to ~1e-2 without libm calls (vectorizes)."""
    f = np.float32
    z = min(max(z, f(-4.0)), f(4.0))
    u = z * (f(0.7978845608) + f(0.0356774081) * z * z)
    u = min(max(u, f(-3.0)), f(3.0))
    return f(0.5) + f(0.5) * u * (f(27.0) + u * u) / (f(27.0) + f(9.0) * u * u)


@njit(cache=True, error_model="numpy", inline="always")
def _below_half(scr, out, n):
    """P(true y below half) of the current row: ``_phi((half - y) / sigma)``."""
    tiny = scr.dtype.type(1e-30)
    for x in range(n):
        out[x] = _phi((scr[_E_HALF, x] - scr[_E_MU, x]) / (np.sqrt(scr[_E_VAR, x]) + tiny))


@njit(cache=True, error_model="numpy", inline="always")
def _edge_hop_chunk(e_blk, edge_lo, edge_hi, ex, scr, below, n):
    """Variance of the first crossing from hops to non-adjacent pairs, into ``scr[_E_HOP]``.

    Where the noise is comparable to the rise between grid points, noise can make an
    earlier pair cross first (or the observed crossing a noise crossing), a jump of the
    estimate that no linearization sees. With each point's true ``y`` taken as normal
    around the observed one, a forward recursion gives the probability that the first
    crossing is at each pair; the variance adds ``P * (midpoint - estimate)^2`` over the
    pairs more than one pair away from the observed one, and ``HOP_NEIGHBOUR_WEIGHT``
    times that for the two neighbouring pairs (a hop to a neighbour is mostly continuous,
    already in the linear term, unless the noise makes the rise non-monotonic).
    """
    dt = scr.dtype
    one = dt.type(1.0)
    zero = dt.type(0.0)
    for x in range(n):
        scr[_E_HOP, x] = zero
        scr[_E_S0, x] = zero
        scr[_E_EX, x] = ex[x]
        a = below[0, x]
        scr[_E_PB, x] = a  # P(no crossing yet, last point below half)
        scr[_E_PC, x] = one - a  # P(no crossing yet, every point so far above half)
    for k in range(edge_lo, edge_hi):
        mid = dt.type(0.5 * (e_blk[k] + e_blk[k + 1]))
        kf = dt.type(k)
        b1 = below[k + 1 - edge_lo]
        for x in range(n):
            a1 = b1[x]
            pb = scr[_E_PB, x]
            pc = scr[_E_PC, x]
            p = pb * (one - a1)
            dk = kf - scr[_E_K, x]
            far = dt.type(dk * dk > dt.type(1.5))
            near = dt.type(dk * dk > dt.type(0.5)) - far
            d = mid - scr[_E_EX, x]
            scr[_E_S0, x] += p
            scr[_E_HOP, x] += p * d * d * (far + dt.type(HOP_NEIGHBOUR_WEIGHT) * near)
            scr[_E_PB, x] = (pb + pc) * a1
            scr[_E_PC, x] = pc * (one - a1)
    tiny = dt.type(1e-30)
    for x in range(n):
        s0 = scr[_E_S0, x]
        scr[_E_HOP, x] = scr[_E_HOP, x] / s0 if s0 > tiny else zero


@njit(cache=True, error_model="numpy", inline="always")
def _edge_y_chunk(mu_row, t, scr, n):
    """``y = mu - pre`` of one block row into ``scr[_E_MU]`` (NaN replaced by 0) and its
    finiteness (1/0) into ``scr[_E_FINE]``."""
    dt = scr.dtype
    for x in range(n):
        y = mu_row[x] - (scr[_E_ALPHA, x] + scr[_E_BETA, x] * t)
        fine = np.abs(y) < np.inf
        scr[_E_FINE, x] = dt.type(fine)
        scr[_E_MU, x] = y if fine else dt.type(0.0)


@njit(fastmath=FM, cache=True, error_model="numpy", inline="always")
def _edge_var_chunk(mu_row, var_row, ref, sv, model_var, scr, n):
    """Variance of one block row into ``scr[_E_VAR]``: given, or ``sv * exp(mu - ref)``
    (0 where the row's ``y`` is not finite)."""
    dt = scr.dtype
    if model_var:
        for x in range(n):
            v = dt.type(sv[x]) * _fexp(mu_row[x] - ref[x])
            scr[_E_VAR, x] = v if scr[_E_FINE, x] > dt.type(0.0) else dt.type(0.0)
    else:
        for x in range(n):
            v = var_row[x]
            scr[_E_VAR, x] = v if scr[_E_FINE, x] > dt.type(0.0) else dt.type(0.0)


@njit(cache=True, error_model="numpy")
def _valence_row(acc, sv, todo, out_v, out_s):
    """Valence from the linear-combination weights: 2-3 pair, or 3-4 pair above 3."""
    for x in range(out_v.size):
        out_v[x] = np.nan
        out_s[x] = np.nan
        if not todo[x]:
            continue
        s = sv[x]
        a = acc[ROW_A23, x]
        b = acc[ROW_B23, x]
        va = acc[V_A23, x]
        vb = acc[V_B23, x]
        vab = acc[V_AB23, x]
        base = 2.0
        if a + b != 0.0 and b / (a + b) > 1.0:
            a = acc[ROW_A34, x]
            b = acc[ROW_B34, x]
            va = acc[V_A34, x]
            vb = acc[V_B34, x]
            vab = acc[V_AB34, x]
            base = 3.0
        den = a + b
        if den != 0.0 and np.isfinite(den):
            out_v[x] = base + b / den
            out_s[x] = np.sqrt(s * (a * a * vb + b * b * va - 2.0 * a * b * vab)) / (den * den)


@njit(parallel=True, cache=True, error_model="numpy")
def _fit_stack_kernel(stack, var_stack, model_var, lin_t, var_t, in_pre, ref_index, blk_lo,
                      blk_hi, e_blk, t_blk, n_pre, pre_st, pre_stt, e0, k_sigma, edge_lo,
                      edge_hi, wl_lo, wl_hi, method, fit_lo, fit_n, pinv, center, scale, out,
                      mask):
    """Fit every pixel of ``stack`` (E, H, W) in one pass, tile by tile.

    ``lin_t`` (E, N_LIN) and ``var_t`` (E, N_VAR) are the plan weights transposed;
    ``ref_index`` is the energy whose absorbance offsets the pre-edge sums. Outputs are
    NaN outside the mask, except the edge jump and its sigma.
    """
    n_e, n_h, n_w = stack.shape
    n_par = pinv.shape[1]
    for y in prange(n_h):
        acc = np.empty((N_ACC, TILE), dtype=stack.dtype)
        vtmp = np.empty(TILE, dtype=stack.dtype)
        ref = np.empty(TILE, dtype=stack.dtype)
        sv = np.empty(TILE)
        ibuf = np.empty(TILE, dtype=np.int64)
        fbuf = np.empty(TILE)
        zbuf = np.empty(pinv.shape[2])
        coef = np.empty(n_par)
        d1buf = np.empty(n_par)
        blk_buf = np.empty((blk_hi - blk_lo, TILE), dtype=stack.dtype)
        var_buf = np.empty((blk_hi - blk_lo, TILE), dtype=stack.dtype)
        for x0 in range(0, n_w, TILE):
            x1 = min(x0 + TILE, n_w)
            w = x1 - x0
            acc[:] = 0.0
            a = acc  # C-contiguous (N_ACC, TILE); columns >= w are unused
            r = ref[:w]
            if model_var:
                r[:] = stack[ref_index, y, x0:x1]
            else:
                r[:] = 0.0
            acc[ROW_REF, :w] = r
            for e in range(n_e):
                _accumulate_row(stack[e, y, x0:x1], var_stack[e, y, x0:x1], r, model_var,
                                lin_t[e], var_t[e], in_pre[e], a, vtmp)
            m = mask[y, x0:x1]
            _lines_row(a, n_pre, pre_st, pre_stt, k_sigma, model_var, out[OUT_JUMP, y, x0:x1],
                       out[OUT_JUMP_S, y, x0:x1], sv, m)
            if w == TILE:
                blk = blk_buf
                blk_var = var_buf
            else:
                blk = np.empty((blk_hi - blk_lo, w), dtype=stack.dtype)
                blk_var = np.empty((blk_hi - blk_lo, w), dtype=stack.dtype)
            for k in range(blk_hi - blk_lo):
                blk[k] = stack[blk_lo + k, y, x0:x1]
                if not model_var:
                    blk_var[k] = var_stack[blk_lo + k, y, x0:x1]
            _edge_row(blk, blk_var, a, sv, m, model_var, e_blk, t_blk, e0, edge_lo, edge_hi,
                      ibuf, out[OUT_EDGE, y, x0:x1], out[OUT_EDGE_S, y, x0:x1])
            _whiteline_row(blk, blk_var, a, sv, m, model_var, t_blk, e_blk, wl_lo, wl_hi,
                           method, fit_lo, fit_n, pinv, center, scale, ibuf, fbuf, zbuf, coef,
                           d1buf, out[OUT_WL, y, x0:x1], out[OUT_WL_S, y, x0:x1])
            _valence_row(a, sv, m, out[OUT_VAL, y, x0:x1], out[OUT_VAL_S, y, x0:x1])


# Whole-frame kernels of the live accumulator: sums ``acc`` (H, N_ACC, W), block
# (H, n_blk, W) (contiguous per row), maps (H, W). Each runs one stage over all rows.


@njit(parallel=True, cache=True, error_model="numpy")
def _accumulate_frame_kernel(mu, var, lin_c, var_c, in_pre, acc):
    """Add one frame ``mu`` (H, W) with variance ``var`` to ``acc``, in place.

    The pre-edge sums are offset by the row ``ROW_REF`` of ``acc`` (set by the caller
    before the first pre-edge frame, then fixed).
    """
    n_h, n_w = mu.shape
    for y in prange(n_h):
        vtmp = np.empty(n_w, dtype=acc.dtype)
        a = acc[y]
        ref = a[ROW_REF].copy()
        _accumulate_row(mu[y], var[y], ref, False, lin_c, var_c, in_pre, a, vtmp)


@njit(parallel=True, cache=True, error_model="numpy")
def _lines_kernel(acc, n_pre, pre_st, pre_stt, k_sigma, jump, jump_s, sv, mask):
    for y in prange(acc.shape[0]):
        _lines_row(acc[y], n_pre, pre_st, pre_stt, k_sigma, False, jump[y], jump_s[y], sv[y],
                   mask[y])


@njit(parallel=True, cache=True, error_model="numpy")
def _edge_kernel(blk_mu, blk_var, acc, sv, todo, e_blk, t_blk, e0, edge_lo, edge_hi, out_e,
                 out_s):
    n_h, n_w = sv.shape
    for y in prange(n_h):
        kx = np.empty(n_w, dtype=np.int64)
        _edge_row(blk_mu[y], blk_var[y], acc[y], sv[y], todo[y], False, e_blk,
                  t_blk, e0, edge_lo, edge_hi, kx, out_e[y], out_s[y])


@njit(parallel=True, cache=True, error_model="numpy")
def _whiteline_kernel(blk_mu, blk_var, acc, sv, todo, t_blk, e_blk, wl_lo, wl_hi, method,
                      fit_lo, fit_n, pinv, center, scale, out_w, out_s):
    n_h, n_w = sv.shape
    n_par = pinv.shape[1]
    for y in prange(n_h):
        _whiteline_row(blk_mu[y], blk_var[y], acc[y], sv[y], todo[y], False, t_blk,
                       e_blk, wl_lo, wl_hi, method, fit_lo, fit_n, pinv, center, scale,
                       np.empty(n_w, dtype=np.int64), np.empty(n_w), np.empty(pinv.shape[2]),
                       np.empty(n_par), np.empty(n_par), out_w[y], out_s[y])


@njit(parallel=True, cache=True, error_model="numpy")
def _valence_kernel(acc, sv, todo, out_v, out_s):
    for y in prange(sv.shape[0]):
        _valence_row(acc[y], sv[y], todo[y], out_v[y], out_s[y])


@njit(parallel=True, cache=True, error_model="numpy")
def _mask_in_place_kernel(out, mask):
    """Set ``out`` (N_OUT, H, W) to NaN outside ``mask``, except the edge-jump rows."""
    n_out, n_h, n_w = out.shape
    for y in prange(n_h):
        for x in range(n_w):
            if not mask[y, x]:
                for o in range(n_out):
                    if o != OUT_JUMP and o != OUT_JUMP_S:
                        out[o, y, x] = np.nan
