"""Numba kernels of the per-pixel fit (private; see :mod:`thermoxanes.analysis.fit`).

Small functions over arrays and scalars, one stage each, working on one row (or one tile
of a row) of pixels so that the inner loops run over contiguous pixels:

``_accumulate_row``
    adds one energy to the weighted sums of the linear functionals (pre-edge line, edge
    jump, linear-combination weights), their variances and the pre-edge scatter (the
    live accumulator, frame by frame);
``_accumulate_block``
    the same for up to four energies of one weight pattern at a time (the batch fit),
    copying the edge / white-line block with its variances on the way;
``_lines_row``
    edge jump, its sigma, the pre-edge noise scale and the edge-jump mask;
``_valence_row``
    the valence read-out with its propagated 1-sigma uncertainty; the edge energy
    (:mod:`~thermoxanes.analysis.edge_kernels`) and the white line
    (:mod:`~thermoxanes.analysis.whiteline_kernels`) have their own modules.

Variances come either from a variance array (Poisson, from raw counts) or, with
``model_var``, from the model ``var(mu_e) = sigma_pre^2 exp(mu_e) / <exp(mu)>_pre``
(photon noise with a flat flux), where ``exp`` is the approximation :func:`_fexp`.

Output rows of ``out`` (float32): see ``OUT_*``.
"""

import numpy as np
from numba import njit, prange

from thermoxanes.analysis.config import SIGMA_PRE_FLOOR
from thermoxanes.analysis.edge_kernels import _edge_row
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
    V_AB23,
    V_AB34,
    V_B23,
    V_B34,
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


@njit(cache=True, error_model="numpy", inline="always")
def _scale_var_row(sv, var_row):
    """Modelled variances ``sv * exp(mu - ref)`` of one block row, in place (``var_row``
    holds ``exp(mu - ref)``)."""
    f = var_row.dtype.type
    for x in range(var_row.size):
        var_row[x] = f(sv[x]) * var_row[x]


@njit(fastmath=FM, cache=True, error_model="numpy", inline="always")
def _add_block_rows(coef, e0, ne, r0, m0, m1, m2, m3, acc, w):
    """``acc[r0 + r] += sum_k coef[e0 + k, r] * m_k`` for every row ``r`` of ``coef``
    (E, R) not zero at ``e0``, over a block of ``ne <= 4`` energies with rows
    ``m0..m3`` (those past ``ne`` repeat ``m0`` with weight 0): one load and store of a
    sum per four energies."""
    z = coef.dtype.type(0.0)
    for r in range(coef.shape[1]):
        c0 = coef[e0, r]
        if c0 == 0.0:
            continue
        c1 = coef[e0 + 1, r] if ne > 1 else z
        c2 = coef[e0 + 2, r] if ne > 2 else z
        c3 = coef[e0 + 3, r] if ne > 3 else z
        ar = acc[r0 + r]
        for x in range(w):
            ar[x] += (c0 * m0[x] + c1 * m1[x]) + (c2 * m2[x] + c3 * m3[x])


@njit(fastmath=FM, cache=True, error_model="numpy", inline="always")
def _accumulate_block(stack, var_stack, y, x0, w, e0, ne, ref, model_var, lin_t, var_t,
                      in_pre, blk_lo, blk_hi, acc, vt, blk, blk_vt):
    """Add the energies ``e0 .. e0 + ne - 1`` (``ne <= 4``, one zero pattern of the
    weights) of row ``y``, pixels ``x0 .. x0 + w - 1``, to the tile sums ``acc``.

    ``vt`` (4, TILE) is scratch for their variances (``exp(mu - ref)`` with
    ``model_var``, still to be scaled by the pixel's ``sv``). Energies of the block
    ``[blk_lo, blk_hi)`` are also copied to ``blk`` and their variances to ``blk_vt``.
    """
    x1 = x0 + w
    m0 = stack[e0, y, x0:x1]
    m1 = stack[e0 + 1, y, x0:x1] if ne > 1 else m0
    m2 = stack[e0 + 2, y, x0:x1] if ne > 2 else m0
    m3 = stack[e0 + 3, y, x0:x1] if ne > 3 else m0
    _add_block_rows(lin_t, e0, ne, 0, m0, m1, m2, m3, acc, w)
    need_var = False
    for q in range(var_t.shape[1]):
        if var_t[e0, q] != 0.0:
            need_var = True
    pre = in_pre[e0] != 0.0
    in_blk = e0 + ne > blk_lo and e0 < blk_hi
    if need_var or (model_var and pre) or in_blk:
        for k in range(4):
            vk = vt[k]
            e = e0 + (k if k < ne else 0)
            mk = stack[e, y, x0:x1]
            if model_var:
                for x in range(w):
                    vk[x] = _fexp(mk[x] - ref[x])
            else:
                sk = var_stack[e, y, x0:x1]
                for x in range(w):
                    vk[x] = sk[x]
    if need_var:
        _add_block_rows(var_t, e0, ne, N_LIN, vt[0], vt[1], vt[2], vt[3], acc, w)
    for k in range(ne):
        e = e0 + k
        mk = stack[e, y, x0:x1]
        if pre:
            s2 = acc[ROW_S2]
            for x in range(w):
                d = mk[x] - ref[x]
                s2[x] += d * d
            if model_var:
                ex = acc[ROW_EXP]
                vk = vt[k]
                for x in range(w):
                    ex[x] += vk[x]
        if blk_lo <= e < blk_hi:
            bk = blk[e - blk_lo]
            bv = blk_vt[e - blk_lo]
            vk = vt[k]
            for x in range(w):
                bk[x] = mk[x]
                bv[x] = vk[x]


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
        # sigma_pre no finer than the float32 resolution of the absorbance: a flat,
        # noise-free spectrum has a jump of rounding size and no scatter.
        sig_pre = max(np.sqrt(sig2), SIGMA_PRE_FLOOR * abs(acc[ROW_ALPHA, x]))
        mask[x] = j > k_sigma * sig_pre


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


@njit(cache=True, error_model="numpy")
def _drop_undefined_valence(out, y, x0, m, max_val_sigma):
    """Take the pixels ``x0 ..`` of row ``y`` whose valence sigma exceeds
    ``max_val_sigma`` out of the mask row ``m`` and set their maps (all but the edge jump
    and its sigma) to NaN."""
    for x in range(m.size):
        if m[x] and out[OUT_VAL_S, y, x0 + x] > max_val_sigma:
            m[x] = False
            for o in range(out.shape[0]):
                if o != OUT_JUMP and o != OUT_JUMP_S:
                    out[o, y, x0 + x] = np.nan


@njit(parallel=True, cache=True, error_model="numpy")
def _fit_stack_kernel(stack, var_stack, model_var, lin_t, var_t, in_pre, segments, ref_index,
                      blk_lo, blk_hi, e_blk, t_blk, n_pre, pre_st, pre_stt, e0, k_sigma, edge_lo,
                      edge_hi, wl_lo, wl_hi, method, fit_lo, fit_n, pinv, center, scale,
                      max_val_sigma, out, mask):
    """Fit every pixel of ``stack`` (E, H, W) in one pass, tile by tile.

    ``lin_t`` (E, N_LIN) and ``var_t`` (E, N_VAR) are the plan weights transposed;
    ``segments`` (int64) bounds the runs of energies with one zero pattern of the weights
    (:func:`~thermoxanes.analysis.fit_plan.weight_segments`), summed in blocks of four;
    ``ref_index`` is the energy whose absorbance offsets the pre-edge sums. Pixels whose
    valence sigma exceeds ``max_val_sigma`` leave the mask. Outputs are NaN outside the
    mask, except the edge jump and its sigma.
    """
    n_e, n_h, n_w = stack.shape
    n_par = pinv.shape[1]
    for y in prange(n_h):
        acc = np.empty((N_ACC, TILE), dtype=stack.dtype)
        vt = np.empty((4, TILE), dtype=stack.dtype)
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
            if w == TILE:
                blk = blk_buf
                blk_var = var_buf
            else:
                blk = np.empty((blk_hi - blk_lo, w), dtype=stack.dtype)
                blk_var = np.empty((blk_hi - blk_lo, w), dtype=stack.dtype)
            # One pass over the energies: the sums, and the block of the read-outs with
            # its variances (modelled: exp(mu - ref), scaled by sv below).
            for s in range(segments.size - 1):
                for eb in range(segments[s], segments[s + 1], 4):
                    _accumulate_block(stack, var_stack, y, x0, w, eb,
                                      min(4, segments[s + 1] - eb), r, model_var, lin_t,
                                      var_t, in_pre, blk_lo, blk_hi, a, vt, blk, blk_var)
            m = mask[y, x0:x1]
            _lines_row(a, n_pre, pre_st, pre_stt, k_sigma, model_var, out[OUT_JUMP, y, x0:x1],
                       out[OUT_JUMP_S, y, x0:x1], sv, m)
            if model_var:
                for k in range(blk_hi - blk_lo):
                    _scale_var_row(sv, blk_var[k])
            _edge_row(blk, blk_var, a, sv, m, e_blk, t_blk, e0, edge_lo, edge_hi,
                      out[OUT_EDGE, y, x0:x1], out[OUT_EDGE_S, y, x0:x1])
            _whiteline_row(blk, blk_var, a, sv, m, t_blk, e_blk, wl_lo, wl_hi,
                           method, fit_lo, fit_n, pinv, center, scale, ibuf, fbuf, zbuf, coef,
                           d1buf, out[OUT_WL, y, x0:x1], out[OUT_WL_S, y, x0:x1])
            _valence_row(a, sv, m, out[OUT_VAL, y, x0:x1], out[OUT_VAL_S, y, x0:x1])
            _drop_undefined_valence(out, y, x0, m, max_val_sigma)


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
def _lines_edge_kernel(acc, n_pre, pre_st, pre_stt, k_sigma, blk_mu, blk_var, e_blk, t_blk, e0,
                       edge_lo, edge_hi, jump, jump_s, sv, mask, out_e, out_s):
    """Edge jump, its sigma, variance scale ``sv`` and mask, then the edge energy of the
    pixels in the mask, row by row in one parallel region (the stage that the last
    frame of an ascending sweep completes: one wake-up of the threads, and each row's
    sums are read once for both)."""
    for y in prange(acc.shape[0]):
        _lines_row(acc[y], n_pre, pre_st, pre_stt, k_sigma, False, jump[y], jump_s[y], sv[y],
                   mask[y])
        _edge_row(blk_mu[y], blk_var[y], acc[y], sv[y], mask[y], e_blk, t_blk, e0, edge_lo,
                  edge_hi, out_e[y], out_s[y])


@njit(parallel=True, cache=True, error_model="numpy")
def _whiteline_kernel(blk_mu, blk_var, acc, sv, todo, t_blk, e_blk, wl_lo, wl_hi, method,
                      fit_lo, fit_n, pinv, center, scale, out_w, out_s):
    n_h, n_w = sv.shape
    n_par = pinv.shape[1]
    for y in prange(n_h):
        _whiteline_row(blk_mu[y], blk_var[y], acc[y], sv[y], todo[y], t_blk,
                       e_blk, wl_lo, wl_hi, method, fit_lo, fit_n, pinv, center, scale,
                       np.empty(n_w, dtype=np.int64), np.empty(n_w), np.empty(pinv.shape[2]),
                       np.empty(n_par), np.empty(n_par), out_w[y], out_s[y])


@njit(parallel=True, cache=True, error_model="numpy")
def _valence_kernel(acc, sv, todo, out_v, out_s):
    for y in prange(sv.shape[0]):
        _valence_row(acc[y], sv[y], todo[y], out_v[y], out_s[y])


@njit(parallel=True, cache=True, error_model="numpy")
def _mask_in_place_kernel(out, mask, max_valence_sigma):
    """Take the pixels whose valence sigma exceeds ``max_valence_sigma`` out of ``mask``
    (H, W), then set ``out`` (N_OUT, H, W) to NaN outside it, except the edge-jump rows,
    in place (one pass)."""
    n_out, n_h, n_w = out.shape
    for y in prange(n_h):
        for x in range(n_w):
            if mask[y, x] and out[OUT_VAL_S, y, x] > max_valence_sigma:
                mask[y, x] = False
            if not mask[y, x]:
                for o in range(n_out):
                    if o != OUT_JUMP and o != OUT_JUMP_S:
                        out[o, y, x] = np.nan
