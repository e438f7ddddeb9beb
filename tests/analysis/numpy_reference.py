"""Plain numpy reference of the per-pixel fit: obviously correct, slow.

Per pixel: polyfit lines, explicit crossing search, polyfit / lstsq peak models, lstsq
linear combination; uncertainties by finite-difference gradients of every read-out with
respect to every energy's absorbance. Used to check the numba kernels on small inputs.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq

from thermoxanes.analysis.config import SIGMA_PRE_FLOOR, FitConfig
from thermoxanes.analysis.references import valence_basis


def _win(e: np.ndarray, w: tuple[float, float]) -> np.ndarray:
    return np.flatnonzero((e >= w[0] - 1e-9) & (e <= w[1] + 1e-9))


def pixel_readouts(e: np.ndarray, spec: np.ndarray, cfg: FitConfig) -> dict[str, float]:
    """Read-outs of one spectrum (float64), by the definitions in docs/analysis.md."""
    pre, post = _win(e, cfg.pre_edge_ev), _win(e, cfg.post_edge_ev)
    p_pre = np.polyfit(e[pre], spec[pre], 1)
    p_post = np.polyfit(e[post], spec[post], 1)
    resid = spec[pre] - np.polyval(p_pre, e[pre])
    sigma_pre = np.sqrt(resid @ resid / (pre.size - 2))
    jump = np.polyval(p_post, cfg.norm_e0_ev) - np.polyval(p_pre, cfg.norm_e0_ev)
    floor = SIGMA_PRE_FLOOR * abs(np.polyval(p_pre, cfg.norm_e0_ev))
    out = {"edge_jump": jump, "sigma_pre": sigma_pre,
           "mask": bool(np.isfinite(jump)
                        and jump > cfg.jump_k_sigma * max(sigma_pre, floor))}
    norm = (spec - np.polyval(p_pre, e)) / jump

    edge = _win(e, cfg.edge_window_ev)
    out["edge_energy"] = np.nan
    for k0, k1 in zip(edge[:-1], edge[1:], strict=True):
        if not (np.isfinite(norm[k0]) and np.isfinite(norm[k1])):
            break
        if norm[k0] < 0.5 <= norm[k1]:
            out["edge_energy"] = e[k0] + (0.5 - norm[k0]) / (norm[k1] - norm[k0]) * (e[k1] - e[k0])
            break

    wl = _win(e, cfg.whiteline_window_ev)
    out["whiteline_energy"] = np.nan
    if np.all(np.isfinite(norm[wl])):
        c = wl[int(np.argmax(norm[wl]))]
        if cfg.whiteline_method == "trig_poly":
            lo, hi = e[wl[0]], e[wl[-1]]
            mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo)

            def basis(u: np.ndarray) -> np.ndarray:
                return np.stack([np.ones_like(u), u, u * u, np.sin(np.pi * u),
                                 np.cos(np.pi * u)], axis=1)

            coef, *_ = np.linalg.lstsq(basis((e[wl] - mid) / half), norm[wl], rcond=None)
            u = np.linspace(-1.0, 1.0, 2001)
            f = basis(u) @ coef
            i = int(np.argmax(f))
            if 0 < i < u.size - 1:

                def slope(v: float) -> float:
                    d1 = [0.0, 1.0, 2 * v, np.pi * np.cos(np.pi * v), -np.pi * np.sin(np.pi * v)]
                    return float(np.dot(d1, coef))

                if slope(u[i - 1]) > 0 > slope(u[i + 1]):
                    peak = brentq(slope, u[i - 1], u[i + 1], xtol=1e-14, rtol=1e-14)
                    out["whiteline_energy"] = mid + half * peak
        else:
            out["whiteline_energy"] = local_peak(e[wl], norm[wl], e[c], cfg)

    lcf = _win(e, cfg.lcf_window_ev)
    basis3 = valence_basis(e, cfg.calibration_shift_ev)
    out["valence"] = np.nan
    for k in (0, 1):
        design = np.stack([np.ones(lcf.size), e[lcf], basis3[k, lcf], basis3[k + 1, lcf]], axis=1)
        coef, *_ = np.linalg.lstsq(design, spec[lcf], rcond=None)
        v = 2.0 + k + coef[3] / (coef[2] + coef[3])
        out["valence"] = v
        if k == 0 and v <= 3.0:
            break
    return out


def _local_vertex(e_w: np.ndarray, z_w: np.ndarray, c: float, h: float
                  ) -> tuple[float, float, float]:
    u = e_w - c
    sel = np.abs(u) < h
    if sel.sum() < 3 or not np.all(np.isfinite(z_w[sel])):
        return np.nan, np.nan, np.nan
    w = (1.0 - (u[sel] / h) ** 2) ** 2
    p2, p1, _ = np.polyfit(u[sel], z_w[sel], 2, w=np.sqrt(w))
    if not p2 < 0:
        return np.nan, np.nan, np.nan
    return c - p1 / (2 * p2), e_w[sel].min(), e_w[sel].max()


def local_peak(e_w: np.ndarray, y_w: np.ndarray, start: float, cfg: FitConfig) -> float:
    """Fixed point of the biweight-weighted parabola (log for the Gaussian) vertex.

    It must stay within the weight radius of the highest point ``start``."""
    if cfg.whiteline_method == "gaussian":
        with np.errstate(all="ignore"):
            z = np.where(y_w > 0, np.log(np.where(y_w > 0, y_w, 1.0)), np.nan)
    else:
        z = y_w
    h = cfg.whiteline_halfwidth_ev
    c = start
    for _ in range(500):
        v, _, _ = _local_vertex(e_w, z, c, h)
        if not np.isfinite(v) or abs(v - start) > h:
            return np.nan
        if abs(v - c) < 1e-10:
            break
        c = v
    else:
        return np.nan
    v, lo, hi = _local_vertex(e_w, z, c, h)
    dvdc = (_local_vertex(e_w, z, c + 1e-5, h)[0] - _local_vertex(e_w, z, c - 1e-5, h)[0]) / 2e-5
    if not (dvdc < 1.0 and lo <= v <= hi and abs(v - start) <= h):
        return np.nan
    return v


READOUTS = ("edge_energy", "whiteline_energy", "edge_jump", "valence")


def reference_fit(
    mu: np.ndarray,
    energies_ev: np.ndarray,
    cfg: FitConfig,
    variance: np.ndarray | None = None,
    sigma_pixels: int | None = None,
) -> dict[str, np.ndarray]:
    """Reference maps of an (E, H, W) stack; sigmas for the first ``sigma_pixels`` pixels
    (row-major) by finite differences (all pixels when None)."""
    e = np.asarray(energies_ev, dtype=np.float64)
    n_e, n_h, n_w = mu.shape
    maps = {k: np.full((n_h, n_w), np.nan) for k in READOUTS}
    maps.update({k + "_sigma": np.full((n_h, n_w), np.nan) for k in READOUTS})
    maps["mask"] = np.zeros((n_h, n_w), dtype=bool)
    pre = _win(e, cfg.pre_edge_ev)
    for n, (y, x) in enumerate(np.ndindex(n_h, n_w)):
        spec = mu[:, y, x].astype(np.float64)
        with np.errstate(all="ignore"):
            r = pixel_readouts(e, spec, cfg)
        maps["mask"][y, x] = r["mask"]
        maps["edge_jump"][y, x] = r["edge_jump"]
        if not r["mask"]:
            continue
        for k in READOUTS:
            maps[k][y, x] = r[k]
        if sigma_pixels is not None and n >= sigma_pixels:
            continue
        if variance is None:
            var = r["sigma_pre"] ** 2 * np.exp(spec) / np.mean(np.exp(spec[pre]))
        else:
            var = variance[:, y, x].astype(np.float64)
        grads = {k: np.zeros(n_e) for k in READOUTS}
        h = 1e-6
        for j in range(n_e):
            up, dn = spec.copy(), spec.copy()
            up[j] += h
            dn[j] -= h
            with np.errstate(all="ignore"):
                ru, rd = pixel_readouts(e, up, cfg), pixel_readouts(e, dn, cfg)
            for k in READOUTS:
                grads[k][j] = (ru[k] - rd[k]) / (2 * h)
        for k in READOUTS:
            maps[k + "_sigma"][y, x] = np.sqrt(np.sum(grads[k] ** 2 * var))
        maps["edge_energy_sigma"][y, x] = np.sqrt(
            maps["edge_energy_sigma"][y, x] ** 2 + edge_hop_variance(e, spec, var, cfg))
    return maps


def _phi(z: np.ndarray) -> np.ndarray:
    """The kernels' approximation of the standard normal CDF (part of the definition)."""
    u = np.clip(0.7978845608 * (z + 0.044715 * z**3), -3.0, 3.0)
    return 0.5 + 0.5 * u * (27.0 + u * u) / (27.0 + 9.0 * u * u)


def edge_hop_variance(e: np.ndarray, spec: np.ndarray, var: np.ndarray, cfg: FitConfig,
                      neighbour_weight: float = 0.3) -> float:
    """Variance of the first 0.5 crossing from hops to other pairs of the edge window.

    Each point's true ``y = spec - pre`` is taken as normal around the observed one; the
    probability that the first crossing is at pair k is P(no crossing before k, y_k below
    half) * P(y_{k+1} above half), by a plain forward recursion. The variance is the
    mean of (pair midpoint - estimate)^2 over the pairs, with weight 0 for the observed
    pair and ``neighbour_weight`` for its two neighbours.
    """
    pre, post = _win(e, cfg.pre_edge_ev), _win(e, cfg.post_edge_ev)
    p_pre = np.polyfit(e[pre], spec[pre], 1)
    p_post = np.polyfit(e[post], spec[post], 1)
    half = 0.5 * (np.polyval(p_post, cfg.norm_e0_ev) - np.polyval(p_pre, cfg.norm_e0_ev))
    edge = _win(e, cfg.edge_window_ev)
    y = spec[edge] - np.polyval(p_pre, e[edge])
    ee = e[edge]
    k_obs = None
    for k in range(edge.size - 1):
        if not (np.isfinite(y[k]) and np.isfinite(y[k + 1])):
            return np.nan
        if y[k] < half <= y[k + 1]:
            k_obs = k
            break
    if k_obs is None:
        return np.nan
    est = ee[k_obs] + (half - y[k_obs]) / (y[k_obs + 1] - y[k_obs]) * (ee[k_obs + 1] - ee[k_obs])
    below = _phi((half - y) / (np.sqrt(var[edge]) + 1e-30))
    p_below, p_above = below[0], 1.0 - below[0]
    total = spread = 0.0
    for k in range(edge.size - 1):
        p = p_below * (1.0 - below[k + 1])
        weight = {0: 0.0, 1: neighbour_weight}.get(abs(k - k_obs), 1.0)
        total += p
        spread += p * weight * (0.5 * (ee[k] + ee[k + 1]) - est) ** 2
        p_below, p_above = (p_below + p_above) * below[k + 1], p_above * (1.0 - below[k + 1])
    return spread / total if total > 1e-30 else 0.0
