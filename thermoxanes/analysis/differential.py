"""Differential maps between two sweeps, with a per-pixel significance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thermoxanes.analysis.maps import XanesMaps

QUANTITIES = ("valence", "edge_energy", "whiteline_energy", "edge_jump")


@dataclass
class DifferentialMap:
    """``after - before`` of one quantity, pixel by pixel.

    Attributes
    ----------
    delta : numpy.ndarray
        float32 (H, W) difference (units of the quantity: eV for energies), NaN outside
        ``mask``.
    sigma : numpy.ndarray
        float32 (H, W) 1-sigma uncertainty of ``delta``: ``hypot(sigma_before,
        sigma_after)`` (independent sweeps).
    z : numpy.ndarray
        float32 (H, W) significance ``delta / sigma``.
    mask : numpy.ndarray
        bool (H, W): both sweeps masked-in and every value finite.
    quantity : str
        Which map was differenced.
    """

    delta: np.ndarray
    sigma: np.ndarray
    z: np.ndarray
    mask: np.ndarray
    quantity: str = "valence"


def differential_map(
    before: XanesMaps, after: XanesMaps, quantity: str = "valence"
) -> DifferentialMap:
    """Difference ``after - before`` of ``quantity`` with its uncertainty and z-score.

    Parameters
    ----------
    before, after : XanesMaps
        Maps of two sweeps of the same field of view (same frame shape).
    quantity : {"valence", "edge_energy", "whiteline_energy", "edge_jump"}

    Raises
    ------
    ValueError
        On an unknown quantity or different frame shapes.
    """
    if quantity not in QUANTITIES:
        raise ValueError(f"quantity: {quantity!r} is not one of {', '.join(QUANTITIES)}")
    if before.shape != after.shape:
        raise ValueError(f"frame shapes differ: before {before.shape}, after {after.shape}")
    v0 = getattr(before, quantity).astype(np.float64)
    v1 = getattr(after, quantity).astype(np.float64)
    s0 = getattr(before, f"{quantity}_sigma").astype(np.float64)
    s1 = getattr(after, f"{quantity}_sigma").astype(np.float64)
    delta = v1 - v0
    sigma = np.hypot(s0, s1)
    mask = before.mask & after.mask & np.isfinite(delta) & np.isfinite(sigma) & (sigma > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = delta / sigma
    nan = np.float32(np.nan)
    return DifferentialMap(
        delta=np.where(mask, delta, nan).astype(np.float32),
        sigma=np.where(mask, sigma, nan).astype(np.float32),
        z=np.where(mask, z, nan).astype(np.float32),
        mask=mask,
        quantity=quantity,
    )
