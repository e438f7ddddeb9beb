"""Everything the per-pixel kernels need that depends only on the energy grid and config.

The pre-edge line, the edge jump and the linear-combination (valence) coefficients are
linear functionals of the absorbance spectrum, ``sum_e c[e] * mu[e]``, with weights ``c``
fixed by the energy grid: they are computed here once, and the kernels only accumulate
weighted sums, frame by frame. The read-outs that are not linear (the 0.5 crossing, the
white-line peak) use the frames of one contiguous block of energies (edge window union
white-line window).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thermoxanes.analysis.config import FitConfig
from thermoxanes.analysis.references import BASIS_VALENCES, valence_basis
from thermoxanes.analysis.validation import check_energies

#: Scale (eV) of the reduced energy ``t = (E - norm_e0_ev) / T_SCALE_EV`` of the lines.
T_SCALE_EV = 100.0

# Rows of the linear functionals (lin_coef) ...
ROW_ALPHA, ROW_BETA, ROW_JUMP, ROW_A23, ROW_B23, ROW_A34, ROW_B34 = range(7)
N_LIN = 7
# ... and of their variances / covariances (var_coef): pairs of lin rows.
VAR_PAIRS = (
    (ROW_ALPHA, ROW_ALPHA),
    (ROW_BETA, ROW_BETA),
    (ROW_ALPHA, ROW_BETA),
    (ROW_JUMP, ROW_JUMP),
    (ROW_JUMP, ROW_ALPHA),
    (ROW_JUMP, ROW_BETA),
    (ROW_A23, ROW_A23),
    (ROW_B23, ROW_B23),
    (ROW_A23, ROW_B23),
    (ROW_A34, ROW_A34),
    (ROW_B34, ROW_B34),
    (ROW_A34, ROW_B34),
)
N_VAR = len(VAR_PAIRS)
#: Accumulator rows: linear sums, variance sums, then the sums of d^2 and exp(d) over
#: the pre-edge window, where d = mu - ref and ref (row ROW_REF) is a per-pixel offset
#: (the first frame's absorbance in a batch fit, 0 in live accumulation).
ROW_S2 = N_LIN + N_VAR
ROW_EXP = ROW_S2 + 1
ROW_REF = ROW_EXP + 1
N_ACC = ROW_REF + 1

WL_METHOD_CODES = {"quadratic": 0, "gaussian": 1, "trig_poly": 2}


@dataclass(frozen=True)
class FitPlan:
    """Weights and index tables for one energy grid and one :class:`FitConfig`.

    Attributes
    ----------
    energies_ev : numpy.ndarray
        (E,) increasing energies (eV).
    t : numpy.ndarray
        (E,) reduced energies ``(E - norm_e0_ev) / T_SCALE_EV``.
    lin_coef : numpy.ndarray
        (N_LIN, E) weights of the linear functionals (pre-line intercept and slope at
        ``norm_e0_ev``, edge jump, linear-combination weights of the 2-3 and 3-4 pairs).
    var_coef : numpy.ndarray
        (N_VAR, E) products of weights for the variances of those functionals.
    in_pre : numpy.ndarray
        (E,) 1.0 in the pre-edge window, else 0.0.
    n_pre, pre_st, pre_stt : float
        Number of pre-edge points, their sum of t and of t^2.
    blk_lo, blk_hi : int
        Energy-index range ``[blk_lo, blk_hi)`` of the block of frames kept for the
        crossing and white-line read-outs.
    edge_lo, edge_hi, wl_lo, wl_hi : int
        Inclusive index ranges, relative to ``blk_lo``, of the edge and white-line windows.
    wl_method : int
        0 quadratic, 1 gaussian, 2 trig_poly.
    wl_fit_lo, wl_fit_n : numpy.ndarray
        (n_blk,) int64: for a maximum at block index c, the fit uses points
        ``wl_fit_lo[c] ... wl_fit_lo[c] + wl_fit_n[c] - 1`` (n = 0: no fit possible).
    wl_pinv : numpy.ndarray
        (n_blk, P, maxpts) pseudo-inverse of the peak model's design matrix.
    wl_center_ev, wl_scale_ev : numpy.ndarray, float
        trig_poly: the model's reduced variable is ``u = (E - wl_center_ev[c]) /
        wl_scale_ev``. Quadratic / Gaussian: ``wl_scale_ev`` is the radius (eV) of the
        biweight weights of the local fit (the tables are then only informative).
    norm_e0_ev, jump_k_sigma : float
        From the config.
    pre_index, post_index, lcf_index : numpy.ndarray
        Energy indices of the pre-edge, post-edge and linear-combination windows.
    """

    energies_ev: np.ndarray
    t: np.ndarray
    lin_coef: np.ndarray
    var_coef: np.ndarray
    in_pre: np.ndarray
    n_pre: float
    pre_st: float
    pre_stt: float
    blk_lo: int
    blk_hi: int
    edge_lo: int
    edge_hi: int
    wl_lo: int
    wl_hi: int
    wl_method: int
    wl_fit_lo: np.ndarray
    wl_fit_n: np.ndarray
    wl_pinv: np.ndarray
    wl_center_ev: np.ndarray
    wl_scale_ev: float
    norm_e0_ev: float
    jump_k_sigma: float
    pre_index: np.ndarray
    post_index: np.ndarray
    lcf_index: np.ndarray


def _window(e: np.ndarray, window: tuple[float, float], name: str, minimum: int) -> np.ndarray:
    sel = np.flatnonzero((e >= window[0] - 1e-9) & (e <= window[1] + 1e-9))
    if sel.size < minimum:
        raise ValueError(
            f"energy grid {e[0]:.1f}-{e[-1]:.1f} eV has {sel.size} points in {name} "
            f"{window[0]:.1f}-{window[1]:.1f} eV, needs at least {minimum}"
        )
    return sel


def _pinv_rows(design: np.ndarray) -> np.ndarray:
    """Least-squares weights: ``theta = pinv @ y`` for ``y ~ design @ theta``."""
    return np.linalg.pinv(design)


def _wl_basis(u: np.ndarray, method: int) -> np.ndarray:
    if method == 2:
        return np.stack(
            [np.ones_like(u), u, u * u, np.sin(np.pi * u), np.cos(np.pi * u)], axis=1
        )
    return np.stack([np.ones_like(u), u, u * u], axis=1)


def make_plan(energies_ev: np.ndarray, config: FitConfig | None = None) -> FitPlan:
    """Build the :class:`FitPlan` of an energy grid (eV, strictly increasing).

    Raises
    ------
    ValueError
        If the energies are not strictly increasing, or a window holds too few points
        (the grid does not cover the edge).
    """
    cfg = config or FitConfig()
    e = check_energies(energies_ev)
    n_e = e.size
    t = (e - cfg.norm_e0_ev) / T_SCALE_EV

    pre = _window(e, cfg.pre_edge_ev, "the pre-edge window", 3)
    post = _window(e, cfg.post_edge_ev, "the post-edge window", 2)
    edge = _window(e, cfg.edge_window_ev, "the edge window", 2)
    wl = _window(e, cfg.whiteline_window_ev, "the white-line window", 3)
    lcf = _window(e, cfg.lcf_window_ev, "the linear-combination window", 6)

    lin = np.zeros((N_LIN, n_e))
    line_pre = _pinv_rows(np.stack([np.ones(pre.size), t[pre]], axis=1))
    line_post = _pinv_rows(np.stack([np.ones(post.size), t[post]], axis=1))
    lin[ROW_ALPHA, pre] = line_pre[0]
    lin[ROW_BETA, pre] = line_pre[1]
    lin[ROW_JUMP, post] += line_post[0]
    lin[ROW_JUMP, pre] -= line_pre[0]

    basis = valence_basis(e, cfg.calibration_shift_ev)
    for k, (row_a, row_b) in enumerate(((ROW_A23, ROW_B23), (ROW_A34, ROW_B34))):
        design = np.stack(
            [np.ones(lcf.size), t[lcf], basis[k, lcf], basis[k + 1, lcf]], axis=1
        )
        if np.linalg.matrix_rank(design) < 4:
            raise ValueError(
                "energy grid does not cover the edge: the linear-combination window "
                f"{cfg.lcf_window_ev[0]:.1f}-{cfg.lcf_window_ev[1]:.1f} eV cannot separate "
                f"valences {BASIS_VALENCES[k]:g} and {BASIS_VALENCES[k + 1]:g}"
            )
        rows = _pinv_rows(design)
        lin[row_a, lcf] = rows[2]
        lin[row_b, lcf] = rows[3]
    var = np.stack([lin[a] * lin[b] for a, b in VAR_PAIRS])
    in_pre = np.zeros(n_e)
    in_pre[pre] = 1.0

    blk_lo = int(min(edge[0], wl[0]))
    blk_hi = int(max(edge[-1], wl[-1])) + 1
    e_blk = e[blk_lo:blk_hi]
    n_blk = blk_hi - blk_lo
    method = WL_METHOD_CODES[cfg.whiteline_method]
    wl_lo, wl_hi = int(wl[0] - blk_lo), int(wl[-1] - blk_lo)
    n_par = 5 if method == 2 else 3
    maxpts = wl.size
    fit_lo = np.zeros(n_blk, dtype=np.int64)
    fit_n = np.zeros(n_blk, dtype=np.int64)
    pinv = np.zeros((n_blk, n_par, maxpts))
    center = np.zeros(n_blk)
    if method == 2:
        lo_ev, hi_ev = e_blk[wl_lo], e_blk[wl_hi]
        scale = 0.5 * (hi_ev - lo_ev)
        mid = 0.5 * (hi_ev + lo_ev)
        u = (e_blk[wl_lo:wl_hi + 1] - mid) / scale
        design = _wl_basis(u, method)
        if wl.size < 6 or np.linalg.matrix_rank(design) < n_par:
            raise ValueError(
                f"energy grid has {wl.size} points in the white-line window, the "
                "trig_poly white-line model needs at least 6"
            )
        rows = _pinv_rows(design)
        for c in range(wl_lo, wl_hi + 1):
            fit_lo[c], fit_n[c] = wl_lo, wl.size
            pinv[c, :, : wl.size] = rows
            center[c] = mid
    else:
        scale = float(cfg.whiteline_halfwidth_ev)  # radius of the biweight weights
        for c in range(wl_lo, wl_hi + 1):
            pts = np.flatnonzero(
                (np.abs(e_blk - e_blk[c]) <= cfg.whiteline_halfwidth_ev + 1e-9)
                & (np.arange(n_blk) >= wl_lo)
                & (np.arange(n_blk) <= wl_hi)
            )
            if pts.size < 3:
                continue
            u = e_blk[pts] - e_blk[c]
            fit_lo[c], fit_n[c] = pts[0], pts.size
            pinv[c, :, : pts.size] = _pinv_rows(_wl_basis(u, method))
            center[c] = e_blk[c]
    return FitPlan(
        energies_ev=e,
        t=t,
        lin_coef=lin,
        var_coef=var,
        in_pre=in_pre,
        n_pre=float(pre.size),
        pre_st=float(t[pre].sum()),
        pre_stt=float((t[pre] ** 2).sum()),
        blk_lo=blk_lo,
        blk_hi=blk_hi,
        edge_lo=int(edge[0] - blk_lo),
        edge_hi=int(edge[-1] - blk_lo),
        wl_lo=wl_lo,
        wl_hi=wl_hi,
        wl_method=method,
        wl_fit_lo=fit_lo,
        wl_fit_n=fit_n,
        wl_pinv=pinv,
        wl_center_ev=center,
        wl_scale_ev=float(scale),
        norm_e0_ev=float(cfg.norm_e0_ev),
        jump_k_sigma=float(cfg.jump_k_sigma),
        pre_index=pre,
        post_index=post,
        lcf_index=lcf,
    )


def weight_segments(plan: FitPlan) -> np.ndarray:
    """Bounds of the runs of consecutive energies whose weights (``lin_coef``,
    ``var_coef``, ``in_pre``) are zero in the same places.

    Within a run, a sum takes either every energy or none, so the batch kernel can add
    the energies of a run in blocks without giving a NaN absorbance a zero weight (which
    would still make the sum NaN). Returns int64 ``[0, b1, ..., E]``.
    """
    pattern = np.concatenate([plan.lin_coef != 0, plan.var_coef != 0,
                              plan.in_pre[None, :] != 0]).T
    change = np.flatnonzero((pattern[1:] != pattern[:-1]).any(axis=1)) + 1
    return np.concatenate([[0], change, [pattern.shape[0]]]).astype(np.int64)
