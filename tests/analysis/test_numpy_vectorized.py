"""The vectorized numpy baseline of the benchmark agrees with the kernels."""

from __future__ import annotations

import numpy as np

from tests.analysis.numpy_vectorized import numpy_fit
from tests.analysis.synthetic import synthetic_mu
from thermoxanes.analysis.config import FitConfig
from thermoxanes.analysis.fit import fit_stack


def test_vectorized_baseline_matches_kernels(energies_ev, rng):
    mu = synthetic_mu(energies_ev, rng.uniform(1.9, 4.1, (8, 8)), rng.uniform(0.05, 0.4, (8, 8)))
    mu = (mu + rng.normal(0.0, 0.01, mu.shape)).astype(np.float32)
    mu[:, 0, 0] = 0.5
    mu[20, 1, 1] = np.nan
    cfg = FitConfig(register=False)
    maps = fit_stack(mu, energies_ev, cfg)
    ref = numpy_fit(mu, energies_ev, cfg)
    np.testing.assert_array_equal(maps.mask, ref["mask"])
    for name, atol in (("edge_energy", 2e-3), ("whiteline_energy", 2e-3), ("valence", 1e-4),
                       ("edge_jump", 1e-5)):
        np.testing.assert_allclose(getattr(maps, name), ref[name], atol=atol, equal_nan=True,
                                   err_msg=name)
