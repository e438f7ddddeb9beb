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

#: Floating-point licence of the accumulation kernels (no NaN tests there): reassociation
#: and contraction. The read-out kernels test for NaN and run without fastmath.
FM = {"contract", "reassoc", "nsz", "arcp"}
N_OUT = 8
OUT_EDGE, OUT_EDGE_S, OUT_WL, OUT_WL_S, OUT_JUMP, OUT_JUMP_S, OUT_VAL, OUT_VAL_S = range(N_OUT)
# Offsets of the variance sums (order of fit_plan.VAR_PAIRS).
V_AA, V_BB, V_AB, V_JJ, V_JA, V_JB = (N_LIN + i for i in range(6))
V_A23, V_B23, V_AB23, V_A34, V_B34, V_AB34 = (N_LIN + 6 + i for i in range(6))
N_TRIG_GRID = 201
#: Fixed-point iteration of the quadratic / Gaussian white line: at most this many
#: secant steps, converged below this change (eV).
WL_MAX_ITER = 50
WL_TOL_EV = 1e-6
#: Pixels per tile of the one-pass batch kernel (sums of a tile stay in L1 cache).
TILE = 512


@njit(fastmath=FM, cache=True, inline="always")
def _fexp(d):
    """exp(d) as (1 + d/256)^256, d clipped to [-20, 20]: relative error ~ d^2/512.

    Good to 0.2 % for |d| < 1, enough for a variance model; vectorizes (no libm call).
    """
    lim = np.float32(20.0)  # float32 constants keep float32 input in float32 lanes
    if d > lim:
        d = lim
    elif d < -lim:
        d = -lim
    v = d * np.float32(1.0 / 256.0) + np.float32(1.0)
    for _ in range(8):
        v = v * v
    return v


@njit(fastmath=FM, cache=True, inline="always")
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


@njit(cache=True)
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


@njit(cache=True)
def _edge_row(blk_mu, blk_var, acc, sv, todo, model_var, e_blk, t_blk, e0, edge_lo, edge_hi,
              kx, out_e, out_s):
    """First rise of ``(mu - pre) / jump`` through 0.5 in the edge window, and its sigma.

    ``blk_mu`` (n_blk, W) holds the block of energies around the edge; ``kx`` (W,) int64
    is scratch. A NaN met before the crossing makes the pixel's edge energy NaN.
    """
    w = blk_mu.shape[1]
    for x in range(w):
        kx[x] = -1
    # Descending scan, branch-free (vectorizes on a contiguous block): kx ends at the
    # first pair that crosses 0.5 or holds a NaN.
    for k in range(edge_hi - 1, edge_lo - 1, -1):
        t0 = t_blk[k]
        t1 = t_blk[k + 1]
        for x in range(w):
            base = acc[ROW_ALPHA, x]
            slope = acc[ROW_BETA, x]
            half = 0.5 * acc[ROW_JUMP, x]
            y0 = blk_mu[k, x] - (base + slope * t0)
            y1 = blk_mu[k + 1, x] - (base + slope * t1)
            bad = not (np.abs(y0) < np.inf and np.abs(y1) < np.inf)
            hit = (y0 < half) & (y1 >= half)
            kx[x] = -2 if bad else (k if hit else kx[x])
    for x in range(w):
        out_e[x] = np.nan
        out_s[x] = np.nan
        k = kx[x]
        if k < 0 or not todo[x]:
            continue
        s = sv[x]
        alpha = acc[ROW_ALPHA, x]
        beta = acc[ROW_BETA, x]
        m0 = blk_mu[k, x]
        m1 = blk_mu[k + 1, x]
        y0 = m0 - (alpha + beta * t_blk[k])
        y1 = m1 - (alpha + beta * t_blk[k + 1])
        if model_var:
            ref = acc[ROW_REF, x]
            v0 = s * _fexp(m0 - ref)
            v1 = s * _fexp(m1 - ref)
        else:
            v0 = blk_var[k, x]
            v1 = blk_var[k + 1, x]
        dy = y1 - y0
        tt = (0.5 * acc[ROW_JUMP, x] - y0) / dy
        h = e_blk[k + 1] - e_blk[k]
        ex = e_blk[k] + tt * h
        tx = (ex - e0) / T_SCALE_EV
        var_l = s * (0.25 * acc[V_JJ, x] + acc[V_AA, x] + tx * tx * acc[V_BB, x]
                     + acc[V_JA, x] + tx * acc[V_JB, x] + 2.0 * tx * acc[V_AB, x])
        var_e = (h / dy) ** 2 * ((1.0 - tt) ** 2 * v0 + tt * tt * v1 + var_l)
        out_e[x] = ex
        out_s[x] = np.sqrt(var_e)


@njit(cache=True, inline="always")
def _wl_d1(u, p):
    """First derivative of peak-model basis function ``p`` (1, u, u^2, sin, cos) at u."""
    if p == 0:
        return 0.0
    if p == 1:
        return 1.0
    if p == 2:
        return 2.0 * u
    if p == 3:
        return np.pi * np.cos(np.pi * u)
    return -np.pi * np.sin(np.pi * u)


@njit(cache=True, inline="always")
def _wl_d2(u, p):
    """Second derivative of peak-model basis function ``p`` at u."""
    if p < 2:
        return 0.0
    if p == 2:
        return 2.0
    if p == 3:
        return -np.pi * np.pi * np.sin(np.pi * u)
    return -np.pi * np.pi * np.cos(np.pi * u)


@njit(cache=True, inline="always")
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
            d1 += coef[p] * _wl_d1(u, p)
            d2 += coef[p] * _wl_d2(u, p)
        if not d2 < 0.0:
            return np.nan
        u = u - d1 / d2
        if u < -1.0 or u > 1.0:
            return np.nan
    return u


@njit(cache=True)
def _local_peaks_row(blk_mu, blk_var, acc, sv, todo, model_var, t_blk, e_blk, wl_lo, wl_hi,
                     h, method, kmax, out_w, out_s):
    """Quadratic (Gaussian) white line of a row of pixels, all pixels in lockstep.

    Per pixel: a parabola (in log for the Gaussian) fitted to ``y = mu - pre`` with
    biweight weights ``(1 - ((E - c)/h)^2)^2`` is re-centred on its vertex ``V(c)`` until
    ``V(c) = c`` (secant steps from the highest point ``start``), so that the estimate is
    continuous in the data; it must stay within ``h`` of ``start``. Sigma: implicit
    derivative of the fixed point, ``dV/dy / (1 - dV/dc)`` (dV/dc from the last secant
    slope). Loops over pixels are innermost so that they vectorize. ``kmax`` holds each
    pixel's highest point (< 0: none).
    """
    w = blk_mu.shape[1]
    n_wl = wl_hi - wl_lo + 1
    inv_h = 1.0 / h
    z = np.empty((n_wl, w))
    start = np.empty(w)
    c0 = np.empty(w)
    g0 = np.empty(w)
    c = np.empty(w)
    state = np.zeros(w, dtype=np.int64)  # 0 iterating, 1 converged, -1 no result
    sums = np.empty((9, w))
    par = np.empty((8, w))  # inverse rows 1 and 2 (6), p1, p2 of the last evaluation
    fin = np.empty((10, w))  # the same at convergence, then dV/dc and the vertex
    for x in range(w):
        out_w[x] = np.nan
        out_s[x] = np.nan
        if kmax[x] < 0 or not todo[x]:
            state[x] = -1
            start[x] = e_blk[wl_lo]
        else:
            start[x] = e_blk[kmax[x]]
    for j in range(n_wl):
        k = wl_lo + j
        ek = e_blk[k]
        tk = t_blk[k]
        for x in range(w):
            y = blk_mu[k, x] - (acc[ROW_ALPHA, x] + acc[ROW_BETA, x] * tk)
            if method == 1:
                y = np.log(y) if y > 0.0 else np.nan
            near = abs(ek - start[x]) < 2.0 * h
            ok = np.abs(y) < np.inf
            if near and not ok:
                state[x] = -1
            z[j, x] = y if (near and ok) else 0.0
    for it in range(WL_MAX_ITER + 1):
        # Evaluate the vertex V(c) (c = start on the first pass) for every pixel.
        for i in range(9):
            for x in range(w):
                sums[i, x] = 0.0
        for j in range(n_wl):
            ek = e_blk[wl_lo + j]
            for x in range(w):
                u = ek - (start[x] if it == 0 else c[x])
                r = u * inv_h
                a = max(1.0 - r * r, 0.0)
                wt = a * a
                zz = z[j, x]
                wu = wt * u
                wuu = wu * u
                sums[0, x] += wt
                sums[1, x] += wu
                sums[2, x] += wuu
                sums[3, x] += wuu * u
                sums[4, x] += wuu * u * u
                sums[5, x] += wt * zz
                sums[6, x] += wu * zz
                sums[7, x] += wuu * zz
                sums[8, x] += 1.0 if a > 0.0 else 0.0
        active = False
        for x in range(w):
            if state[x] != 0:
                continue
            s_a, s_b, s_c, s_d, s_e = sums[0, x], sums[1, x], sums[2, x], sums[3, x], sums[4, x]
            m00 = s_c * s_e - s_d * s_d
            m01 = s_c * s_d - s_b * s_e
            m02 = s_b * s_d - s_c * s_c
            det = s_a * m00 + s_b * m01 + s_c * m02
            cc = start[x] if it == 0 else c[x]
            v = np.nan
            if sums[8, x] >= 3.0 and (det > 0.0 or det < 0.0):
                rdet = 1.0 / det
                i10 = m01 * rdet
                i11 = (s_a * s_e - s_c * s_c) * rdet
                i12 = (s_b * s_c - s_a * s_d) * rdet
                i20 = m02 * rdet
                i21 = i12
                i22 = (s_a * s_c - s_b * s_b) * rdet
                p1 = i10 * sums[5, x] + i11 * sums[6, x] + i12 * sums[7, x]
                p2 = i20 * sums[5, x] + i21 * sums[6, x] + i22 * sums[7, x]
                if p2 < 0.0:
                    v = cc - p1 / (2.0 * p2)
                    par[0, x] = i10
                    par[1, x] = i11
                    par[2, x] = i12
                    par[3, x] = i20
                    par[4, x] = i21
                    par[5, x] = i22
                    par[6, x] = p1
                    par[7, x] = p2
            g = v - cc
            if it == 0:
                if not np.isfinite(g):
                    state[x] = -1
                    continue
                c0[x] = cc
                g0[x] = g
                c[x] = cc + g if g != 0.0 else cc + 1e-3
                active = True
                continue
            if not np.isfinite(g) or abs(cc - start[x]) > h:
                state[x] = -1
                continue
            if abs(g) < WL_TOL_EV and cc != c0[x]:
                state[x] = 1
                for i in range(8):
                    fin[i, x] = par[i, x]
                fin[8, x] = 1.0 + (g - g0[x]) / (cc - c0[x])
                fin[9, x] = v
                continue
            c_new = cc - g * (cc - c0[x]) / (g - g0[x]) if g != g0[x] else cc + g
            c0[x] = cc
            g0[x] = g
            c[x] = c_new
            active = True
        if not active:
            break
    for x in range(w):
        if state[x] == 0:
            state[x] = -1
    # Gradient of the fixed point with respect to each absorbance, and its variance.
    ga = np.zeros(w)
    gb = np.zeros(w)
    var_w = np.zeros(w)
    e_lo = np.full(w, np.inf)
    e_hi = np.full(w, -np.inf)
    for j in range(n_wl):
        k = wl_lo + j
        ek = e_blk[k]
        tk = t_blk[k]
        for x in range(w):
            if state[x] != 1:
                continue
            u = ek - c[x]
            r = u * inv_h
            if r * r >= 1.0:
                continue
            e_lo[x] = min(e_lo[x], ek)
            e_hi[x] = max(e_hi[x], ek)
            wk = (1.0 - r * r) ** 2
            m1 = (fin[0, x] + fin[1, x] * u + fin[2, x] * u * u) * wk
            m2 = (fin[3, x] + fin[4, x] * u + fin[5, x] * u * u) * wk
            ustar = -fin[6, x] / (2.0 * fin[7, x])
            gk = -(m1 + 2.0 * ustar * m2) / (2.0 * fin[7, x] * (1.0 - fin[8, x]))
            if method == 1:
                gk /= np.exp(z[j, x])
            ga[x] += gk
            gb[x] += gk * tk
            vk = sv[x] * _fexp(blk_mu[k, x] - acc[ROW_REF, x]) if model_var else blk_var[k, x]
            var_w[x] += gk * gk * vk
    for x in range(w):
        if state[x] != 1:
            continue
        v = fin[9, x]
        dvdc = fin[8, x]
        if not (np.isfinite(dvdc) and dvdc < 1.0):
            continue
        if not (e_lo[x] <= v <= e_hi[x]) or abs(v - start[x]) > h:
            continue
        s = sv[x]
        vw = var_w[x] + s * (ga[x] * ga[x] * acc[V_AA, x] + gb[x] * gb[x] * acc[V_BB, x]
                             + 2.0 * ga[x] * gb[x] * acc[V_AB, x])
        out_w[x] = v
        out_s[x] = np.sqrt(vw)


@njit(cache=True)
def _whiteline_row(blk_mu, blk_var, acc, sv, todo, model_var, t_blk, e_blk, wl_lo, wl_hi,
                   method, fit_lo, fit_n, pinv, center, scale, kmax, ymax, zbuf, coef, d1buf,
                   out_w, out_s):
    """White-line energy (peak of the model fitted around the maximum) and its sigma.

    Methods: 0 quadratic, 1 gaussian (quadratic in log), 2 trig_poly. ``kmax`` (W,)
    int64, ``ymax`` (W,), ``zbuf`` (maxpts,), ``coef`` and ``d1buf`` (P,) are scratch.
    """
    w = blk_mu.shape[1]
    n_par = pinv.shape[1]
    # Highest point of (mu - pre) per pixel, branch-free over k (vectorizes); -2 marks
    # a NaN in the window.
    for x in range(w):
        kmax[x] = wl_lo
        ymax[x] = -np.inf
    for k in range(wl_lo, wl_hi + 1):
        tk = t_blk[k]
        for x in range(w):
            yv = blk_mu[k, x] - (acc[ROW_ALPHA, x] + acc[ROW_BETA, x] * tk)
            bad = not (np.abs(yv) < np.inf)
            better = yv > ymax[x]
            kmax[x] = -2 if (bad or kmax[x] == -2) else (k if better else kmax[x])
            ymax[x] = yv if better else ymax[x]
    if method != 2:
        _local_peaks_row(blk_mu, blk_var, acc, sv, todo, model_var, t_blk, e_blk, wl_lo,
                         wl_hi, scale, method, kmax, out_w, out_s)
        return
    for x in range(w):
        out_w[x] = np.nan
        out_s[x] = np.nan
        c = kmax[x]
        if c < 0 or not todo[x]:
            continue
        alpha = acc[ROW_ALPHA, x]
        beta = acc[ROW_BETA, x]
        s = sv[x]
        ref = acc[ROW_REF, x]
        lo = fit_lo[c]
        n = fit_n[c]
        if n < 3:
            continue
        for j in range(n):
            zbuf[j] = blk_mu[lo + j, x] - (alpha + beta * t_blk[lo + j])
        for p in range(n_par):
            acc_p = 0.0
            for j in range(n):
                acc_p += pinv[c, p, j] * zbuf[j]
            coef[p] = acc_p
        u = _trig_peak(coef)
        e_pk = center[c] + scale * u
        if not (np.isfinite(e_pk) and e_blk[lo] <= e_pk <= e_blk[lo + n - 1]):
            continue
        d2 = 0.0
        for p in range(n_par):
            d2 += coef[p] * _wl_d2(u, p)
            d1buf[p] = _wl_d1(u, p)
        g0 = 0.0
        g1 = 0.0
        var_w = 0.0
        for j in range(n):
            acc_g = 0.0
            for p in range(n_par):
                acc_g += d1buf[p] * pinv[c, p, j]
            g = -scale * acc_g / d2
            g0 += g
            g1 += g * t_blk[lo + j]
            vj = s * _fexp(blk_mu[lo + j, x] - ref) if model_var else blk_var[lo + j, x]
            var_w += g * g * vj
        var_w += s * (g0 * g0 * acc[V_AA, x] + g1 * g1 * acc[V_BB, x]
                      + 2.0 * g0 * g1 * acc[V_AB, x])
        out_w[x] = e_pk
        out_s[x] = np.sqrt(var_w)


@njit(cache=True)
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


@njit(parallel=True, cache=True)
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


@njit(parallel=True, cache=True)
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


@njit(parallel=True, cache=True)
def _lines_kernel(acc, n_pre, pre_st, pre_stt, k_sigma, jump, jump_s, sv, mask):
    for y in prange(acc.shape[0]):
        _lines_row(acc[y], n_pre, pre_st, pre_stt, k_sigma, False, jump[y], jump_s[y], sv[y],
                   mask[y])


@njit(parallel=True, cache=True)
def _edge_kernel(blk_mu, blk_var, acc, sv, todo, e_blk, t_blk, e0, edge_lo, edge_hi, out_e,
                 out_s):
    n_h, n_w = sv.shape
    for y in prange(n_h):
        kx = np.empty(n_w, dtype=np.int64)
        _edge_row(blk_mu[y], blk_var[y], acc[y], sv[y], todo[y], False, e_blk,
                  t_blk, e0, edge_lo, edge_hi, kx, out_e[y], out_s[y])


@njit(parallel=True, cache=True)
def _whiteline_kernel(blk_mu, blk_var, acc, sv, todo, t_blk, e_blk, wl_lo, wl_hi, method,
                      fit_lo, fit_n, pinv, center, scale, out_w, out_s):
    n_h, n_w = sv.shape
    n_par = pinv.shape[1]
    for y in prange(n_h):
        _whiteline_row(blk_mu[y], blk_var[y], acc[y], sv[y], todo[y], False, t_blk,
                       e_blk, wl_lo, wl_hi, method, fit_lo, fit_n, pinv, center, scale,
                       np.empty(n_w, dtype=np.int64), np.empty(n_w), np.empty(pinv.shape[2]),
                       np.empty(n_par), np.empty(n_par), out_w[y], out_s[y])


@njit(parallel=True, cache=True)
def _valence_kernel(acc, sv, todo, out_v, out_s):
    for y in prange(sv.shape[0]):
        _valence_row(acc[y], sv[y], todo[y], out_v[y], out_s[y])


@njit(parallel=True, cache=True)
def _mask_in_place_kernel(out, mask):
    """Set ``out`` (N_OUT, H, W) to NaN outside ``mask``, except the edge-jump rows."""
    n_out, n_h, n_w = out.shape
    for y in prange(n_h):
        for x in range(n_w):
            if not mask[y, x]:
                for o in range(n_out):
                    if o != OUT_JUMP and o != OUT_JUMP_S:
                        out[o, y, x] = np.nan
