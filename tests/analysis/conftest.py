"""Shared fixtures of the analysis tests (small arrays: the suite also runs without JIT)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.analysis.synthetic import energy_grid_ev, synthetic_mu


@pytest.fixture
def energies_ev() -> np.ndarray:
    return energy_grid_ev()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def noisy_stack(energies_ev, rng):
    """(mu float32 (E, 8, 8), valence truth) with Gaussian noise of 0.004."""
    valence = rng.uniform(2.0, 4.0, (8, 8))
    mu = synthetic_mu(energies_ev, valence, rng.uniform(0.15, 0.4, (8, 8)))
    mu = mu + rng.normal(0.0, 0.004, mu.shape)
    return mu.astype(np.float32), valence
