"""Shared fixtures: a small simulated beamline."""

from __future__ import annotations

import pytest


@pytest.fixture
def beamline(tmp_path):
    """A 32x32 simulated beamline from the ``sim`` profile, frames under ``tmp_path``."""
    from thermoxanes.profiles.beamline import build_beamline
    from thermoxanes.profiles.schema import load_profile

    return build_beamline(load_profile("sim"), tmp_path / "raw", size=32, seed=1)


@pytest.fixture
def short_grid():
    """A 16-energy grid that still covers pre-edge, edge, white line and post-edge."""
    import numpy as np

    return np.array([8200, 8250, 8300, 8320, 8330, 8335, 8338, 8340, 8342, 8345, 8348,
                     8350, 8355, 8400, 8500, 8600], dtype=float)
