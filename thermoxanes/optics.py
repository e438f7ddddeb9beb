"""Zone-plate optics of a full-field TXM: focal length and focus positions versus energy.

Pure functions (numpy only) shared by the real pseudo-positioner and the simulator.
Lens equations from SCIENCE.md: ``f = D * dr / lambda``; for magnification ``M`` the
sample-to-zone-plate distance is ``p = f (M + 1) / M`` and zone plate to detector ``q = M p``.
"""

from __future__ import annotations

import numpy as np

#: h*c in eV * m.
HC_EV_M = 1.239841984e-6


def wavelength_m(energy_ev: float | np.ndarray) -> float | np.ndarray:
    """X-ray wavelength (m) at ``energy_ev`` (eV)."""
    energy = np.asarray(energy_ev, dtype=np.float64)
    if np.any(energy <= 0):
        raise ValueError(f"energy_ev must be positive, got {energy_ev!r}")
    return HC_EV_M / energy


def focal_length_mm(
    energy_ev: float | np.ndarray, diameter_um: float = 244.0, outer_zone_nm: float = 30.0
) -> float | np.ndarray:
    """Zone-plate focal length (mm): ``f = D * dr / lambda``.

    Parameters
    ----------
    energy_ev : float or array
        Photon energy (eV).
    diameter_um : float
        Zone-plate diameter D (µm); 244 µm at NSLS-II FXI.
    outer_zone_nm : float
        Outermost zone width dr (nm); 30 nm at FXI.
    """
    return diameter_um * 1e-6 * outer_zone_nm * 1e-9 / wavelength_m(energy_ev) * 1e3


def focus_positions_mm(
    energy_ev: float | np.ndarray,
    magnification: float,
    diameter_um: float = 244.0,
    outer_zone_nm: float = 30.0,
) -> tuple[float | np.ndarray, float | np.ndarray]:
    """Sample-to-zone-plate distance ``p`` and zone-plate-to-detector distance ``q`` (mm).

    Keeps the image in focus at a constant ``magnification`` when the energy changes.
    """
    if magnification <= 0:
        raise ValueError(f"magnification must be positive, got {magnification!r}")
    f = focal_length_mm(energy_ev, diameter_um, outer_zone_nm)
    p = f * (magnification + 1.0) / magnification
    return p, magnification * p
