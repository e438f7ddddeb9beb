"""Numba kernels of the white-line read-out (private; see :mod:`thermoxanes.analysis.fit`).

``_whiteline_row`` finds each pixel's highest point of ``y = mu - pre`` in the white-line
window, then either

* quadratic / Gaussian (``_local_peaks_row``): the fixed point of the vertex of a
  parabola fitted with biweight weights around a moving centre (continuous in the
  data), iterated for the pixels of a chunk of ``CHUNK`` in lockstep (a chunk takes
  5-7 steps); or
* trig_poly: a second-order polynomial plus one sine/cosine period fitted over the
  whole window, maximized by a grid search on a precomputed basis table and Newton steps.

Both propagate a 1-sigma uncertainty from the variances of the absorbances.

The quadratic / Gaussian state of a chunk lives in the rows of scratch arrays of fixed
row stride ``CHUNK``, so that every pixel loop is branch-free (selects, exact 0/1 blends
where a select would become a scalar conditional store) and vectorizes; the sums of a
fit run over blocks of ``_BLK`` points per pixel loop, so that they stay in registers.
Every array a pixel loop touches is a C-contiguous 1-D row slice indexed from 0.
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
#: Smallest float32 >= WL_TOL_EV: ``|g| < WL_TOL_EV`` of a float32 ``g`` in float32 lanes.
_WL_TOL_F32 = float(np.float32(WL_TOL_EV)) if float(np.float32(WL_TOL_EV)) >= WL_TOL_EV else (
    float(np.nextafter(np.float32(WL_TOL_EV), np.float32(np.inf))))
#: Pixels per chunk of the quadratic / Gaussian read-out: a compile-time row stride lets
#: LLVM prove that the scratch rows do not overlap (their loops vectorize).
CHUNK = 256
#: Points per pixel loop of the sums (a block's sums stay in registers).
_BLK = 4
#: Centre of a pixel without a result: far from every point (zero weights).
_BIG = 1.0e6
# Scratch rows of the quadratic / Gaussian read-out: secant state (centre, previous
# centre and step, start, state: 0 iterating, 1 converged, -1 failed), vertex, count of
# bad points, pass selection, converged vertex and centre; fit sums (9); sums at the
# converged centre and their d/dr (16); inverse rows 1-2 (6), vertex in r, sigma scale;
# sigma sums and scratch; lanes of the span's min/max.
(_C, _C0, _G0, _ST, _ACT, _V, _NBAD, _LIVE, _VX, _CF) = range(10)
_S0 = 10
_D0 = _S0 + 9
_F0 = _D0 + 16
(_RSTAR, _SCALE, _GA, _GB, _VW, _ELO, _EHI, _GT, _WT) = range(_F0 + 6, _F0 + 15)
_LO8, _HI8 = _F0 + 15, _F0 + 16
N_SCRATCH = _F0 + 17


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


@njit(cache=True, error_model="numpy", inline="always")
def _pass_points(ew, ewp, j_lo, j_hi):
    """``ewp``: the energies ``ew[j_lo..j_hi]`` of a pass, every other point (and the
    padding for the blocks) far away (zero weight)."""
    far = np.float32(_BIG)
    for j in range(ewp.size):
        ewp[j] = far
    for j in range(j_lo, j_hi + 1):
        ewp[j] = ew[j]


@njit(cache=True, error_model="numpy", inline="always")
def _add_dpoint(acc, ej, cx, inv_h, zz):
    """``acc`` (d/dr of S0-S4 and T0-T2) plus the terms of the point ``(ej, zz)``."""
    f32 = np.float32
    d0, d1, d2, d3, d4, e0, e1, e2 = acc
    r, a = _biweight(ej, cx, inv_h)
    wt = a * a
    dw = f32(-4.0) * r * a  # d(weight)/dr (0 outside the radius)
    r2 = r * r
    return (d0 + dw, d1 + (dw * r + wt), d2 + (dw * r2 + f32(2.0) * wt * r),
            d3 + (dw * r2 * r + f32(3.0) * wt * r2),
            d4 + (dw * r2 * r2 + f32(4.0) * wt * r2 * r), e0 + dw * zz,
            e1 + (dw * r + wt) * zz, e2 + (dw * r * r + f32(2.0) * wt * r) * zz)


@njit(cache=True, error_model="numpy", inline="always")
def _biweight(ej, c, inv_h):
    """``(r, a)`` of a point at ``ej`` around centre ``c``: ``r = (ej - c) / h`` and
    ``a = max(1 - r^2, 0)`` as a select (the weight is ``a^2``)."""
    r = (ej - c) * inv_h
    a = np.float32(1.0) - r * r
    return r, (a if a > np.float32(0.0) else np.float32(0.0))


@njit(cache=True, error_model="numpy", inline="always")
def _active_span(ew, c, sel, hh, n, scr):
    """``(j_lo, j_hi)``: the points of ``ew`` within ``hh`` of any centre ``c[x]`` with
    ``sel[x] > 0``. The minimum and maximum run in 8 lanes of the scratch rows LO8 and
    HI8 (a float min/max reduction does not vectorize without a fast-math licence)."""
    f32 = np.float32
    inf = f32(np.inf)
    lo8 = scr[_LO8]
    hi8 = scr[_HI8]
    for q in range(8):
        lo8[q] = inf
        hi8[q] = -inf
    for b in range(n // 8):
        for q in range(8):
            x = 8 * b + q
            v = c[x]
            s = sel[x] > f32(0.0)
            lo8[q] = v if s & (v < lo8[q]) else lo8[q]
            hi8[q] = v if s & (v > hi8[q]) else hi8[q]
    c_lo = inf
    c_hi = -inf
    for q in range(8):
        c_lo = min(c_lo, lo8[q])
        c_hi = max(c_hi, hi8[q])
    for x in range(n - n % 8, n):
        if sel[x] > f32(0.0):
            c_lo = min(c_lo, c[x])
            c_hi = max(c_hi, c[x])
    lo = np.float64(c_lo) - hh
    hi = np.float64(c_hi) + hh
    n_wl = ew.size
    j_lo = 0
    while j_lo < n_wl - 1 and ew[j_lo] <= lo:
        j_lo += 1
    j_hi = n_wl - 1
    while j_hi > 0 and ew[j_hi] >= hi:
        j_hi -= 1
    return j_lo, j_hi


@njit(cache=True, error_model="numpy", inline="always")
def _wl_setup(blk_mu, acc, todo, kmax, t_blk, ew, wl_lo, hh, method, scr, z, x0, n):
    """Chunk set-up: ``z = mu - pre`` (log for the Gaussian) near each pixel's highest
    point ``start``, 0 elsewhere; the centre starts there; pixels without a highest
    point, not to do, or with a non-finite point within ``2 h`` of it leave (ACT -1)."""
    f32 = np.float32
    zero = f32(0.0)
    x1 = x0 + n
    kmax = kmax[x0:x1]
    todo = todo[x0:x1]
    alpha = acc[ROW_ALPHA, x0:x1]
    beta = acc[ROW_BETA, x0:x1]
    start = scr[_ST]
    nbad = scr[_NBAD]
    act = scr[_ACT]
    for x in range(n):  # once per pixel (a gather): scalar
        k = kmax[x]
        if k >= 0 and todo[x]:
            start[x] = ew[k - wl_lo]
            act[x] = zero
        else:
            start[x] = zero
            act[x] = f32(-1.0)
        nbad[x] = zero
    two_h = f32(2.0) * hh
    for j in range(ew.size):
        k = wl_lo + j
        tk = f32(t_blk[k])
        ej = ew[j]
        zj = z[j]
        mrow = blk_mu[k, x0:x1]
        for x in range(n):
            zj[x] = f32(mrow[x]) - (f32(alpha[x]) + f32(beta[x]) * tk)
        if method == 1:
            for x in range(n):
                y = zj[x]
                zj[x] = np.log(y) if y > zero else f32(np.nan)
        for x in range(n):
            y = zj[x]
            near = abs(ej - start[x]) < two_h
            fine = np.abs(y) < np.inf
            nbad[x] += f32(1.0) if (near & ~fine) else zero
            zj[x] = y if (near & fine) else zero
    c = scr[_C]
    for x in range(n):
        act[x] = act[x] if nbad[x] == zero else f32(-1.0)
        c[x] = start[x]
    for q in range(8):  # sums kept at convergence: finite for every pixel
        row = scr[_D0 + q]
        for x in range(n):
            row[x] = zero


@njit(cache=True, error_model="numpy", inline="always")
def _add_point(acc, ej, cx, inv_h, zz):
    """``acc`` (S0-S4, T0-T2, count of points with weight) plus the point ``(ej, zz)``
    weighted around the centre ``cx``."""
    one = np.float32(1.0)
    zero = np.float32(0.0)
    s0, s1, s2, s3, s4, t0, t1, t2, cnt = acc
    r, a = _biweight(ej, cx, inv_h)
    wt = a * a
    wr = wt * r
    wrr = wr * r
    return (s0 + wt, s1 + wr, s2 + wrr, s3 + wrr * r, s4 + wrr * r * r, t0 + wt * zz,
            t1 + wr * zz, t2 + wrr * zz, cnt + (one if a > zero else zero))


@njit(cache=True, error_model="numpy", inline="always")
def _wl_vertices(ew, ewp, j_lo, j_hi, inv_h, hh, scr, z, n):
    """One step for the whole chunk: the weighted parabola around each centre ``C``, its
    vertex (row V; NaN without a maximum or with fewer than 3 points)."""
    f32 = np.float32
    one = f32(1.0)
    zero = f32(0.0)
    c = scr[_C]
    s0, s1, s2, s3, s4 = scr[_S0], scr[_S0 + 1], scr[_S0 + 2], scr[_S0 + 3], scr[_S0 + 4]
    t0, t1, t2, cnt = scr[_S0 + 5], scr[_S0 + 6], scr[_S0 + 7], scr[_S0 + 8]
    for q in range(9):
        row = scr[_S0 + q]
        for x in range(n):
            row[x] = zero
    _pass_points(ew, ewp, j_lo, j_hi)
    # Blocks of _BLK points per pixel loop: the sums stay in registers over a block.
    for jb in range(j_lo, j_hi + 1, _BLK):
        e0, e1, e2, e3 = ewp[jb], ewp[jb + 1], ewp[jb + 2], ewp[jb + 3]
        za, zb, zc, zd = z[jb], z[jb + 1], z[jb + 2], z[jb + 3]
        for x in range(n):
            cx = c[x]
            acc = (s0[x], s1[x], s2[x], s3[x], s4[x], t0[x], t1[x], t2[x], cnt[x])
            acc = _add_point(acc, e0, cx, inv_h, za[x])
            acc = _add_point(acc, e1, cx, inv_h, zb[x])
            acc = _add_point(acc, e2, cx, inv_h, zc[x])
            acc = _add_point(acc, e3, cx, inv_h, zd[x])
            s0[x], s1[x], s2[x], s3[x], s4[x], t0[x], t1[x], t2[x], cnt[x] = acc
    v = scr[_V]
    for x in range(n):
        s_a, s_b, s_c, s_d, s_e = s0[x], s1[x], s2[x], s3[x], s4[x]
        m00 = s_c * s_e - s_d * s_d
        m01 = s_c * s_d - s_b * s_e
        m02 = s_b * s_d - s_c * s_c
        det = s_a * m00 + s_b * m01 + s_c * m02
        ok = (cnt[x] >= f32(3.0)) & ((det > zero) | (det < zero))
        rdet = one / det if ok else zero
        i10 = m01 * rdet
        i11 = (s_a * s_e - s_c * s_c) * rdet
        i12 = (s_b * s_c - s_a * s_d) * rdet
        i20 = m02 * rdet
        i22 = (s_a * s_c - s_b * s_b) * rdet
        q1 = i10 * t0[x] + i11 * t1[x] + i12 * t2[x]
        q2 = i20 * t0[x] + i12 * t1[x] + i22 * t2[x]
        good = ok & (q2 < zero)
        v[x] = c[x] - hh * q1 / (f32(2.0) * q2) if good else f32(np.nan)


@njit(cache=True, error_model="numpy", inline="always")
def _wl_first_step(scr, n):
    """Secant start: a plain fixed-point step from the highest point (a pixel whose first
    vertex is not finite fails). Returns the number of pixels still iterating."""
    f32 = np.float32
    zero = f32(0.0)
    c, c0, g0, act, v = scr[_C], scr[_C0], scr[_G0], scr[_ACT], scr[_V]
    n_active = 0
    for x in range(n):
        cc = c[x]
        g = v[x] - cc
        a = act[x]
        live = a == zero
        fine = np.abs(g) < np.inf
        step = live & fine
        c_new = cc + g if g != zero else cc + f32(1e-3)
        c0[x] = cc if step else c0[x]
        g0[x] = g if step else g0[x]
        c[x] = c_new if step else cc
        act[x] = f32(-1.0) if (live & ~fine) else a
        n_active += 1 if step else 0
    return n_active


@njit(cache=True, error_model="numpy", inline="always")
def _wl_secant_step(scr, hh, n):
    """One secant step of ``g(c) = V(c) - c`` for the pixels still iterating (ACT 0):
    fail (ACT -1) on a non-finite vertex or a centre more than ``h`` from the start,
    converge (ACT 1; vertex and centre kept in rows VX and CF) below ``WL_TOL_EV``.
    Returns the number of pixels still iterating."""
    f32 = np.float32
    zero = f32(0.0)
    one = f32(1.0)
    tol = f32(_WL_TOL_F32)
    c, c0, g0, st, act, v = scr[_C], scr[_C0], scr[_G0], scr[_ST], scr[_ACT], scr[_V]
    fvert, fcent, keep = scr[_VX], scr[_CF], scr[_LIVE]
    n_active = 0
    for x in range(n):
        cc = c[x]
        cp = c0[x]
        gp = g0[x]
        g = v[x] - cc
        a = act[x]
        live = a == zero
        bad = ~(np.abs(g) < np.inf) | (abs(cc - st[x]) > hh)
        conv = ~bad & (abs(g) < tol) & (cc != cp)
        fail = live & bad
        done = live & conv
        step = live & ~bad & ~conv
        c_new = cc - g * (cc - cp) / (g - gp) if g != gp else cc + g
        c0[x] = cc if step else cp
        g0[x] = g if step else gp
        c[x] = c_new if step else cc
        act[x] = f32(-1.0) if fail else (one if done else a)
        fvert[x] = v[x] if done else fvert[x]
        fcent[x] = cc if done else fcent[x]
        keep[x] = one if done else zero
        n_active += 1 if step else 0
    for q in range(8):  # the sums at the converged centre, for the slope
        s_row = scr[_S0 + q]
        d_row = scr[_D0 + q]
        for x in range(n):
            # An exact 0/1 blend of finite values (a select here becomes a scalar
            # conditional store).
            k = keep[x]
            d_row[x] = s_row[x] * k + d_row[x] * (one - k)
    return n_active


@njit(cache=True, error_model="numpy", inline="always")
def _wl_iterate(ew, ewp, inv_h, hh, scr, z, n):
    """The secant fixed point ``V(c) = c`` of every pixel of the chunk, in lockstep (the
    pass over a chunk costs the same whatever the number of pixels still iterating)."""
    f32 = np.float32
    c, act = scr[_C], scr[_ACT]
    live = scr[_LIVE]
    n_active = 0
    for x in range(n):
        n_active += 1 if act[x] == f32(0.0) else 0
    it = 0
    while n_active > 0 and it <= WL_MAX_ITER:
        for x in range(n):
            live[x] = f32(1.0) if act[x] == f32(0.0) else f32(0.0)
        j_lo, j_hi = _active_span(ew, c, live, hh, n, scr)
        _wl_vertices(ew, ewp, j_lo, j_hi, inv_h, hh, scr, z, n)
        if it == 0:
            n_active = _wl_first_step(scr, n)
        else:
            n_active = _wl_secant_step(scr, hh, n)
        it += 1


@njit(cache=True, error_model="numpy", inline="always")
def _wl_slope(ew, ewp, inv_h, hh, scr, z, n):
    """At each converged centre (ACT 1): the d/dr of the sums of its fit, for an
    analytic dV/dc (the secant slope is too coarse in float32). Rows F: rows 1-2 of the
    inverse normal matrix; RSTAR: the vertex in r; SCALE: ``dV/dy`` per unit of the
    weighted residual. A pixel without a result gets CF = ``_BIG`` (zero weights) and
    zeros. Returns the number of pixels with a result."""
    f32 = np.float32
    one = f32(1.0)
    zero = f32(0.0)
    big = f32(_BIG)
    act, cf, vx, st, live = scr[_ACT], scr[_CF], scr[_VX], scr[_ST], scr[_LIVE]
    n_done = 0
    for x in range(n):
        done = act[x] == one
        cf[x] = cf[x] if done else big
        live[x] = one if done else zero
        n_done += 1 if done else 0
    if n_done == 0:
        return 0
    # The sums S0-S4, T0-T2 at the converged centre were kept by the secant step (rows
    # D0-D7); here their d/dr (rows D8-D15).
    d0, d1, d2, d3, d4 = scr[_D0 + 8], scr[_D0 + 9], scr[_D0 + 10], scr[_D0 + 11], scr[_D0 + 12]
    e0, e1, e2 = scr[_D0 + 13], scr[_D0 + 14], scr[_D0 + 15]
    for q in range(8, 16):
        row = scr[_D0 + q]
        for x in range(n):
            row[x] = zero
    j_lo, j_hi = _active_span(ew, cf, live, hh, n, scr)
    _pass_points(ew, ewp, j_lo, j_hi)
    for jb in range(j_lo, j_hi + 1, _BLK):
        ea, eb, ec, ed = ewp[jb], ewp[jb + 1], ewp[jb + 2], ewp[jb + 3]
        za, zb, zc, zd = z[jb], z[jb + 1], z[jb + 2], z[jb + 3]
        for x in range(n):
            cx = cf[x]
            acc = (d0[x], d1[x], d2[x], d3[x], d4[x], e0[x], e1[x], e2[x])
            acc = _add_dpoint(acc, ea, cx, inv_h, za[x])
            acc = _add_dpoint(acc, eb, cx, inv_h, zb[x])
            acc = _add_dpoint(acc, ec, cx, inv_h, zc[x])
            acc = _add_dpoint(acc, ed, cx, inv_h, zd[x])
            d0[x], d1[x], d2[x], d3[x], d4[x], e0[x], e1[x], e2[x] = acc
    f0, f1, f2 = scr[_F0], scr[_F0 + 1], scr[_F0 + 2]
    f3, f4, f5 = scr[_F0 + 3], scr[_F0 + 4], scr[_F0 + 5]
    rstar, scale = scr[_RSTAR], scr[_SCALE]
    ds0, ds1, ds2, ds3, ds4 = scr[_D0], scr[_D0 + 1], scr[_D0 + 2], scr[_D0 + 3], scr[_D0 + 4]
    dt0, dt1, dt2 = scr[_D0 + 5], scr[_D0 + 6], scr[_D0 + 7]
    dd0, dd1, dd2, dd3, dd4 = (scr[_D0 + 8], scr[_D0 + 9], scr[_D0 + 10], scr[_D0 + 11],
                               scr[_D0 + 12])
    de0, de1, de2 = scr[_D0 + 13], scr[_D0 + 14], scr[_D0 + 15]
    n_ok = 0
    for x in range(n):
        s_a, s_b, s_c, s_d, s_e = ds0[x], ds1[x], ds2[x], ds3[x], ds4[x]
        m00 = s_c * s_e - s_d * s_d
        m01 = s_c * s_d - s_b * s_e
        m02 = s_b * s_d - s_c * s_c
        det = s_a * m00 + s_b * m01 + s_c * m02
        nz = (det > zero) | (det < zero)
        rdet = one / det if nz else zero
        i00 = m00 * rdet
        i01 = m01 * rdet
        i02 = m02 * rdet
        i11 = (s_a * s_e - s_c * s_c) * rdet
        i12 = (s_b * s_c - s_a * s_d) * rdet
        i22 = (s_a * s_c - s_b * s_b) * rdet
        t0, t1, t2 = dt0[x], dt1[x], dt2[x]
        q0 = i00 * t0 + i01 * t1 + i02 * t2
        q1 = i01 * t0 + i11 * t1 + i12 * t2
        q2 = i02 * t0 + i12 * t1 + i22 * t2
        # d/dc = -(1/h) d/dr: dq/dr = inv (dt - dM q).
        d0, d1, d2, d3, d4 = dd0[x], dd1[x], dd2[x], dd3[x], dd4[x]
        r0 = de0[x] - (d0 * q0 + d1 * q1 + d2 * q2)
        r1 = de1[x] - (d1 * q0 + d2 * q1 + d3 * q2)
        r2 = de2[x] - (d2 * q0 + d3 * q1 + d4 * q2)
        dq1 = i01 * r0 + i11 * r1 + i12 * r2
        dq2 = i02 * r0 + i12 * r1 + i22 * r2
        # V = c + h rho, rho = -q1 / (2 q2); dV/dc = 1 - d(rho)/dr.
        q2n = q2 if q2 < zero else -one  # no result without q2 < 0; no 0/0 here
        drho = -(dq1 * q2 - q1 * dq2) / (f32(2.0) * q2n * q2n)
        dvdc = one - drho
        ok = ((live[x] > zero) & nz & (q2 < zero) & (dvdc < one)
              & (abs(vx[x] - st[x]) <= hh))
        cf[x] = cf[x] if ok else big
        f0[x] = i01 if ok else zero
        f1[x] = i11 if ok else zero
        f2[x] = i12 if ok else zero
        f3[x] = i02 if ok else zero
        f4[x] = i12 if ok else zero
        f5[x] = i22 if ok else zero
        rstar[x] = -q1 / (f32(2.0) * q2) if ok else zero
        scale[x] = -hh / (f32(2.0) * q2 * (one - dvdc)) if ok else zero
        live[x] = one if ok else zero
        n_ok += 1 if ok else 0
    return n_ok


@njit(cache=True, error_model="numpy", inline="always")
def _wl_sigma(blk_var, acc, sv, t_blk, ew, e_ref, wl_lo, inv_h, hh, method, scr, z, x0, n,
              out_w, out_s):
    """Sigma of the white line of the pixels with a result (row CF not ``_BIG``): the
    gradient ``g_k`` of the fixed point with respect to each ``y_k`` (``mu_k`` and the
    pre-edge line), propagated with the variances; a vertex outside the points that
    carry weight gives NaN. Writes ``out_w`` / ``out_s`` of the chunk."""
    f32 = np.float32
    zero = f32(0.0)
    big = f32(_BIG)
    cf, vx, live = scr[_CF], scr[_VX], scr[_LIVE]
    f0, f1, f2 = scr[_F0], scr[_F0 + 1], scr[_F0 + 2]
    f3, f4, f5 = scr[_F0 + 3], scr[_F0 + 4], scr[_F0 + 5]
    rstar, scale = scr[_RSTAR], scr[_SCALE]
    ga, gb, var_w = scr[_GA], scr[_GB], scr[_VW]
    e_lo, e_hi, gtmp, wtmp = scr[_ELO], scr[_EHI], scr[_GT], scr[_WT]
    for x in range(n):
        ga[x] = zero
        gb[x] = zero
        var_w[x] = zero
        e_lo[x] = f32(np.inf)
        e_hi[x] = f32(-np.inf)
    x1 = x0 + n
    j_lo, j_hi = _active_span(ew, cf, live, hh, n, scr)
    for j in range(j_lo, j_hi + 1):
        ej = ew[j]
        k = wl_lo + j
        tk = f32(t_blk[k])
        for x in range(n):
            r, a = _biweight(ej, cf[x], inv_h)
            wk = a * a
            m1 = (f0[x] + f1[x] * r + f2[x] * r * r) * wk
            m2 = (f3[x] + f4[x] * r + f5[x] * r * r) * wk
            gtmp[x] = (m1 + f32(2.0) * rstar[x] * m2) * scale[x]
            wtmp[x] = wk
        if method == 1:
            zj = z[j]
            for x in range(n):
                gtmp[x] = gtmp[x] / np.exp(zj[x]) if wtmp[x] > zero else zero
        vrow = blk_var[k, x0:x1]
        for x in range(n):
            gk = gtmp[x]
            ga[x] += gk
            gb[x] += gk * tk
            var_w[x] += gk * gk * f32(vrow[x])
        for x in range(n):
            inside = wtmp[x] > zero
            e_lo[x] = ej if inside & (ej < e_lo[x]) else e_lo[x]
            e_hi[x] = ej if inside & (ej > e_hi[x]) else e_hi[x]
    sv = sv[x0:x1]
    v_aa = acc[V_AA, x0:x1]
    v_bb = acc[V_BB, x0:x1]
    v_ab = acc[V_AB, x0:x1]
    out_w = out_w[x0:x1]
    out_s = out_s[x0:x1]
    for x in range(n):
        v = vx[x]
        ok = (cf[x] != big) & (e_lo[x] <= v) & (v <= e_hi[x])
        gax = np.float64(ga[x])
        gbx = np.float64(gb[x])
        vw = var_w[x] + sv[x] * (gax * gax * v_aa[x] + gbx * gbx * v_bb[x]
                                 + 2.0 * gax * gbx * v_ab[x])
        out_w[x] = e_ref + v if ok else np.nan
        out_s[x] = np.sqrt(vw) if ok else np.nan


@njit(cache=True, error_model="numpy", inline="always")
def _wl_chunk(blk_mu, blk_var, acc, sv, todo, t_blk, ew, ewp, e_ref, wl_lo, inv_h, hh, method,
              kmax, out_w, out_s, scr, z, x0, n):
    """:func:`_local_peaks_row` on pixels ``x0 .. x0 + n - 1`` (``n <= CHUNK``); scratch
    ``scr`` (N_SCRATCH, CHUNK) and ``z`` (window points, CHUNK)."""
    _wl_setup(blk_mu, acc, todo, kmax, t_blk, ew, wl_lo, hh, method, scr, z, x0, n)
    _wl_iterate(ew, ewp, inv_h, hh, scr, z, n)
    if _wl_slope(ew, ewp, inv_h, hh, scr, z, n) > 0:
        _wl_sigma(blk_var, acc, sv, t_blk, ew, e_ref, wl_lo, inv_h, hh, method, scr, z, x0,
                  n, out_w, out_s)
    else:
        for x in range(x0, x0 + n):
            out_w[x] = np.nan
            out_s[x] = np.nan


@njit(cache=True, error_model="numpy")
def _local_peaks_row(blk_mu, blk_var, acc, sv, todo, t_blk, e_blk, wl_lo, wl_hi,
                     h, method, kmax, out_w, out_s):
    """Quadratic (Gaussian) white line of a row of pixels, in lockstep.

    Per pixel: a parabola (in log for the Gaussian) fitted to ``y = mu - pre`` with
    biweight weights ``(1 - ((E - c)/h)^2)^2`` is re-centred on its vertex ``V(c)`` until
    ``V(c) = c`` (secant steps from the highest point ``start``), so that the estimate is
    continuous in the data; it must stay within ``h`` of ``start``. Sigma: implicit
    derivative of the fixed point, ``dV/dy / (1 - dV/dc)`` (dV/dc analytic). ``kmax``
    holds each pixel's highest point (< 0: none).

    Chunk by chunk of ``CHUNK`` pixels, whose state lives in the rows of scratch arrays
    so that the pixel loops are branch-free and vectorize: every step runs over the
    whole chunk in float32, with energies relative to the window start and the fit in
    the reduced variable ``r = (E - c) / h`` (well conditioned), until every pixel of
    the chunk has converged or failed.
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
    scr = np.empty((N_SCRATCH, CHUNK), dtype=f32)
    z = np.zeros((n_wl + _BLK - 1, CHUNK), dtype=f32)  # padding rows stay 0
    ewp = np.empty(n_wl + _BLK - 1, dtype=f32)
    for x0 in range(0, w, CHUNK):
        n = min(CHUNK, w - x0)
        _wl_chunk(blk_mu, blk_var, acc, sv, todo, t_blk, ew, ewp, e_ref, wl_lo, inv_h, hh,
                  method, kmax, out_w, out_s, scr, z, x0, n)


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
