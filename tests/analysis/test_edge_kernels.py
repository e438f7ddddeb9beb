"""The edge read-out kernel (edge_kernels.py) against the numpy reference, at doses from
saturated crossing probabilities (tiny variances) to noise comparable to the rise, and
with a non-finite point after the crossing (ignored) and before it (NaN)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.analysis.numpy_reference import edge_hop_variance, reference_fit
from tests.analysis.synthetic import synthetic_mu
from thermoxanes.analysis.config import FitConfig
from thermoxanes.analysis.fit import fit_stack


@pytest.mark.parametrize("var_level", [1e-12, 1e-6, 4e-4])
def test_edge_sigma_matches_reference_across_doses(energies_ev, rng, var_level):
    valence = rng.uniform(2.0, 4.0, (3, 4))
    mu = synthetic_mu(energies_ev, valence, 0.3, shift_ev=rng.uniform(-2, 2))
    var = rng.uniform(0.5, 1.5, mu.shape) * var_level
    mu = (mu + rng.normal(0.0, 1.0, mu.shape) * np.sqrt(var)).astype(np.float32)
    var = var.astype(np.float32)
    cfg = FitConfig(max_valence_sigma=np.inf, register=False)
    maps = fit_stack(mu, energies_ev, cfg, variance=var)
    ref = reference_fit(mu, energies_ev, cfg, variance=var, sigma_pixels=12)
    ok = np.isfinite(ref["edge_energy"])
    assert ok.sum() >= 10
    np.testing.assert_array_equal(np.isnan(maps.edge_energy), ~ok)
    np.testing.assert_allclose(maps.edge_energy[ok], ref["edge_energy"][ok], atol=2e-3)
    np.testing.assert_allclose(maps.edge_energy_sigma[ok], ref["edge_energy_sigma"][ok],
                               rtol=1e-3, atol=1e-7)
    if var_level >= 4e-4:
        # The hop term is a real part of the sigma at this dose, not a rounding effect.
        e = energies_ev
        hops = [edge_hop_variance(e, mu[:, y, x].astype(np.float64),
                                  var[:, y, x].astype(np.float64), cfg)
                for y, x in zip(*np.nonzero(ok), strict=True)]
        assert max(hops) > 1e-3


def test_nonfinite_point_before_and_after_crossing(energies_ev):
    # C order: the helper's (E, 1, 3) view is F-contiguous, a layout no other test passes,
    # and compiling the fit kernel once more for it costs ~20 s and checks nothing more
    # (the strided, non-contiguous layout is fitted in the other tests of this folder).
    mu = np.ascontiguousarray(synthetic_mu(energies_ev, np.full((1, 3), 3.0), 0.3),
                              dtype=np.float32)
    edge = np.flatnonzero((energies_ev >= 8330.0) & (energies_ev <= 8350.0))
    cfg = FitConfig(max_valence_sigma=np.inf, register=False)
    clean = fit_stack(mu, energies_ev, cfg)
    crossing = clean.edge_energy[0, 0]
    before = edge[energies_ev[edge] < crossing - 1.0][0]
    after = edge[energies_ev[edge] > crossing + 1.0][-1]
    mu[before, 0, 1] = np.nan
    mu[after, 0, 2] = np.inf
    maps = fit_stack(mu, energies_ev, cfg)
    ref = reference_fit(mu, energies_ev, cfg, sigma_pixels=0)
    assert np.isfinite(maps.edge_energy[0, 0])
    assert np.isnan(maps.edge_energy[0, 1]) and np.isnan(ref["edge_energy"][0, 1])
    assert np.isfinite(maps.edge_energy[0, 2])
    np.testing.assert_allclose(maps.edge_energy[0, 2], ref["edge_energy"][0, 2], atol=2e-3)
