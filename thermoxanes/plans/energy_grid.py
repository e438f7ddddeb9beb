"""Energy grids for XANES sweeps over the Ni K-edge (eV)."""

from __future__ import annotations

import numpy as np


def xanes_energy_grid(
    start_ev: float = 8200.0,
    stop_ev: float = 8630.0,
    fine_start_ev: float = 8330.0,
    fine_stop_ev: float = 8355.0,
    coarse_step_ev: float = 10.0,
    fine_step_ev: float = 1.0,
) -> np.ndarray:
    """A coarse-fine-coarse energy grid (eV), increasing, without duplicates.

    The defaults give the 68-energy grid of seed 001 / SCIENCE.md: 10 eV steps from
    8200 eV to the fine region (plus one 5 eV transition point at 8325 eV), 1 eV steps over
    8330-8355 eV, and 10 eV steps from 8360 eV to 8630 eV.

    Parameters
    ----------
    start_ev, stop_ev : float
        First and last energy (eV).
    fine_start_ev, fine_stop_ev : float
        The fine region over the edge and white line (eV), inclusive.
    coarse_step_ev, fine_step_ev : float
        Step sizes (eV) outside and inside the fine region.

    Returns
    -------
    numpy.ndarray
        Energies in eV, float64, strictly increasing.
    """
    if not start_ev <= fine_start_ev < fine_stop_ev <= stop_ev:
        raise ValueError(
            "energy grid needs start_ev <= fine_start_ev < fine_stop_ev <= stop_ev, got "
            f"{start_ev}, {fine_start_ev}, {fine_stop_ev}, {stop_ev}"
        )
    if coarse_step_ev <= 0 or fine_step_ev <= 0:
        raise ValueError("energy grid steps must be positive")
    pre = np.arange(start_ev, fine_start_ev - 1e-9, coarse_step_ev)
    if pre.size and fine_start_ev - pre[-1] > coarse_step_ev / 2 + 1e-9:
        pre = np.append(pre, fine_start_ev - coarse_step_ev / 2)
    n_fine = int(round((fine_stop_ev - fine_start_ev) / fine_step_ev)) + 1
    fine = fine_start_ev + fine_step_ev * np.arange(n_fine)
    first_post = start_ev + coarse_step_ev * np.ceil((fine[-1] - start_ev) / coarse_step_ev + 1e-9)
    post = np.arange(first_post, stop_ev + 1e-9, coarse_step_ev)
    grid = np.unique(np.round(np.concatenate([pre, fine, post]), 6))
    return grid


def whiteline_energy_grid(
    start_ev: float = 8335.0, stop_ev: float = 8355.0, num: int = 21
) -> np.ndarray:
    """A short white-line grid (eV), as used for fast in situ runs (21 points by default)."""
    if num < 2 or stop_ev <= start_ev:
        raise ValueError("whiteline grid needs num >= 2 and stop_ev > start_ev")
    return np.linspace(start_ev, stop_ev, num)
