"""Numba kernels of the per-pixel fit (private; see :mod:`thermoxanes.analysis.fit`).

Small functions over arrays and scalars. A spectrum's linear functionals (pre-edge line,
edge jump, linear-combination weights) and their variances are accumulated energy by
energy (``_accumulate_row``); the read-outs are finished per pixel from those sums and
the block of frames around the edge (``_finish_row``). Variances come either from a
variance array (Poisson, from raw counts) or, with ``model_var``, from the model
``var(mu_e) = sigma_pre^2 * exp(mu_e) / <exp(mu)>_pre`` (photon noise with a flat flux).

Output rows of ``out`` (float32): edge energy, its sigma, white-line energy, its sigma,
edge jump, its sigma, valence, its sigma.
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
    ROW_S2,
    T_SCALE_EV,
)

N_OUT = 8
OUT_EDGE, OUT_EDGE_S, OUT_WL, OUT_WL_S, OUT_JUMP, OUT_JUMP_S, OUT_VAL, OUT_VAL_S = range(N_OUT)
# Offsets of the variance sums (order of fit_plan.VAR_PAIRS).
V_AA, V_BB, V_AB, V_JJ, V_JA, V_JB = (N_LIN + i for i in range(6))
V_A23, V_B23, V_AB23, V_A34, V_B34, V_AB34 = (N_LIN + 6 + i for i in range(6))
N_TRIG_GRID = 201


@njit(cache=True)
def _accumulate_row(mu_row, var_row, model_var, lin_c, var_c, in_pre, acc, vtmp):
    """Add one energy's row of absorbance to the sums ``acc`` (N_ACC, W), in place.

    ``in_pre`` is the weight of the pre-edge sums (1 in the pre-edge window, else 0;
    negated, with negated ``lin_c`` and ``var_c``, to take a row back out).
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
    if need_var:
        if model_var:
            for x in range(w):
                vtmp[x] = np.exp(np.float64(mu_row[x]))
        else:
            for x in range(w):
                vtmp[x] = var_row[x]
        for q in range(var_c.size):
            c = var_c[q]
            if c != 0.0:
                for x in range(w):
                    acc[N_LIN + q, x] += c * vtmp[x]
    if in_pre != 0.0:
        for x in range(w):
            m = np.float64(mu_row[x])
            acc[ROW_S2, x] += in_pre * m * m
            acc[ROW_EXP, x] += in_pre * np.exp(m)


@njit(cache=True)
def _wl_d1(method, u, p):
    """First derivative of peak-model basis function ``p`` at ``u``."""
    if p == 0:
        return 0.0
    if p == 1:
        return 1.0
    if p == 2:
        return 2.0 * u
    if p == 3:
        return np.pi * np.cos(np.pi * u)
    return -np.pi * np.sin(np.pi * u)


@njit(cache=True)
def _wl_d2(method, u, p):
    """Second derivative of peak-model basis function ``p`` at ``u``."""
    if p < 2:
        return 0.0
    if p == 2:
        return 2.0
    if p == 3:
        return -np.pi * np.pi * np.sin(np.pi * u)
    return -np.pi * np.pi * np.cos(np.pi * u)


@njit(cache=True)
def _trig_value(coef, u):
    return (coef[0] + coef[1] * u + coef[2] * u * u + coef[3] * np.sin(np.pi * u)
            + coef[4] * np.cos(np.pi * u))


@njit(cache=True)
def _trig_peak(coef):
    """Maximum of the trig_poly model on [-1, 1]: grid search, then Newton steps."""
    best_u = -1.0
    best_f = -np.inf
    for i in range(N_TRIG_GRID):
        u = -1.0 + 2.0 * i / (N_TRIG_GRID - 1)
        f = _trig_value(coef, u)
        if f > best_f:
            best_f = f
            best_u = u
    u = best_u
    for _ in range(6):
        d1 = 0.0
        d2 = 0.0
        for p in range(5):
            d1 += coef[p] * _wl_d1(2, u, p)
            d2 += coef[p] * _wl_d2(2, u, p)
        if not d2 < 0.0:
            return np.nan
        u_new = u - d1 / d2
        if u_new < -1.0 or u_new > 1.0:
            return np.nan
        u = u_new
    return u


@njit(cache=True)
def _finish_row(acc, blk_mu, blk_var, model_var, e_blk, t_blk, n_pre, pre_st, pre_stt, e0,
                k_sigma, edge_lo, edge_hi, wl_lo, wl_hi, method, fit_lo, fit_n, pinv, center,
                scale, out, mask, ybuf, vbuf, zbuf, gbuf, coef):
    """Read-outs of one row of pixels from its sums ``acc`` and block ``blk_mu`` (n_blk, W).

    Writes ``out`` (N_OUT, W) float32 and ``mask`` (W,) bool in place; the ``*buf`` and
    ``coef`` arguments are scratch arrays.
    """
    n_blk = blk_mu.shape[0]
    w = blk_mu.shape[1]
    n_par = pinv.shape[1]
    for x in range(w):
        alpha = acc[ROW_ALPHA, x]
        beta = acc[ROW_BETA, x]
        jump = acc[ROW_JUMP, x]
        fitted = n_pre * alpha * alpha + 2.0 * alpha * beta * pre_st + beta * beta * pre_stt
        ssr = acc[ROW_S2, x] - fitted
        if ssr < 0.0:
            ssr = 0.0
        sig2 = ssr / (n_pre - 2.0)
        sv = sig2 / (acc[ROW_EXP, x] / n_pre) if model_var else 1.0
        vaa = acc[V_AA, x] * sv
        vbb = acc[V_BB, x] * sv
        vab = acc[V_AB, x] * sv
        vjj = acc[V_JJ, x] * sv
        vja = acc[V_JA, x] * sv
        vjb = acc[V_JB, x] * sv
        out[OUT_JUMP, x] = jump
        out[OUT_JUMP_S, x] = np.sqrt(vjj) if vjj >= 0.0 else np.nan
        for o in range(N_OUT):
            if o != OUT_JUMP and o != OUT_JUMP_S:
                out[o, x] = np.nan
        ok = np.isfinite(jump) and np.isfinite(sig2) and jump > k_sigma * np.sqrt(sig2)
        mask[x] = ok
        if not ok:
            continue
        for k in range(n_blk):
            m = np.float64(blk_mu[k, x])
            ybuf[k] = m - (alpha + beta * t_blk[k])
            vbuf[k] = sv * np.exp(m) if model_var else np.float64(blk_var[k, x])

        # Edge energy: first rise of (mu - pre) / jump through 0.5 in the edge window.
        half = 0.5 * jump
        for k in range(edge_lo, edge_hi):
            y0 = ybuf[k]
            y1 = ybuf[k + 1]
            if not (np.isfinite(y0) and np.isfinite(y1)):
                break
            if y0 < half and y1 >= half:
                dy = y1 - y0
                tt = (half - y0) / dy
                h = e_blk[k + 1] - e_blk[k]
                ex = e_blk[k] + tt * h
                tx = (ex - e0) / T_SCALE_EV
                var_l = 0.25 * vjj + vaa + tx * tx * vbb + vja + tx * vjb + 2.0 * tx * vab
                var_e = (h / dy) ** 2 * ((1.0 - tt) ** 2 * vbuf[k] + tt * tt * vbuf[k + 1]
                                         + var_l)
                out[OUT_EDGE, x] = ex
                out[OUT_EDGE_S, x] = np.sqrt(var_e) if var_e >= 0.0 else np.nan
                break

        # White line: peak model fitted around the maximum of (mu - pre).
        kmax = -1
        ymax = -np.inf
        for k in range(wl_lo, wl_hi + 1):
            if not np.isfinite(ybuf[k]):
                kmax = -1
                break
            if ybuf[k] > ymax:
                ymax = ybuf[k]
                kmax = k
        if kmax >= 0 and fit_n[kmax] >= 3:
            lo = fit_lo[kmax]
            n = fit_n[kmax]
            valid = True
            for j in range(n):
                yv = ybuf[lo + j]
                if method == 1:
                    if not yv > 0.0:
                        valid = False
                        break
                    zbuf[j] = np.log(yv)
                else:
                    zbuf[j] = yv
            if valid:
                for p in range(n_par):
                    s = 0.0
                    for j in range(n):
                        s += pinv[kmax, p, j] * zbuf[j]
                    coef[p] = s
                if method == 2:
                    u = _trig_peak(coef)
                elif coef[2] < 0.0:
                    u = -coef[1] / (2.0 * coef[2])
                else:
                    u = np.nan
                e_pk = center[kmax] + scale * u
                if np.isfinite(e_pk) and e_blk[lo] <= e_pk <= e_blk[lo + n - 1]:
                    d2 = 0.0
                    for p in range(n_par):
                        d2 += coef[p] * _wl_d2(method, u, p)
                    g0 = 0.0
                    g1 = 0.0
                    var_w = 0.0
                    for j in range(n):
                        s = 0.0
                        for p in range(n_par):
                            s += _wl_d1(method, u, p) * pinv[kmax, p, j]
                        g = -scale * s / d2
                        if method == 1:
                            g /= ybuf[lo + j]
                        g0 += g
                        g1 += g * t_blk[lo + j]
                        var_w += g * g * vbuf[lo + j]
                    var_w += g0 * g0 * vaa + g1 * g1 * vbb + 2.0 * g0 * g1 * vab
                    out[OUT_WL, x] = e_pk
                    out[OUT_WL_S, x] = np.sqrt(var_w) if var_w >= 0.0 else np.nan

        # Valence: linear combination of the 2-3 pair, or of the 3-4 pair above 3.
        a = acc[ROW_A23, x]
        b = acc[ROW_B23, x]
        va = acc[V_A23, x] * sv
        vb = acc[V_B23, x] * sv
        vab_l = acc[V_AB23, x] * sv
        base = 2.0
        if a + b != 0.0 and 2.0 + b / (a + b) > 3.0:
            a = acc[ROW_A34, x]
            b = acc[ROW_B34, x]
            va = acc[V_A34, x] * sv
            vb = acc[V_B34, x] * sv
            vab_l = acc[V_AB34, x] * sv
            base = 3.0
        den = a + b
        if den != 0.0 and np.isfinite(den):
            out[OUT_VAL, x] = base + b / den
            var_v = (a * a * vb + b * b * va - 2.0 * a * b * vab_l) / den ** 4
            out[OUT_VAL_S, x] = np.sqrt(var_v) if var_v >= 0.0 else np.nan


@njit(parallel=True, cache=True)
def _fit_stack_kernel(stack, var_stack, model_var, lin_coef, var_coef, in_pre, blk_lo, blk_hi,
                      e_blk, t_blk, n_pre, pre_st, pre_stt, e0, k_sigma, edge_lo, edge_hi,
                      wl_lo, wl_hi, method, fit_lo, fit_n, pinv, center, scale, out, mask):
    """Fit every pixel of ``stack`` (E, H, W) in one pass, row by row.

    ``lin_coef`` (E, N_LIN) and ``var_coef`` (E, N_VAR) are the plan weights transposed.
    """
    n_e, n_h, n_w = stack.shape
    n_blk = blk_hi - blk_lo
    for y in prange(n_h):
        acc = np.zeros((N_ACC, n_w))
        vtmp = np.empty(n_w)
        for e in range(n_e):
            vrow = stack[e, y] if model_var else var_stack[e, y]
            _accumulate_row(stack[e, y], vrow, model_var, lin_coef[e], var_coef[e],
                            in_pre[e], acc, vtmp)
        blk_var = stack[blk_lo:blk_hi, y, :] if model_var else var_stack[blk_lo:blk_hi, y, :]
        _finish_row(acc, stack[blk_lo:blk_hi, y, :], blk_var, model_var, e_blk, t_blk, n_pre,
                    pre_st, pre_stt, e0, k_sigma, edge_lo, edge_hi, wl_lo, wl_hi, method,
                    fit_lo, fit_n, pinv, center, scale, out[:, y, :], mask[y],
                    np.empty(n_blk), np.empty(n_blk), np.empty(n_blk), np.empty(n_blk),
                    np.empty(pinv.shape[1]))


@njit(parallel=True, cache=True)
def _accumulate_frame_kernel(mu, var, model_var, lin_c, var_c, in_pre, acc):
    """Add one frame ``mu`` (H, W) to the sums ``acc`` (H, N_ACC, W), in place."""
    n_h, n_w = mu.shape
    for y in prange(n_h):
        vtmp = np.empty(n_w)
        _accumulate_row(mu[y], var[y], model_var, lin_c, var_c, in_pre, acc[y], vtmp)


@njit(parallel=True, cache=True)
def _finish_frames_kernel(acc, blk_mu, blk_var, model_var, e_blk, t_blk, n_pre, pre_st,
                          pre_stt, e0, k_sigma, edge_lo, edge_hi, wl_lo, wl_hi, method, fit_lo,
                          fit_n, pinv, center, scale, out, mask):
    """Read-outs of all pixels from the sums ``acc`` (H, N_ACC, W) and block (n_blk, H, W)."""
    n_blk, n_h, n_w = blk_mu.shape
    for y in prange(n_h):
        _finish_row(acc[y], blk_mu[:, y, :], blk_var[:, y, :], model_var, e_blk, t_blk, n_pre,
                    pre_st, pre_stt, e0, k_sigma, edge_lo, edge_hi, wl_lo, wl_hi, method,
                    fit_lo, fit_n, pinv, center, scale, out[:, y, :], mask[y],
                    np.empty(n_blk), np.empty(n_blk), np.empty(n_blk), np.empty(n_blk),
                    np.empty(pinv.shape[1]))
