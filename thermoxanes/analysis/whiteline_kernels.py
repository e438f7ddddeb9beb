"""Numba kernels of the white-line read-out (private; see :mod:`thermoxanes.analysis.fit`).

Each pixel's highest point of ``y = mu - pre`` in the white-line window, then either

* quadratic / Gaussian (``_local_peaks_row``): the fixed point of the vertex of a
  parabola fitted with biweight weights around a moving centre (continuous in the
  data), iterated by secant steps for the pixels of a chunk of ``CHUNK`` in lockstep
  (most pixels take 4-5 steps); once at most a quarter of the chunk still iterates,
  those pixels move to a narrow tail chunk, so that a few slow pixels do not cost
  whole-chunk steps. The highest point is found in the chunk's set-up pass, and the
  slope ``dV/dc`` and the sigma come from one final pass at the converged centres; or
* trig_poly: the highest point over the whole row, then a second-order polynomial plus
  one sine/cosine period fitted over the whole window, maximized by a grid search on a
  precomputed basis table and Newton steps.

Both propagate a 1-sigma uncertainty from the variances of the absorbances.

The quadratic / Gaussian state of a chunk lives in the rows of scratch arrays of fixed
row stride ``CHUNK``, so that every pixel loop is branch-free (selects, exact 0/1 blends
where a select would become a scalar conditional store) and vectorizes; the sums of a
fit run over blocks of ``_BLK`` points per pixel loop, so that they stay in registers.
Every array a pixel loop touches is a C-contiguous 1-D row slice indexed from 0, and a
pixel loop reads at most a few arrays besides the scratch (more would need more run-time
overlap checks than LLVM allows: the variances of a pass are copied to the scratch block
``vwin`` first).
"""

import numpy as np
from numba import njit

from thermoxanes.analysis.fit_plan import ROW_ALPHA, ROW_BETA
from thermoxanes.analysis.kernel_base import FM_READOUT, V_AA, V_AB, V_BB

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
# bad points, pass selection, converged vertex and centre; fit sums (9); sums kept at
# the converged centre (8); the final pass: its sums (13), inverse rows (5), q (3),
# gradient polynomial (3), a flag; lanes of the span's min/max.
(_C, _C0, _G0, _ST, _ACT, _V, _NBAD, _LIVE, _VX, _CF) = range(10)
_S0 = 10
_K0 = _S0 + 9
_DD0 = _K0 + 8
_F0 = _DD0 + 13
_Q0 = _F0 + 5
_P0 = _Q0 + 3
(_NZ, _LO8, _HI8) = range(_P0 + 3, _P0 + 6)
N_SCRATCH = _P0 + 6


@njit(cache=True, fastmath=FM_READOUT, error_model="numpy", inline="always")
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


@njit(cache=True, fastmath=FM_READOUT, error_model="numpy", inline="always")
def _wl_d2(u, p):
    """Second derivative of peak-model basis function ``p`` at u."""
    if p < 2:
        return 0.0
    if p == 2:
        return 2.0
    if p == 3:
        return -np.pi * np.pi * np.sin(np.pi * u)
    return -np.pi * np.pi * np.cos(np.pi * u)


@njit(cache=True, fastmath=FM_READOUT, error_model="numpy")
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


@njit(cache=True, fastmath=FM_READOUT, error_model="numpy")
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


@njit(cache=True, fastmath=FM_READOUT, error_model="numpy", inline="always")
def _pass_points(ew, ewp, j_lo, j_hi):
    """``ewp``: the energies ``ew[j_lo..j_hi]`` of a pass, every other point (and the
    padding for the blocks) far away (zero weight)."""
    far = np.float32(_BIG)
    for j in range(ewp.size):
        ewp[j] = far
    for j in range(j_lo, j_hi + 1):
        ewp[j] = ew[j]


@njit(cache=True, fastmath=FM_READOUT, error_model="numpy", inline="always")
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


@njit(cache=True, fastmath=FM_READOUT, error_model="numpy", inline="always")
def _biweight(ej, c, inv_h):
    """``(r, a)`` of a point at ``ej`` around centre ``c``: ``r = (ej - c) / h`` and
    ``a = max(1 - r^2, 0)`` as a select (the weight is ``a^2``)."""
    r = (ej - c) * inv_h
    a = np.float32(1.0) - r * r
    return r, (a if a > np.float32(0.0) else np.float32(0.0))


@njit(cache=True, fastmath=FM_READOUT, error_model="numpy", inline="always")
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


@njit(cache=True, fastmath=FM_READOUT, error_model="numpy", inline="always")
def _wl_setup(blk_mu, acc, todo, t_blk, ew, wl_lo, hh, method, scr, z, zinv, ymax, x0, n):
    """Chunk set-up: each pixel's highest point of ``y = mu - pre`` in the window (in
    float64, the first of equal maxima; row ST, where the centre starts) and ``z = y``
    rounded to float32 (the Gaussian: ``log y`` within ``2 h`` of the highest point, 0
    elsewhere, and ``zinv = 1 / y`` there). A pixel not to do, with a non-finite point
    in the window or (Gaussian) with ``y <= 0`` within ``2 h`` of its highest point
    leaves (ACT -1)."""
    f32 = np.float32
    zero = f32(0.0)
    one = f32(1.0)
    x1 = x0 + n
    todo = todo[x0:x1]
    alpha = acc[ROW_ALPHA, x0:x1]
    beta = acc[ROW_BETA, x0:x1]
    start = scr[_ST]
    nbad = scr[_NBAD]
    act = scr[_ACT]
    for x in range(n):
        ymax[x] = -np.inf
        start[x] = zero
        nbad[x] = zero
    for j in range(ew.size):
        k = wl_lo + j
        t64 = t_blk[k]
        ej = ew[j]
        zj = z[j]
        mrow = blk_mu[k, x0:x1]
        for x in range(n):
            yv = mrow[x] - (alpha[x] + beta[x] * t64)  # float64
            better = yv > ymax[x]
            ymax[x] = yv if better else ymax[x]
            start[x] = ej if better else start[x]
            y32 = f32(yv)
            fine = np.abs(y32) < np.inf
            nbad[x] += zero if fine else one
            zj[x] = y32 if fine else zero
    if method == 1:
        two_h = f32(2.0) * hh
        for j in range(ew.size):
            ej = ew[j]
            zj = z[j]
            ij = zinv[j]
            for x in range(n):  # libm log: scalar
                y = zj[x]
                ij[x] = np.log(y) if y > zero else f32(np.nan)
            for x in range(n):
                y = zj[x]
                lg = ij[x]
                near = abs(ej - start[x]) < two_h
                fine = np.abs(lg) < np.inf
                nbad[x] += one if (near & ~fine) else zero
                use = near & fine
                zj[x] = lg if use else zero
                ij[x] = one / y if use else zero
    c = scr[_C]
    for x in range(n):
        act[x] = zero if (nbad[x] == zero) & todo[x] else f32(-1.0)
        c[x] = start[x]
    for q in range(8):  # sums kept at convergence: finite for every pixel
        row = scr[_K0 + q]
        for x in range(n):
            row[x] = zero


@njit(cache=True, fastmath=FM_READOUT, error_model="numpy", inline="always")
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


@njit(cache=True, fastmath=FM_READOUT, error_model="numpy", inline="always")
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


@njit(cache=True, fastmath=FM_READOUT, error_model="numpy", inline="always")
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


@njit(cache=True, fastmath=FM_READOUT, error_model="numpy", inline="always")
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
    n_done = 0
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
        n_done += 1 if done else 0
    if n_done == 0:
        return n_active
    for q in range(8):  # the sums at the converged centre, for the slope
        s_row = scr[_S0 + q]
        d_row = scr[_K0 + q]
        for x in range(n):
            # An exact 0/1 blend of finite values (a select here becomes a scalar
            # conditional store).
            k = keep[x]
            d_row[x] = s_row[x] * k + d_row[x] * (one - k)
    return n_active


@njit(cache=True, fastmath=FM_READOUT, error_model="numpy", inline="always")
def _wl_passes(ew, ewp, inv_h, hh, scr, z, n, it, n_active, n_stop):
    """Lockstep steps of the pixels ``0 .. n - 1`` of ``scr`` / ``z`` from step ``it``
    while ``n_active`` pixels iterate, more than ``n_stop`` of them, and the step count
    allows. Returns ``(it, n_active)``."""
    f32 = np.float32
    c, act = scr[_C], scr[_ACT]
    live = scr[_LIVE]
    while n_active > n_stop and it <= WL_MAX_ITER:
        for x in range(n):
            live[x] = f32(1.0) if act[x] == f32(0.0) else f32(0.0)
        j_lo, j_hi = _active_span(ew, c, live, hh, n, scr)
        _wl_vertices(ew, ewp, j_lo, j_hi, inv_h, hh, scr, z, n)
        if it == 0:
            n_active = _wl_first_step(scr, n)
        else:
            n_active = _wl_secant_step(scr, hh, n)
        it += 1
    return it, n_active


@njit(cache=True, fastmath=FM_READOUT, error_model="numpy", inline="always")
def _wl_iterate(ew, ewp, inv_h, hh, scr, z, n, scr_t, z_t, idx):
    """The secant fixed point ``V(c) = c`` of every pixel of the chunk, in lockstep (a
    step over a chunk costs the same whatever the number of pixels still iterating).
    Once at most a quarter of the chunk iterates, those pixels move to the tail scratch
    ``scr_t`` / ``z_t`` (``idx``: their columns) and finish there, and their results
    move back (rows ACT, VX, CF and the sums kept at convergence)."""
    f32 = np.float32
    zero = f32(0.0)
    act = scr[_ACT]
    n_active = 0
    for x in range(n):
        n_active += 1 if act[x] == zero else 0
    n_stop = n // 4 if n >= 64 else 0
    it, n_active = _wl_passes(ew, ewp, inv_h, hh, scr, z, n, 0, n_active, n_stop)
    if n_active == 0 or it > WL_MAX_ITER:
        return
    m = 0
    for x in range(n):  # scalar gathers, once per chunk
        if act[x] == zero:
            idx[m] = x
            m += 1
    for row in (_C, _C0, _G0, _ST, _ACT):
        src = scr[row]
        dst = scr_t[row]
        for i in range(m):
            dst[i] = src[idx[i]]
    for q in range(8):
        dst = scr_t[_K0 + q]
        for i in range(m):
            dst[i] = zero
    for j in range(ew.size):
        src = z[j]
        dst = z_t[j]
        for i in range(m):
            dst[i] = src[idx[i]]
    _wl_passes(ew, ewp, inv_h, hh, scr_t, z_t, m, it, n_active, 0)
    for row in (_ACT, _VX, _CF, _K0, _K0 + 1, _K0 + 2, _K0 + 3, _K0 + 4, _K0 + 5, _K0 + 6,
                _K0 + 7):
        src = scr_t[row]
        dst = scr[row]
        for i in range(m):
            dst[idx[i]] = src[i]


@njit(cache=True, fastmath=FM_READOUT, error_model="numpy", inline="always")
def _add_gpoint(acc, ej, cx, inv_h, zz, zi, p0, p1, p2, tk, vk, vx):
    """``acc`` (d/dr of S0-S4 and T0-T2; gradient sums ``sum g``, ``sum g t``,
    ``sum g^2 var``; flags of a weighted point at or below / at or above the vertex
    ``vx``) plus the point ``(ej, zz)`` with ``g = (p0 + p1 r + p2 r^2) w zi``."""
    f32 = np.float32
    one = f32(1.0)
    zero = f32(0.0)
    d0, d1, d2, d3, d4, e0, e1, e2, ga, gb, gv, flo, fhi = acc
    r, a = _biweight(ej, cx, inv_h)
    wt = a * a
    dw = f32(-4.0) * r * a  # d(weight)/dr (0 outside the radius)
    r2 = r * r
    g = (p0 + p1 * r + p2 * r2) * wt * zi
    inside = wt > zero
    return (d0 + dw, d1 + (dw * r + wt), d2 + (dw * r2 + f32(2.0) * wt * r),
            d3 + (dw * r2 * r + f32(3.0) * wt * r2),
            d4 + (dw * r2 * r2 + f32(4.0) * wt * r2 * r), e0 + dw * zz,
            e1 + (dw * r + wt) * zz, e2 + (dw * r * r + f32(2.0) * wt * r) * zz,
            ga + g, gb + g * tk, gv + g * g * vk,
            one if inside & (ej <= vx) else flo, one if inside & (ej >= vx) else fhi)


@njit(cache=True, fastmath=FM_READOUT, error_model="numpy", inline="always")
def _wl_finish(blk_var, acc, sv, tw, ew, ewp, e_ref, wl_lo, inv_h, hh, method, scr, z, zinv,
               vwin, x0, n, out_w, out_s):
    """White line and sigma of the pixels that converged (ACT 1), in one pass over the
    points around their converged centres (row CF): the d/dr of the sums of the fit (an
    analytic dV/dc; the secant slope is too coarse in float32) and the sums of the
    gradient ``g_k`` of the vertex with respect to each ``y_k`` (per unit of
    ``dV/dy / (1 - dV/dc)``, applied per pixel after the pass), propagated with the
    variances of ``mu_k`` and of the pre-edge line. No result (NaN) without a maximum,
    with ``dV/dc >= 1``, with the vertex more than ``h`` from the start or outside the
    points that carry weight. Writes ``out_w`` / ``out_s`` of the chunk."""
    f32 = np.float32
    one = f32(1.0)
    zero = f32(0.0)
    two = f32(2.0)
    big = f32(_BIG)
    x1 = x0 + n
    out_w = out_w[x0:x1]
    out_s = out_s[x0:x1]
    act, cf, vx, live = scr[_ACT], scr[_CF], scr[_VX], scr[_LIVE]
    n_done = 0
    for x in range(n):
        done = act[x] == one
        cf[x] = cf[x] if done else big
        live[x] = one if done else zero
        n_done += 1 if done else 0
    if n_done == 0:
        for x in range(n):
            out_w[x] = np.nan
            out_s[x] = np.nan
        return
    # The sums S0-S4, T0-T2 at the converged centre were kept by the secant step (rows
    # K): rows 1-2 of the inverse normal matrix (F), the coefficients q (Q) and the
    # gradient polynomial ``(F1 + 2 r* F2) . (1, r, r^2)`` (P), r* the vertex in r.
    ks0, ks1, ks2, ks3, ks4 = scr[_K0], scr[_K0 + 1], scr[_K0 + 2], scr[_K0 + 3], scr[_K0 + 4]
    kt0, kt1, kt2 = scr[_K0 + 5], scr[_K0 + 6], scr[_K0 + 7]
    f0, f1, f2 = scr[_F0], scr[_F0 + 1], scr[_F0 + 2]
    f3, f4 = scr[_F0 + 3], scr[_F0 + 4]
    qq0, qq1, qq2 = scr[_Q0], scr[_Q0 + 1], scr[_Q0 + 2]
    pp0, pp1, pp2 = scr[_P0], scr[_P0 + 1], scr[_P0 + 2]
    nzr = scr[_NZ]
    for x in range(n):
        s_a, s_b, s_c, s_d, s_e = ks0[x], ks1[x], ks2[x], ks3[x], ks4[x]
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
        t0, t1, t2 = kt0[x], kt1[x], kt2[x]
        q0 = i00 * t0 + i01 * t1 + i02 * t2
        q1 = i01 * t0 + i11 * t1 + i12 * t2
        q2 = i02 * t0 + i12 * t1 + i22 * t2
        neg = q2 < zero
        rs = -q1 / (two * q2) if neg else zero
        f0[x] = i01
        f1[x] = i11
        f2[x] = i12
        f3[x] = i02
        f4[x] = i22
        qq0[x] = q0
        qq1[x] = q1
        qq2[x] = q2
        pp0[x] = i01 + two * rs * i02
        pp1[x] = i11 + two * rs * i12
        pp2[x] = i12 + two * rs * i22
        nzr[x] = one if nz & neg else zero
    # One pass over the points: d/dr of the sums and the gradient sums.
    n_acc = 13
    for q in range(n_acc):
        row = scr[_DD0 + q]
        for x in range(n):
            row[x] = zero
    dd0, dd1, dd2, dd3, dd4 = scr[_DD0], scr[_DD0 + 1], scr[_DD0 + 2], scr[_DD0 + 3], scr[_DD0 + 4]
    de0, de1, de2 = scr[_DD0 + 5], scr[_DD0 + 6], scr[_DD0 + 7]
    ga, gb, gv, flo, fhi = (scr[_DD0 + 8], scr[_DD0 + 9], scr[_DD0 + 10], scr[_DD0 + 11],
                            scr[_DD0 + 12])
    j_lo, j_hi = _active_span(ew, cf, live, hh, n, scr)
    _pass_points(ew, ewp, j_lo, j_hi)
    for j in range(j_lo, j_hi + 1):  # variances of the pass (padding rows stay 0)
        vj = vwin[j]
        vrow = blk_var[wl_lo + j, x0:x1]
        for x in range(n):
            vj[x] = vrow[x]
    for jb in range(j_lo, j_hi + 1, _BLK):
        ea, eb, ec, ed = ewp[jb], ewp[jb + 1], ewp[jb + 2], ewp[jb + 3]
        za, zb, zc, zd = z[jb], z[jb + 1], z[jb + 2], z[jb + 3]
        ia, ib, ic, id_ = zinv[jb], zinv[jb + 1], zinv[jb + 2], zinv[jb + 3]
        va, vb, vc, vd = vwin[jb], vwin[jb + 1], vwin[jb + 2], vwin[jb + 3]
        ta, tb, tc, td = tw[jb], tw[jb + 1], tw[jb + 2], tw[jb + 3]
        if method == 1:
            for x in range(n):
                cx = cf[x]
                p0, p1, p2, vv = pp0[x], pp1[x], pp2[x], vx[x]
                acc8 = (dd0[x], dd1[x], dd2[x], dd3[x], dd4[x], de0[x], de1[x], de2[x],
                        ga[x], gb[x], gv[x], flo[x], fhi[x])
                acc8 = _add_gpoint(acc8, ea, cx, inv_h, za[x], ia[x], p0, p1, p2, ta,
                                   va[x], vv)
                acc8 = _add_gpoint(acc8, eb, cx, inv_h, zb[x], ib[x], p0, p1, p2, tb,
                                   vb[x], vv)
                acc8 = _add_gpoint(acc8, ec, cx, inv_h, zc[x], ic[x], p0, p1, p2, tc,
                                   vc[x], vv)
                acc8 = _add_gpoint(acc8, ed, cx, inv_h, zd[x], id_[x], p0, p1, p2, td,
                                   vd[x], vv)
                (dd0[x], dd1[x], dd2[x], dd3[x], dd4[x], de0[x], de1[x], de2[x],
                 ga[x], gb[x], gv[x], flo[x], fhi[x]) = acc8
        else:
            for x in range(n):
                cx = cf[x]
                p0, p1, p2, vv = pp0[x], pp1[x], pp2[x], vx[x]
                acc8 = (dd0[x], dd1[x], dd2[x], dd3[x], dd4[x], de0[x], de1[x], de2[x],
                        ga[x], gb[x], gv[x], flo[x], fhi[x])
                acc8 = _add_gpoint(acc8, ea, cx, inv_h, za[x], one, p0, p1, p2, ta,
                                   va[x], vv)
                acc8 = _add_gpoint(acc8, eb, cx, inv_h, zb[x], one, p0, p1, p2, tb,
                                   vb[x], vv)
                acc8 = _add_gpoint(acc8, ec, cx, inv_h, zc[x], one, p0, p1, p2, tc,
                                   vc[x], vv)
                acc8 = _add_gpoint(acc8, ed, cx, inv_h, zd[x], one, p0, p1, p2, td,
                                   vd[x], vv)
                (dd0[x], dd1[x], dd2[x], dd3[x], dd4[x], de0[x], de1[x], de2[x],
                 ga[x], gb[x], gv[x], flo[x], fhi[x]) = acc8
    st = scr[_ST]
    sv = sv[x0:x1]
    v_aa = acc[V_AA, x0:x1]
    v_bb = acc[V_BB, x0:x1]
    v_ab = acc[V_AB, x0:x1]
    for x in range(n):
        i01, i11, i12, i02, i22 = f0[x], f1[x], f2[x], f3[x], f4[x]
        q0, q1, q2 = qq0[x], qq1[x], qq2[x]
        # d/dc = -(1/h) d/dr: dq/dr = inv (dt - dM q).
        d0, d1, d2, d3, d4 = dd0[x], dd1[x], dd2[x], dd3[x], dd4[x]
        r0 = de0[x] - (d0 * q0 + d1 * q1 + d2 * q2)
        r1 = de1[x] - (d1 * q0 + d2 * q1 + d3 * q2)
        r2 = de2[x] - (d2 * q0 + d3 * q1 + d4 * q2)
        dq1 = i01 * r0 + i11 * r1 + i12 * r2
        dq2 = i02 * r0 + i12 * r1 + i22 * r2
        # V = c + h rho, rho = -q1 / (2 q2); dV/dc = 1 - d(rho)/dr.
        q2n = q2 if q2 < zero else -one  # no result without q2 < 0; no 0/0 here
        drho = -(dq1 * q2 - q1 * dq2) / (two * q2n * q2n)
        dvdc = one - drho
        v = vx[x]
        ok = ((live[x] > zero) & (nzr[x] > zero) & (dvdc < one)
              & (abs(v - st[x]) <= hh) & (flo[x] > zero) & (fhi[x] > zero))
        scale = np.float64(-hh / (two * q2n * (one - dvdc))) if ok else 0.0
        gax = scale * np.float64(ga[x])
        gbx = scale * np.float64(gb[x])
        vw = (scale * scale * np.float64(gv[x])
              + sv[x] * (gax * gax * v_aa[x] + gbx * gbx * v_bb[x] + 2.0 * gax * gbx * v_ab[x]))
        out_w[x] = e_ref + v if ok else np.nan
        out_s[x] = np.sqrt(vw) if ok else np.nan


@njit(cache=True, fastmath=FM_READOUT, error_model="numpy", inline="always")
def _wl_chunk(blk_mu, blk_var, acc, sv, todo, t_blk, tw, ew, ewp, e_ref, wl_lo, inv_h, hh,
              method, out_w, out_s, scr, z, zinv, vwin, ymax, scr_t, z_t, idx, x0, n):
    """:func:`_local_peaks_row` on pixels ``x0 .. x0 + n - 1`` (``n <= CHUNK``); scratch
    ``scr`` (N_SCRATCH, CHUNK), ``z``, ``zinv`` and ``vwin`` (window points + padding,
    CHUNK), ``ymax`` (CHUNK,) float64, ``scr_t`` / ``z_t`` / ``idx`` for the pixels that
    iterate longest; ``tw``: float32 ``t`` of the window points."""
    _wl_setup(blk_mu, acc, todo, t_blk, ew, wl_lo, hh, method, scr, z, zinv, ymax, x0, n)
    _wl_iterate(ew, ewp, inv_h, hh, scr, z, n, scr_t, z_t, idx)
    _wl_finish(blk_var, acc, sv, tw, ew, ewp, e_ref, wl_lo, inv_h, hh, method, scr, z, zinv,
               vwin, x0, n, out_w, out_s)


@njit(cache=True, fastmath=FM_READOUT, error_model="numpy")
def _local_peaks_row(blk_mu, blk_var, acc, sv, todo, t_blk, e_blk, wl_lo, wl_hi,
                     h, method, out_w, out_s):
    """Quadratic (Gaussian) white line of a row of pixels, in lockstep.

    Per pixel: the highest point ``start`` of ``y = mu - pre`` in the window; a parabola
    (in log for the Gaussian) fitted to ``y`` with biweight weights
    ``(1 - ((E - c)/h)^2)^2`` is re-centred on its vertex ``V(c)`` until ``V(c) = c``
    (secant steps from ``start``), so that the estimate is continuous in the data; it
    must stay within ``h`` of ``start``. Sigma: implicit derivative of the fixed point,
    ``dV/dy / (1 - dV/dc)`` (dV/dc analytic).

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
    zinv = np.zeros((n_wl + _BLK - 1, CHUNK), dtype=f32)
    vwin = np.zeros((n_wl + _BLK - 1, CHUNK), dtype=f32)
    ymax = np.empty(CHUNK)
    scr_t = np.zeros((N_SCRATCH, CHUNK), dtype=f32)
    z_t = np.zeros((n_wl + _BLK - 1, CHUNK), dtype=f32)
    idx = np.empty(CHUNK, dtype=np.int64)
    ewp = np.empty(n_wl + _BLK - 1, dtype=f32)
    tw = np.zeros(n_wl + _BLK - 1, dtype=f32)
    for j in range(n_wl):
        tw[j] = f32(t_blk[wl_lo + j])
    for x0 in range(0, w, CHUNK):
        n = min(CHUNK, w - x0)
        _wl_chunk(blk_mu, blk_var, acc, sv, todo, t_blk, tw, ew, ewp, e_ref, wl_lo, inv_h, hh,
                  method, out_w, out_s, scr, z, zinv, vwin, ymax, scr_t, z_t, idx, x0, n)


@njit(cache=True, fastmath=FM_READOUT, error_model="numpy")
def _whiteline_row(blk_mu, blk_var, acc, sv, todo, t_blk, e_blk, wl_lo, wl_hi,
                   method, fit_lo, fit_n, pinv, center, scale, kmax, ymax, zbuf, coef, d1buf,
                   out_w, out_s):
    """White-line energy (peak of the model fitted around the maximum) and its sigma.

    Methods: 0 quadratic, 1 gaussian (quadratic in log; ``scale``: the weight radius
    ``h``, eV), 2 trig_poly. ``kmax`` (W,) int64, ``ymax`` (W,), ``zbuf`` (maxpts,),
    ``coef`` and ``d1buf`` (P,) are scratch of trig_poly (the quadratic / Gaussian
    read-out finds the highest point chunk by chunk, in its own scratch).
    """
    if method != 2:
        _local_peaks_row(blk_mu, blk_var, acc, sv, todo, t_blk, e_blk, wl_lo,
                         wl_hi, scale, method, out_w, out_s)
        return
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
