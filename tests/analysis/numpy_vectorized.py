"""Vectorized numpy pipeline of the per-pixel fit (values only, no uncertainties).

The plain-numpy baseline of ``benchmarks/bench_fit.py``: least squares with many
right-hand sides, boolean searches along energy. Checked against the kernels in
``test_numpy_vectorized.py``.
"""

from __future__ import annotations

import numpy as np

from thermoxanes.analysis.config import SIGMA_PRE_FLOOR, FitConfig
from thermoxanes.analysis.references import valence_basis


def _win(e: np.ndarray, w: tuple[float, float]) -> np.ndarray:
    return np.flatnonzero((e >= w[0] - 1e-9) & (e <= w[1] + 1e-9))


def _vertex(e_w: np.ndarray, y: np.ndarray, c: np.ndarray, h: float) -> np.ndarray:
    """Vertices of biweight-weighted parabolas around centres ``c`` (N,), all at once."""
    u = e_w[:, None] - c[None, :]
    w = np.where(np.abs(u) < h, (1.0 - (u / h) ** 2) ** 2, 0.0)
    n_pts = (w > 0).sum(axis=0)
    a = np.stack([np.stack([np.sum(w * u ** (i + j), axis=0) for j in range(3)], axis=-1)
                  for i in range(3)], axis=-2)  # (N, 3, 3)
    b = np.stack([np.sum(w * u**i * y, axis=0) for i in range(3)], axis=-1)  # (N, 3)
    ok = n_pts >= 3
    a[~ok] = np.eye(3)
    with np.errstate(all="ignore"):
        p = np.linalg.solve(a, b[..., None])[..., 0]
        v = c - p[:, 1] / (2 * p[:, 2])
    return np.where(ok & (p[:, 2] < 0), v, np.nan)


def _local_peaks(e_w: np.ndarray, y: np.ndarray, start: np.ndarray, finite: np.ndarray,
                 h: float) -> np.ndarray:
    """Fixed points of the weighted-parabola vertex (the kernels' quadratic method)."""
    y = np.where(np.isfinite(y), y, 0.0)
    c = np.where(finite, start, np.nan)
    for _ in range(50):
        v = _vertex(e_w, y, np.nan_to_num(c, nan=e_w[0]), h)
        v = np.where(np.isfinite(c) & (np.abs(v - start) <= h), v, np.nan)
        done = np.abs(v - c) < 1e-9
        c = v
        if np.all(done | np.isnan(c)):
            break
    up = _vertex(e_w, y, np.nan_to_num(c + 1e-4, nan=e_w[0]), h)
    dn = _vertex(e_w, y, np.nan_to_num(c - 1e-4, nan=e_w[0]), h)
    u = e_w[:, None] - c[None, :]
    inside = np.abs(u) < h
    lo = np.min(np.where(inside, e_w[:, None], np.inf), axis=0)
    hi = np.max(np.where(inside, e_w[:, None], -np.inf), axis=0)
    with np.errstate(invalid="ignore"):
        ok = ((up - dn) / 2e-4 < 1.0) & (c >= lo) & (c <= hi)
    return np.where(ok, c, np.nan)


def numpy_fit(mu: np.ndarray, energies_ev: np.ndarray, cfg: FitConfig | None = None
              ) -> dict[str, np.ndarray]:
    """Maps (values) of an (E, H, W) stack; NaN outside the mask except the edge jump."""
    cfg = cfg or FitConfig()
    e = np.asarray(energies_ev, dtype=np.float64)
    n_e, n_h, n_w = mu.shape
    y = mu.reshape(n_e, -1).astype(np.float64)
    n_pix = y.shape[1]
    pre, post = _win(e, cfg.pre_edge_ev), _win(e, cfg.post_edge_ev)
    c_pre = np.polyfit(e[pre], y[pre], 1)  # (2, N): slope, intercept
    c_post = np.polyfit(e[post], y[post], 1)
    pre_line = e[:, None] * c_pre[0] + c_pre[1]
    resid = y[pre] - pre_line[pre]
    sigma_pre = np.sqrt(np.sum(resid**2, axis=0) / (pre.size - 2))
    e0 = cfg.norm_e0_ev
    jump = (c_post[0] * e0 + c_post[1]) - (c_pre[0] * e0 + c_pre[1])
    with np.errstate(invalid="ignore"):
        floor = SIGMA_PRE_FLOOR * np.abs(c_pre[0] * e0 + c_pre[1])
        mask = jump > cfg.jump_k_sigma * np.maximum(sigma_pre, floor)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = (y - pre_line) / jump

    edge = _win(e, cfg.edge_window_ev)
    n0, n1 = norm[edge[:-1]], norm[edge[1:]]
    with np.errstate(invalid="ignore"):
        hit = (n0 < 0.5) & (n1 >= 0.5)
    bad = ~(np.isfinite(n0) & np.isfinite(n1))
    event = hit | bad
    first = np.argmax(event, axis=0)
    cols = np.arange(n_pix)
    ok = event.any(axis=0) & hit[first, cols]
    a, b = n0[first, cols], n1[first, cols]
    e_a, e_b = e[edge[:-1]][first], e[edge[1:]][first]
    with np.errstate(invalid="ignore", divide="ignore"):
        edge_energy = np.where(ok, e_a + (0.5 - a) / (b - a) * (e_b - e_a), np.nan)

    wl = _win(e, cfg.whiteline_window_ev)
    sub = norm[wl]
    finite = np.all(np.isfinite(sub), axis=0)
    kmax = wl[np.argmax(np.where(np.isfinite(sub), sub, -np.inf), axis=0)]
    wl_energy = _local_peaks(e[wl], sub, e[kmax], finite, cfg.whiteline_halfwidth_ev)

    lcf = _win(e, cfg.lcf_window_ev)
    basis = valence_basis(e, cfg.calibration_shift_ev)
    valence = np.full(n_pix, np.nan)
    for k in (1, 0):
        design = np.stack([np.ones(lcf.size), e[lcf], basis[k, lcf], basis[k + 1, lcf]], axis=1)
        coef = np.linalg.pinv(design) @ y[lcf]
        with np.errstate(invalid="ignore", divide="ignore"):
            v = 2.0 + k + coef[3] / (coef[2] + coef[3])
        valence = v if k == 1 else np.where(v <= 3.0, v, valence)

    out = {"edge_energy": edge_energy, "whiteline_energy": wl_energy, "valence": valence}
    out = {k: np.where(mask, v, np.nan).reshape(n_h, n_w) for k, v in out.items()}
    out["edge_jump"] = jump.reshape(n_h, n_w)
    out["mask"] = mask.reshape(n_h, n_w)
    return out
