"""Propagated 1-sigma uncertainties against the actual scatter, on Poisson counts."""

from __future__ import annotations

import numpy as np
import pytest

from tests.analysis.synthetic import synthetic_counts, synthetic_mu
from thermoxanes.analysis.config import FitConfig
from thermoxanes.analysis.correction import correct_counts
from thermoxanes.analysis.fit import fit_stack

QUANTITIES = ("edge_energy", "whiteline_energy", "edge_jump", "valence")


@pytest.mark.parametrize("given_variance", [True, False])
def test_pulls_have_unit_std(energies_ev, given_variance):
    rng = np.random.default_rng(7)
    shape = (16, 16)
    valence = rng.uniform(2.2, 3.8, shape)
    mu_true = synthetic_mu(energies_ev, valence, 0.5, nonresonant=0.6)
    cfg = FitConfig(register=False)
    truth = fit_stack(mu_true.astype(np.float32), energies_ev, cfg)
    sample, flat, dark = synthetic_counts(rng, mu_true, 20000.0, n_flat=5)
    mu, var, _ = correct_counts(sample, flat, dark, n_flat=5)
    maps = fit_stack(mu, energies_ev, cfg, variance=var if given_variance else None)
    assert maps.mask.mean() > 0.95
    for name in QUANTITIES:
        err = getattr(maps, name).astype(np.float64) - getattr(truth, name)
        pull = err / getattr(maps, name + "_sigma")
        pull = pull[np.isfinite(pull)]
        assert pull.size > 200, name
        # Robust width: the read-outs of the crossing and of the peak are not linear in
        # the noise far out in the tails (a crossing or a maximum moving to another
        # pair of points), which the linear propagation cannot describe.
        width = 1.4826 * np.median(np.abs(pull - np.median(pull)))
        assert 0.8 < width < 1.25, (name, width)
        assert abs(np.median(pull)) < 0.3, (name, np.median(pull))
        if name != "edge_energy":  # the crossing can jump pairs: wider tails
            assert 0.8 < np.std(pull) < 1.25, (name, np.std(pull))
