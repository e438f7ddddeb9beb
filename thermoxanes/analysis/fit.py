"""Public entry point of the per-pixel XANES fit: :func:`fit_stack`."""

from __future__ import annotations

import numpy as np

from thermoxanes.analysis.config import FitConfig
from thermoxanes.analysis.fit_kernels import _fit_stack_kernel
from thermoxanes.analysis.fit_plan import FitPlan, make_plan, weight_segments
from thermoxanes.analysis.kernel_base import N_OUT
from thermoxanes.analysis.maps import XanesMaps
from thermoxanes.analysis.registration import register_stack
from thermoxanes.analysis.validation import check_energies, check_stack


def maps_from_out(out: np.ndarray, mask: np.ndarray, plan: FitPlan, shifts: np.ndarray,
                  config: FitConfig) -> XanesMaps:
    """Wrap kernel output rows ``out`` (N_OUT, H, W) and ``mask`` as :class:`XanesMaps`.

    The kernels have already taken the pixels whose valence sigma exceeds
    ``config.max_valence_sigma`` out of the mask and set their maps (all but the edge
    jump and its sigma) to NaN.
    """
    return XanesMaps(
        edge_energy=out[0],
        edge_energy_sigma=out[1],
        whiteline_energy=out[2],
        whiteline_energy_sigma=out[3],
        edge_jump=out[4],
        edge_jump_sigma=out[5],
        valence=out[6],
        valence_sigma=out[7],
        mask=mask,
        energies_ev=plan.energies_ev,
        registration_shifts=shifts,
        config=config.to_dict(),
    )


def plan_kernel_args(plan: FitPlan) -> tuple:
    """The plan's scalars and tables in the order the finishing kernels take them."""
    e_blk = plan.energies_ev[plan.blk_lo:plan.blk_hi].copy()
    t_blk = plan.t[plan.blk_lo:plan.blk_hi].copy()
    return (e_blk, t_blk, plan.n_pre, plan.pre_st, plan.pre_stt, plan.norm_e0_ev,
            plan.jump_k_sigma, plan.edge_lo, plan.edge_hi, plan.wl_lo, plan.wl_hi,
            plan.wl_method, plan.wl_fit_lo, plan.wl_fit_n, plan.wl_pinv, plan.wl_center_ev,
            plan.wl_scale_ev)


def fit_stack(
    absorbance: np.ndarray,
    energies_ev: np.ndarray,
    config: FitConfig | None = None,
    *,
    variance: np.ndarray | None = None,
) -> XanesMaps:
    """Fit every pixel of an absorbance stack: edge, white line, edge jump, valence.

    Parameters
    ----------
    absorbance : numpy.ndarray
        (E, H, W) absorbance ``-ln(I/I0)`` (NaN marks bad pixels); fitted in float32, C
        order (other dtypes or layouts are copied first).
    energies_ev : numpy.ndarray
        (E,) energies (eV), strictly increasing, covering the windows of ``config``.
    config : FitConfig, optional
        Windows and options; Ni K-edge defaults.
    variance : numpy.ndarray, optional
        (E, H, W) variance of ``absorbance`` from counting statistics (see
        :func:`thermoxanes.analysis.correction.correct_counts`). Without it, each pixel's
        variance is modelled from its pre-edge scatter as
        ``sigma_pre^2 * exp(mu_e) / <exp(mu)>_pre`` (photon noise, flat flux).

    Returns
    -------
    XanesMaps
        Maps with 1-sigma uncertainties; NaN outside the edge-jump mask.

    Raises
    ------
    ValueError
        On a wrong shape or dtype, non-increasing or duplicate energies, or a grid that
        does not cover the fit windows.
    """
    cfg = config or FitConfig()
    e = check_energies(energies_ev)
    check_stack(absorbance, e.size)
    plan = make_plan(e, cfg)
    # One compiled kernel: C-contiguous float32 (no copy when given so). Other layouts
    # and dtypes are copied: each would compile the whole kernel again (~20 s), and
    # float32 sums lose nothing that matters against counting noise.
    stack = np.ascontiguousarray(absorbance, dtype=np.float32)
    if variance is not None:
        check_stack(variance, e.size, name="variance")
        if variance.shape != stack.shape:
            raise ValueError(
                f"variance: shape {variance.shape} does not match absorbance {stack.shape}"
            )
        variance = np.ascontiguousarray(variance, dtype=np.float32)
    shifts = np.zeros((e.size, 2))
    if cfg.register:
        stack, variance, shifts = register_stack(stack, variance, e, upsample=cfg.upsample)
    model_var = variance is None
    var_stack = stack if model_var else variance
    _, n_h, n_w = stack.shape
    out = np.empty((N_OUT, n_h, n_w), dtype=np.float32)
    mask = np.empty((n_h, n_w), dtype=np.bool_)
    # Weights and sums in the stack's precision (float32: twice the SIMD lanes; the sums
    # of at most E terms lose nothing that matters against counting noise).
    lin_t = np.ascontiguousarray(plan.lin_coef.T, dtype=stack.dtype)
    var_t = np.ascontiguousarray(plan.var_coef.T, dtype=stack.dtype)
    _fit_stack_kernel(stack, var_stack, model_var, lin_t, var_t,
                      plan.in_pre.astype(stack.dtype), weight_segments(plan),
                      int(plan.pre_index[0]), plan.blk_lo, plan.blk_hi, *plan_kernel_args(plan),
                      cfg.max_valence_sigma, out, mask)
    return maps_from_out(out, mask, plan, shifts, cfg)
