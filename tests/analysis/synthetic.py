"""Synthetic Ni K-edge stacks with known truth, for the tests and the benchmarks."""

from __future__ import annotations

import numpy as np

from thermoxanes.analysis.references import spectrum_for_valence


def energy_grid_ev() -> np.ndarray:
    """68 energies 8200-8630 eV: 10 eV steps, 1 eV steps over 8330-8355 eV."""
    return np.r_[
        np.arange(8200.0, 8330.0, 10.0), 8325.0, np.arange(8330.0, 8356.0, 1.0),
        np.arange(8360.0, 8640.0, 10.0),
    ]


def background_mu(energies_ev: np.ndarray, level: float = 0.5) -> np.ndarray:
    """Smooth non-resonant absorbance, falling as E^-3 (absorbance units)."""
    return level * (np.asarray(energies_ev) / 8333.0) ** -3


def synthetic_mu(
    energies_ev: np.ndarray,
    valence: np.ndarray,
    thickness: np.ndarray | float,
    *,
    shift_ev: float = 0.0,
    background: float = 0.5,
    nonresonant: float = 0.0,
) -> np.ndarray:
    """Noise-free absorbance stack (E, H, W).

    ``background`` (E^-3, uniform) + ``thickness`` * (``nonresonant`` * E^-3 +
    normalized spectrum of ``valence``).
    """
    spec = spectrum_for_valence(energies_ev, valence, shift_ev)  # (H, W, E)
    t = np.asarray(thickness)[..., None]
    mu = background_mu(energies_ev, background) + t * (
        spec + background_mu(energies_ev, nonresonant))
    return np.moveaxis(mu, -1, 0)


def synthetic_counts(
    rng: np.random.Generator,
    mu: np.ndarray,
    flat_photons: float,
    *,
    dark_adu: float = 100.0,
    n_flat: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poisson raw counts (gain 1): sample (E,H,W), flat mean of n_flat (E,H,W), dark (H,W)."""
    flat_true = np.full(mu.shape, float(flat_photons))
    sample = rng.poisson(flat_true * np.exp(-mu)) + dark_adu
    flat = rng.poisson(flat_true * n_flat) / n_flat + dark_adu
    dark = np.full(mu.shape[1:], dark_adu)
    return sample.astype(np.float64), flat, dark
