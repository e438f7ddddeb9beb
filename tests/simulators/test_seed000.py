"""Seed 000: a charged NMC622 particle held at 380 C for hours.

Differential edge-energy histograms peak below zero with a real positive tail, symmetric
at first and asymmetric later; cracks open (porosity and crack area roughly double over
~4 h); Li-compound protrusions grow on the surface without a Ni edge.
"""

import numpy as np
import pytest
from scipy.stats import skew

from thermoxanes.simulators.export import heat_to
from thermoxanes.simulators.geometry import crack_surface_um2, morphology_epsilon, porosity
from thermoxanes.simulators.world import SimWorld


@pytest.fixture(scope="module")
def series():
    world = SimWorld.from_preset("nmc622-380c", size=128, seed=0)
    state = world.sample.chemistry.state
    start = {"c": state.c, "porosity": [], "crack_um2": []}
    for vol in world.sample.particles:
        start["porosity"].append(porosity(vol, state.c))
        start["crack_um2"].append(crack_surface_um2(vol, state.c))
    heat_to(world, 380.0, ramp_rate_c_per_min=5.0, hold_s=2 * 3600.0)
    maps = []
    for k in range(4):
        maps.append(world.truth())
        maps[-1]["crack_state"] = state.c
        if k < 3:
            world.advance(3600.0)
    return world, start, maps


def test_differential_histograms(series):
    _, _, maps = series
    thick = maps[-1]["thickness_um"] > 2.0
    diffs = []
    for a, b in zip(maps[:-1], maps[1:], strict=True):
        d = b["edge_energy"] - a["edge_energy"]
        diffs.append(d[np.isfinite(d) & thick])
    tails = []
    for d in diffs:
        assert np.median(d) < -0.1  # overall reduction: peak below zero
        assert (d > 0).mean() > 0.05  # local oxidation by Li redistribution
        med = np.median(d)
        robust_sd = 1.4826 * np.median(np.abs(d - med))
        tails.append(((d < med - 2.5 * robust_sd).mean(), (d > med + 2.5 * robust_sd).mean()))
    report = {"tails": tails, "skew": [float(skew(d)) for d in diffs]}
    # Symmetric at first: no heavy tail on either side.
    for low, high in tails[:2]:
        assert low < 0.03 and high < 0.03, report
    # Asymmetric later: a negative tail (surface charge transfer), no positive one.
    low, high = tails[2]
    assert low > 0.05 and low > 10 * high, report
    assert report["skew"][2] < -0.4, report
    # The edge-energy histogram moves to lower energy over time.
    means = [np.nanmean(m["edge_energy"]) for m in maps]
    assert all(np.diff(means) < 0), means


def test_cracks_roughly_double(series):
    world, start, maps = series
    c = maps[2]["crack_state"]  # after 4 h at 380 C
    assert 1.7 < c < 2.3
    for vol, p0, a0 in zip(world.sample.particles, start["porosity"], start["crack_um2"],
                           strict=True):
        assert 1.4 < porosity(vol, c) / p0 < 2.8
        assert 1.4 < crack_surface_um2(vol, c) / a0 < 3.0
        # Morphological complexity eps = V^(1/3) / S^(1/2) falls.
        eps0 = morphology_epsilon(vol.solid(start["c"]), vol.voxel_um)
        eps1 = morphology_epsilon(vol.solid(c), vol.voxel_um)
        assert eps1 < eps0


def test_li_protrusions_have_no_ni_edge(series):
    world, _, _ = series
    tr = world.truth(energies_ev=np.array([8320.0, 8380.0]))
    li_only = (tr["li_thickness_um"] > 0.5) & (tr["thickness_um"] == 0)
    assert li_only.sum() > 20
    assert not tr["mask"][li_only].any()
    jump = tr["absorbance"][1] - tr["absorbance"][0]
    # Only the (falling) non-resonant absorption: no edge jump at all.
    assert (jump[li_only] <= 0).all()
    assert np.nanmax(jump) > 0.05
