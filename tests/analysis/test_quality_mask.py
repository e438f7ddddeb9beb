"""Pixels whose valence is statistically undefined leave the mask."""

from __future__ import annotations

import numpy as np

from tests.analysis.synthetic import synthetic_mu
from thermoxanes.analysis.config import FitConfig
from thermoxanes.analysis.fit import fit_stack


def test_barely_visible_edges_leave_the_mask(energies_ev, rng):
    valence = np.full((6, 8), 3.0)
    jump = np.full((6, 8), 0.3)
    jump[:, :4] = 0.012  # an edge hardly above the noise in the left half
    mu = synthetic_mu(energies_ev, valence, jump, shift_ev=0.0)
    # quiet pre-edge (so the jump test passes), noisy edge and post-edge (fewer counts
    # once the sample absorbs more): the valence of the weak pixels is then undefined
    noise = np.where(energies_ev < 8320.0, 0.002, 0.02)[:, None, None]
    mu = (mu + rng.normal(0.0, 1.0, mu.shape) * noise).astype(np.float32)
    keep_all = fit_stack(mu, energies_ev, FitConfig(register=False, max_valence_sigma=np.inf))
    maps = fit_stack(mu, energies_ev, FitConfig(register=False, max_valence_sigma=0.5))
    # without the rule, weak-edge pixels pass the jump test but carry huge valence sigmas
    weak = keep_all.mask[:, :4]
    assert weak.any()
    assert np.nanmax(keep_all.valence_sigma[:, :4][weak]) > 0.5
    # with it, every masked-in pixel has a defined valence; strong pixels are untouched
    assert np.all(maps.valence_sigma[maps.mask] <= 0.5)
    assert np.all(np.isnan(maps.valence[~maps.mask]))
    np.testing.assert_array_equal(maps.mask[:, 4:], keep_all.mask[:, 4:])
    np.testing.assert_array_equal(maps.valence[:, 4:], keep_all.valence[:, 4:])
    # the edge jump stays reported everywhere (as documented for XanesMaps)
    np.testing.assert_array_equal(maps.edge_jump, keep_all.edge_jump)
