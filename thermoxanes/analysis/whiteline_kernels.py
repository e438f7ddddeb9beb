"""Numba kernels of the white-line read-out (private; see :mod:`thermoxanes.analysis.fit`).

``_whiteline_row`` finds each pixel's highest point of ``y = mu - pre`` in the white-line
window, then either

* quadratic / Gaussian (``_local_peaks_row``): the fixed point of the vertex of a
  parabola fitted with biweight weights around a moving centre (continuous in the
  data), iterated for all pixels of a row in lockstep; pixels that have converged or
  failed leave the working set, which is compacted, so that the stragglers cost only
  their own columns; or
* trig_poly: a second-order polynomial plus one sine/cosine period fitted over the
  whole window, maximized by a grid search on a precomputed basis table and Newton steps.

Both propagate a 1-sigma uncertainty from the variances of the absorbances.
"""

import numpy as np
from numba import njit

from thermoxanes.analysis.fit_plan import ROW_ALPHA, ROW_BETA
from thermoxanes.analysis.kernel_base import V_AA, V_AB, V_BB

N_TRIG_GRID = 201
#: Fixed-point iteration of the quadratic / Gaussian white line: at most this many
#: secant steps, converged below this change (eV).
WL_MAX_ITER = 50
WL_TOL_EV = 2e-5


@njit(cache=True, error_model="numpy", inline="always")
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


@njit(cache=True, error_model="numpy", inline="always")
def _wl_d2(u, p):
    """Second derivative of peak-model basis function ``p`` at u."""
    if p < 2:
        return 0.0
    if p == 2:
        return 2.0
    if p == 3:
        return -np.pi * np.pi * np.sin(np.pi * u)
    return -np.pi * np.pi * np.cos(np.pi * u)


@njit(cache=True, error_model="numpy")
def _trig_grid():
    """(N_TRIG_GRID, 5) basis values (1, u, u^2, sin pi u, cos pi u) on u in [-1, 1]."""
    g = np.empty((N_TRIG_GRID, 5))
    for i in range(N_TRIG_GRID):
        u = -1.0 + 2.0 * i / (N_TRIG_GRID - 1)
        g[i, 0] = 1.0
        g[i, 1] = u
        g[i, 2] = u * u
        g[i, 3] = np.sin(np.pi * u)
        g[i, 4] = np.cos(np.pi * u)
    return g


@njit(cache=True, error_model="numpy")
def _trig_peak(coef, grid):
    """Maximum of the trig_poly model on [-1, 1]: grid search on ``grid``, then Newton."""
    best_i = 0
    best_f = -np.inf
    c0, c1, c2, c3, c4 = coef[0], coef[1], coef[2], coef[3], coef[4]
    for i in range(N_TRIG_GRID):
        f = (c0 + c1 * grid[i, 1] + c2 * grid[i, 2] + c3 * grid[i, 3] + c4 * grid[i, 4])
        if f > best_f:
            best_f = f
            best_i = i
    u = grid[best_i, 1]
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


@njit(cache=True, error_model="numpy")
def _ds_sums(rr, ww, wd, zj, ds, w):
    """Add one point's terms to the fit sums ``ds`` (16, W) and their d/dr (see caller)."""
    s0, s1, s2, s3, s4, t0, t1, t2 = ds[0], ds[1], ds[2], ds[3], ds[4], ds[5], ds[6], ds[7]
    for x in range(w):
        r = rr[x]
        wt = ww[x]
        r2 = r * r
        s0[x] += wt
        s1[x] += wt * r
        s2[x] += wt * r2
        s3[x] += wt * r2 * r
        s4[x] += wt * r2 * r2
    for x in range(w):
        r = rr[x]
        wt = ww[x]
        zz = zj[x]
        t0[x] += wt * zz
        t1[x] += wt * r * zz
        t2[x] += wt * r * r * zz
    d0, d1, d2, d3, d4, e0, e1, e2 = ds[8], ds[9], ds[10], ds[11], ds[12], ds[13], ds[14], ds[15]
    for x in range(w):
        r = rr[x]
        wt = ww[x]
        dw = wd[x]
        r2 = r * r
        d0[x] += dw
        d1[x] += dw * r + wt
        d2[x] += dw * r2 + np.float32(2.0) * wt * r
        d3[x] += dw * r2 * r + np.float32(3.0) * wt * r2
        d4[x] += dw * r2 * r2 + np.float32(4.0) * wt * r2 * r
    for x in range(w):
        r = rr[x]
        wt = ww[x]
        dw = wd[x]
        zz = zj[x]
        e0[x] += dw * zz
        e1[x] += (dw * r + wt) * zz
        e2[x] += (dw * r * r + np.float32(2.0) * wt * r) * zz


@njit(cache=True, error_model="numpy")
def _local_peaks_row(blk_mu, blk_var, acc, sv, todo, t_blk, e_blk, wl_lo, wl_hi,
                     h, method, kmax, out_w, out_s):
    """Quadratic (Gaussian) white line of a row of pixels, in lockstep.

    Per pixel: a parabola (in log for the Gaussian) fitted to ``y = mu - pre`` with
    biweight weights ``(1 - ((E - c)/h)^2)^2`` is re-centred on its vertex ``V(c)`` until
    ``V(c) = c`` (secant steps from the highest point ``start``), so that the estimate is
    continuous in the data; it must stay within ``h`` of ``start``. Sigma: implicit
    derivative of the fixed point, ``dV/dy / (1 - dV/dc)`` (dV/dc analytic). ``kmax`` holds each
    pixel's highest point (< 0: none).

    The sums of every step run over all pixels of the working set at once, in float32,
    with energies relative to the window start and the fit in the reduced variable
    ``r = (E - c) / h`` (well conditioned); pixels that converge or fail leave the
    working set, which is compacted when it has halved.
    """
    w = blk_mu.shape[1]
    n_wl = wl_hi - wl_lo + 1
    f32 = np.float32
    e_ref = e_blk[wl_lo]
    hh = f32(h)
    inv_h = f32(1.0 / h)
    ew = np.empty(n_wl, dtype=f32)
    for j in range(n_wl):
        ew[j] = f32(e_blk[wl_lo + j] - e_ref)
    z = np.empty((n_wl, w), dtype=f32)
    start = np.zeros(w, dtype=f32)
    valid = np.zeros(w, dtype=np.bool_)
    for x in range(w):
        out_w[x] = np.nan
        out_s[x] = np.nan
        if kmax[x] >= 0 and todo[x]:
            valid[x] = True
            start[x] = ew[kmax[x] - wl_lo]
    two_h = f32(2.0) * hh
    alpha = acc[ROW_ALPHA]
    beta = acc[ROW_BETA]
    nbad = np.zeros(w, dtype=np.int32)
    for j in range(n_wl):
        k = wl_lo + j
        tk = f32(t_blk[k])
        ej = ew[j]
        zj = z[j]
        mrow = blk_mu[k]
        for x in range(w):
            zj[x] = f32(mrow[x]) - (f32(alpha[x]) + f32(beta[x]) * tk)
        if method == 1:
            for x in range(w):
                y = zj[x]
                zj[x] = np.log(y) if y > f32(0.0) else f32(np.nan)
        for x in range(w):
            y = zj[x]
            near = abs(ej - start[x]) < two_h
            fine = np.abs(y) < np.inf
            nbad[x] += np.int32(1) if (near & ~fine) else np.int32(0)
            zj[x] = y if (near & fine) else f32(0.0)
    for x in range(w):
        valid[x] = valid[x] & (nbad[x] == 0)
    z_full = z.copy()  # the working set compacts z in place
    # Working set: original column, centre, previous centre and step, start, state.
    orig = np.empty(w, dtype=np.int64)
    c = np.empty(w, dtype=f32)
    c0 = np.empty(w, dtype=f32)
    g0 = np.empty(w, dtype=f32)
    st = np.empty(w, dtype=f32)
    act = np.zeros(w, dtype=np.int64)  # 0 iterating, 1 done, -1 failed
    m = 0
    for x in range(w):
        if not valid[x]:
            continue
        cx = start[x]
        if m != x:
            for j in range(n_wl):
                z[j, m] = z[j, x]
        orig[m] = x
        c[m] = cx
        st[m] = start[x]
        m += 1
    # Results per original pixel: inverse rows 1-2 (6), q1, q2, dV/dc, vertex, centre.
    fin = np.zeros((11, w), dtype=f32)
    done = np.zeros(w, dtype=np.bool_)
    sums = np.empty((9, w), dtype=f32)
    par = np.empty((8, w), dtype=f32)
    v = np.empty(w, dtype=f32)
    one = f32(1.0)
    zero = f32(0.0)
    n_active = m
    it = 0
    while n_active > 0 and it <= WL_MAX_ITER:
        c_lo = np.inf
        c_hi = -np.inf
        for i in range(m):
            if act[i] == 0:
                c_lo = min(c_lo, c[i])
                c_hi = max(c_hi, c[i])
        j_lo = 0
        while j_lo < n_wl - 1 and ew[j_lo] <= c_lo - hh:
            j_lo += 1
        j_hi = n_wl - 1
        while j_hi > 0 and ew[j_hi] >= c_hi + hh:
            j_hi -= 1
        for q in range(9):
            for i in range(m):
                sums[q, i] = zero
        for j in range(j_lo, j_hi + 1):
            ej = ew[j]
            zj = z[j]
            for i in range(m):
                r = (ej - c[i]) * inv_h
                a = max(one - r * r, zero)
                wt = a * a
                zz = zj[i]
                wr = wt * r
                wrr = wr * r
                sums[0, i] += wt
                sums[1, i] += wr
                sums[2, i] += wrr
                sums[3, i] += wrr * r
                sums[4, i] += wrr * r * r
                sums[5, i] += wt * zz
                sums[6, i] += wr * zz
                sums[7, i] += wrr * zz
                sums[8, i] += one if a > zero else zero
        for i in range(m):
            s_a, s_b, s_c, s_d, s_e = sums[0, i], sums[1, i], sums[2, i], sums[3, i], sums[4, i]
            m00 = s_c * s_e - s_d * s_d
            m01 = s_c * s_d - s_b * s_e
            m02 = s_b * s_d - s_c * s_c
            det = s_a * m00 + s_b * m01 + s_c * m02
            ok = (sums[8, i] >= f32(3.0)) & ((det > zero) | (det < zero))
            rdet = one / det if ok else zero
            i10 = m01 * rdet
            i11 = (s_a * s_e - s_c * s_c) * rdet
            i12 = (s_b * s_c - s_a * s_d) * rdet
            i20 = m02 * rdet
            i22 = (s_a * s_c - s_b * s_b) * rdet
            q1 = i10 * sums[5, i] + i11 * sums[6, i] + i12 * sums[7, i]
            q2 = i20 * sums[5, i] + i12 * sums[6, i] + i22 * sums[7, i]
            good = ok & (q2 < zero)
            v[i] = c[i] - hh * q1 / (f32(2.0) * q2) if good else f32(np.nan)
            par[0, i] = i10
            par[1, i] = i11
            par[2, i] = i12
            par[3, i] = i20
            par[4, i] = i12
            par[5, i] = i22
            par[6, i] = q1
            par[7, i] = q2
        for i in range(m):
            if act[i] != 0:
                continue
            cc = c[i]
            g = v[i] - cc
            if it == 0:
                if np.isfinite(g):
                    c0[i] = cc
                    g0[i] = g
                    c[i] = cc + g if g != zero else cc + f32(1e-3)
                else:
                    act[i] = -1
            elif not np.isfinite(g) or abs(cc - st[i]) > hh:
                act[i] = -1
            elif abs(g) < WL_TOL_EV and cc != c0[i]:
                act[i] = 1
                x = orig[i]
                done[x] = True
                for q in range(8):
                    fin[q, x] = par[q, i]
                fin[8, x] = one + (g - g0[i]) / (cc - c0[i])
                fin[9, x] = v[i]
                fin[10, x] = cc
            else:
                c_new = cc - g * (cc - c0[i]) / (g - g0[i]) if g != g0[i] else cc + g
                c0[i] = cc
                g0[i] = g
                c[i] = c_new
            if act[i] != 0:
                n_active -= 1
        if 2 * n_active <= m and n_active < m:
            n_keep = 0
            for i in range(m):
                if act[i] == 0:
                    if n_keep != i:
                        for j in range(n_wl):
                            z[j, n_keep] = z[j, i]
                        orig[n_keep] = orig[i]
                        c[n_keep] = c[i]
                        c0[n_keep] = c0[i]
                        g0[n_keep] = g0[i]
                        st[n_keep] = st[i]
                        act[n_keep] = 0
                    n_keep += 1
            m = n_keep
        it += 1
    # At each converged centre: the fit again, with the derivatives of its sums with
    # respect to the centre, for an analytic dV/dc (the secant slope is too coarse in
    # float32). Pixels without a result get a far centre (zero weights).
    big = f32(1e6)
    cf = np.empty(w, dtype=f32)
    for x in range(w):
        cf[x] = fin[10, x] if done[x] else big
    ds = np.zeros((16, w), dtype=f32)  # S0-S4, T0-T2, then their d/dr
    c_lo = np.inf
    c_hi = -np.inf
    for x in range(w):
        if done[x]:
            c_lo = min(c_lo, cf[x])
            c_hi = max(c_hi, cf[x])
    rr = np.empty(w, dtype=f32)
    ww = np.empty(w, dtype=f32)
    wd = np.empty(w, dtype=f32)
    for j in range(n_wl):
        ej = ew[j]
        if not (c_lo - hh < ej < c_hi + hh):
            continue
        zj = z_full[j]
        for x in range(w):
            r = (ej - cf[x]) * inv_h
            a = max(one - r * r, zero)
            rr[x] = r
            ww[x] = a * a
            wd[x] = f32(-4.0) * r * a  # d(weight)/dr (0 outside the radius)
        _ds_sums(rr, ww, wd, zj, ds, w)
    rstar = np.zeros(w, dtype=f32)
    scale_g = np.zeros(w, dtype=f32)
    for x in range(w):
        if not done[x]:
            continue
        s_a, s_b, s_c, s_d, s_e = ds[0, x], ds[1, x], ds[2, x], ds[3, x], ds[4, x]
        m00 = s_c * s_e - s_d * s_d
        m01 = s_c * s_d - s_b * s_e
        m02 = s_b * s_d - s_c * s_c
        det = s_a * m00 + s_b * m01 + s_c * m02
        if not (det > zero or det < zero):
            cf[x] = big
            continue
        rdet = one / det
        i00 = m00 * rdet
        i01 = m01 * rdet
        i02 = m02 * rdet
        i11 = (s_a * s_e - s_c * s_c) * rdet
        i12 = (s_b * s_c - s_a * s_d) * rdet
        i22 = (s_a * s_c - s_b * s_b) * rdet
        t0, t1, t2 = ds[5, x], ds[6, x], ds[7, x]
        q0 = i00 * t0 + i01 * t1 + i02 * t2
        q1 = i01 * t0 + i11 * t1 + i12 * t2
        q2 = i02 * t0 + i12 * t1 + i22 * t2
        # d/dc = -(1/h) d/dr: dq/dr = inv (dt - dM q).
        d0, d1, d2, d3, d4 = ds[8, x], ds[9, x], ds[10, x], ds[11, x], ds[12, x]
        r0 = ds[13, x] - (d0 * q0 + d1 * q1 + d2 * q2)
        r1 = ds[14, x] - (d1 * q0 + d2 * q1 + d3 * q2)
        r2 = ds[15, x] - (d2 * q0 + d3 * q1 + d4 * q2)
        dq1 = i01 * r0 + i11 * r1 + i12 * r2
        dq2 = i02 * r0 + i12 * r1 + i22 * r2
        # V = c + h rho, rho = -q1 / (2 q2); dV/dc = 1 - d(rho)/dr.
        drho = -(dq1 * q2 - q1 * dq2) / (f32(2.0) * q2 * q2)
        dvdc = one - drho
        ok = q2 < zero and dvdc < one and abs(fin[9, x] - start[x]) <= hh
        if not ok:
            cf[x] = big
            continue
        fin[0, x] = i01
        fin[1, x] = i11
        fin[2, x] = i12
        fin[3, x] = i02
        fin[4, x] = i12
        fin[5, x] = i22
        rstar[x] = -q1 / (f32(2.0) * q2)
        scale_g[x] = -hh / (f32(2.0) * q2 * (one - dvdc))
    ga = np.zeros(w, dtype=f32)
    gb = np.zeros(w, dtype=f32)
    var_w = np.zeros(w, dtype=f32)
    e_lo = np.full(w, np.inf, dtype=f32)
    e_hi = np.full(w, -np.inf, dtype=f32)
    gtmp = np.empty(w, dtype=f32)
    wtmp = np.empty(w, dtype=f32)
    f0, f1, f2, f3, f4, f5 = fin[0], fin[1], fin[2], fin[3], fin[4], fin[5]
    c_lo = np.inf
    c_hi = -np.inf
    for x in range(w):
        if cf[x] != big:
            c_lo = min(c_lo, cf[x])
            c_hi = max(c_hi, cf[x])
    for j in range(n_wl):
        ej = ew[j]
        if not (c_lo - hh < ej < c_hi + hh):
            continue
        k = wl_lo + j
        tk = f32(t_blk[k])
        for x in range(w):
            r = (ej - cf[x]) * inv_h
            a = max(one - r * r, zero)
            wk = a * a
            m1 = (f0[x] + f1[x] * r + f2[x] * r * r) * wk
            m2 = (f3[x] + f4[x] * r + f5[x] * r * r) * wk
            gtmp[x] = (m1 + f32(2.0) * rstar[x] * m2) * scale_g[x]
            wtmp[x] = wk
        if method == 1:
            zj = z_full[j]
            for x in range(w):
                gtmp[x] = gtmp[x] / np.exp(zj[x]) if wtmp[x] > zero else zero
        vrow = blk_var[k]
        for x in range(w):
            gk = gtmp[x]
            ga[x] += gk
            gb[x] += gk * tk
            var_w[x] += gk * gk * f32(vrow[x])
        for x in range(w):
            inside = wtmp[x] > zero
            e_lo[x] = min(e_lo[x], ej) if inside else e_lo[x]
            e_hi[x] = max(e_hi[x], ej) if inside else e_hi[x]
    for x in range(w):
        if cf[x] == big:
            continue
        vx = fin[9, x]
        if not (e_lo[x] <= vx <= e_hi[x]):
            continue
        s = sv[x]
        gax = np.float64(ga[x])
        gbx = np.float64(gb[x])
        vw = var_w[x] + s * (gax * gax * acc[V_AA, x] + gbx * gbx * acc[V_BB, x]
                             + 2.0 * gax * gbx * acc[V_AB, x])
        out_w[x] = e_ref + vx
        out_s[x] = np.sqrt(vw)


@njit(cache=True, error_model="numpy")
def _whiteline_row(blk_mu, blk_var, acc, sv, todo, t_blk, e_blk, wl_lo, wl_hi,
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
    alpha = acc[ROW_ALPHA]
    beta = acc[ROW_BETA]
    nbad = np.zeros(w, dtype=np.int32)
    for x in range(w):
        kmax[x] = wl_lo
        ymax[x] = -np.inf
    for k in range(wl_lo, wl_hi + 1):
        tk = t_blk[k]
        mrow = blk_mu[k]
        for x in range(w):
            yv = mrow[x] - (alpha[x] + beta[x] * tk)
            nbad[x] += np.int32(0) if np.abs(yv) < np.inf else np.int32(1)
            better = yv > ymax[x]
            kmax[x] = k if better else kmax[x]
            ymax[x] = yv if better else ymax[x]
    for x in range(w):
        kmax[x] = kmax[x] if nbad[x] == 0 else -2
    if method != 2:
        _local_peaks_row(blk_mu, blk_var, acc, sv, todo, t_blk, e_blk, wl_lo,
                         wl_hi, scale, method, kmax, out_w, out_s)
        return
    grid = _trig_grid()
    for x in range(w):
        out_w[x] = np.nan
        out_s[x] = np.nan
        c = kmax[x]
        if c < 0 or not todo[x]:
            continue
        alpha = acc[ROW_ALPHA, x]
        beta = acc[ROW_BETA, x]
        s = sv[x]
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
        u = _trig_peak(coef, grid)
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
            vj = blk_var[lo + j, x]
            var_w += g * g * vj
        var_w += s * (g0 * g0 * acc[V_AA, x] + g1 * g1 * acc[V_BB, x]
                      + 2.0 * g0 * g1 * acc[V_AB, x])
        out_w[x] = e_pk
        out_s[x] = np.sqrt(var_w)
