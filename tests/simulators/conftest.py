import pytest

from thermoxanes.simulators.world import SimWorld


@pytest.fixture(scope="module")
def small_world() -> SimWorld:
    return SimWorld.from_preset("nmc622-gravel", size=96, seed=1)
