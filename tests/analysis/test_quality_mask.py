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


def test_accumulator_applies_the_same_rule_as_the_batch_fit(energies_ev):
    from tests.analysis.synthetic import synthetic_counts
    from thermoxanes.analysis.accumulator import SweepAccumulator
    from thermoxanes.analysis.correction import correct_counts

    rng = np.random.default_rng(3)
    valence = np.full((8, 8), 3.0)
    jump = np.full((8, 8), 0.3)
    jump[:, :4] = 0.02  # weak edges: some pass the jump test with an undefined valence
    mu = synthetic_mu(energies_ev, valence, jump, nonresonant=0.5)
    sample, flat, dark = (a.astype(np.uint16) for a in synthetic_counts(rng, mu, 5e4))
    cfg = FitConfig(register=False)
    acc = SweepAccumulator(energies_ev, (8, 8), cfg)
    acc.add_dark(dark)
    for k, e in enumerate(energies_ev):
        acc.add_flat(flat[k], e)
        acc.add_frame(sample[k], e)
    maps = acc.finish()
    m, v, _ = correct_counts(sample, flat, dark.astype(np.float64))
    batch = fit_stack(m, energies_ev, cfg, variance=v)
    keep_all = fit_stack(m, energies_ev, FitConfig(register=False, max_valence_sigma=np.inf),
                         variance=v)
    dropped = keep_all.mask & ~batch.mask
    assert dropped.sum() >= 2  # the rule removes some weak pixels here
    assert np.all(keep_all.valence_sigma[dropped] > 0.5)
    np.testing.assert_array_equal(maps.mask, batch.mask)
    for name in ("valence", "valence_sigma", "edge_energy", "whiteline_energy"):
        assert np.all(np.isnan(getattr(maps, name)[dropped])), name
        np.testing.assert_allclose(getattr(maps, name), getattr(batch, name), rtol=1e-4,
                                   atol=1e-4, equal_nan=True, err_msg=name)
    assert np.all(np.isfinite(maps.edge_jump[dropped]))
