"""Projection of particle voxel fields to Ni-weighted path lengths (numba kernels).

For a rotation ``theta`` about the vertical (y) axis, a sample point (x, z) appears at
``x_lab = x cos(theta) - z sin(theta)``; rays run along ``z_lab``. Each ray accumulates,
in um of path:

- ``W_k`` (k = Ni2+, Ni3+, Ni4+): NMC density times the valence mixing weight,
- ``t_nmc``: NMC density (non-resonant background of Mn, Co, O, Li),
- ``t_li``: Li compound (protrusions, no Ni edge).

The voxel valence is ``(1-x) v_start + x v_end + a (cos(phi) F1 + sin(phi) F2) - s S``,
clipped to 2..4 (see :mod:`thermoxanes.simulators.chemistry`).
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: Channels of a projection: W2, W3, W4, t_nmc, t_li.
N_CHANNELS = 5


@numba.njit(cache=True, nogil=True)
def _voxel(vs, ve, f1, f2, sf, x, a_cos, a_sin, s):
    v = (1.0 - x) * vs + x * ve + a_cos * f1 + a_sin * f2 - s * sf
    if v < 2.0:
        v = 2.0
    elif v > 4.0:
        v = 4.0
    if v <= 3.0:
        return 3.0 - v, v - 2.0, 0.0
    return 0.0, 4.0 - v, v - 3.0


@numba.njit(cache=True, nogil=True)
def project_particle(
    out,
    row0,
    col0,
    density,
    crack_level,
    protrusion_level,
    vs,
    ve,
    f1,
    f2,
    sf,
    x,
    a_cos,
    a_sin,
    s,
    crack_state,
    protrusion_state,
    voxel_um,
    theta_rad,
):
    """Accumulate one particle's projection into ``out`` (5, M, M) at offset (row0, col0).

    ``row0, col0`` is the model-grid position of the box's projected centre minus half
    the footprint; with ``theta_rad == 0`` the footprint is the box itself (n x n),
    otherwise it is ``ceil(n * sqrt(2))`` wide.
    """
    n = density.shape[0]
    m_rows = out.shape[1]
    m_cols = out.shape[2]
    if theta_rad == 0.0:
        for j in range(n):
            r = row0 + j
            if r < 0 or r >= m_rows:
                continue
            for i in range(n):
                c = col0 + i
                if c < 0 or c >= m_cols:
                    continue
                w2 = 0.0
                w3 = 0.0
                w4 = 0.0
                tn = 0.0
                tl = 0.0
                for k in range(n):
                    d = density[k, j, i]
                    if d > 0.0:
                        if crack_level[k, j, i] > crack_state:
                            a, b, e = _voxel(
                                vs[k, j, i], ve[k, j, i], f1[k, j, i], f2[k, j, i],
                                sf[k, j, i], x, a_cos, a_sin, s,
                            )
                            w2 += d * a
                            w3 += d * b
                            w4 += d * e
                            tn += d
                    elif protrusion_level[k, j, i] <= protrusion_state:
                        tl += 1.0
                out[0, r, c] += w2 * voxel_um
                out[1, r, c] += w3 * voxel_um
                out[2, r, c] += w4 * voxel_um
                out[3, r, c] += tn * voxel_um
                out[4, r, c] += tl * voxel_um
        return
    ct = math.cos(theta_rad)
    st = math.sin(theta_rad)
    half = (n - 1) / 2.0
    foot = int(math.ceil(n * 1.4143))
    fh = (foot - 1) / 2.0
    for j in range(n):
        r = row0 + j
        if r < 0 or r >= m_rows:
            continue
        for iu in range(foot):
            c = col0 + iu
            if c < 0 or c >= m_cols:
                continue
            u = iu - fh
            w2 = 0.0
            w3 = 0.0
            w4 = 0.0
            tn = 0.0
            tl = 0.0
            for it in range(foot):
                t = it - fh
                xs = u * ct + t * st + half
                zs = -u * st + t * ct + half
                ix = int(math.floor(xs + 0.5))
                iz = int(math.floor(zs + 0.5))
                if ix < 0 or ix >= n or iz < 0 or iz >= n:
                    continue
                d = density[iz, j, ix]
                if d > 0.0:
                    if crack_level[iz, j, ix] > crack_state:
                        a, b, e = _voxel(
                            vs[iz, j, ix], ve[iz, j, ix], f1[iz, j, ix], f2[iz, j, ix],
                            sf[iz, j, ix], x, a_cos, a_sin, s,
                        )
                        w2 += d * a
                        w3 += d * b
                        w4 += d * e
                        tn += d
                elif protrusion_level[iz, j, ix] <= protrusion_state:
                    tl += 1.0
            out[0, r, c] += w2 * voxel_um
            out[1, r, c] += w3 * voxel_um
            out[2, r, c] += w4 * voxel_um
            out[3, r, c] += tn * voxel_um
            out[4, r, c] += tl * voxel_um


def footprint(n: int, theta_rad: float) -> int:
    """Width (model pixels) of a box of side ``n`` projected at ``theta_rad``."""
    return n if theta_rad == 0.0 else int(np.ceil(n * 1.4143))
