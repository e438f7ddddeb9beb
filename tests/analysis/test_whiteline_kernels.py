"""The quadratic / Gaussian white line over more than one chunk of pixels."""

from __future__ import annotations

import numpy as np
import pytest

from tests.analysis.numpy_reference import reference_fit
from tests.analysis.synthetic import synthetic_mu
from thermoxanes.analysis.config import FitConfig
from thermoxanes.analysis.fit import fit_stack
from thermoxanes.analysis.whiteline_kernels import CHUNK

WIDTH = CHUNK + 14  # a full chunk, then a partial one (not a multiple of 8)


@pytest.mark.parametrize("method", ["quadratic", "gaussian"])
def test_two_chunks_match_reference_and_single_pixels(energies_ev, rng, method):
    valence = rng.uniform(1.9, 4.1, (1, WIDTH))
    mu = synthetic_mu(energies_ev, valence, rng.uniform(0.05, 0.4, (1, WIDTH)),
                      shift_ev=rng.uniform(-1, 1))
    mu = (mu + rng.normal(0.0, 0.01, mu.shape)).astype(np.float32)
    wl = np.flatnonzero((energies_ev >= 8340.0) & (energies_ev <= 8360.0))
    mu[wl[3], 0, 5] = np.nan  # no white line in either chunk
    mu[wl[8], 0, CHUNK + 3] = np.nan
    cfg = FitConfig(max_valence_sigma=np.inf, register=False, whiteline_method=method)
    maps = fit_stack(mu, energies_ev, cfg)
    got = maps.whiteline_energy[0].astype(np.float64)
    got_s = maps.whiteline_energy_sigma[0].astype(np.float64)
    assert np.isnan(got[[5, CHUNK + 3]]).all()
    ref = reference_fit(mu, energies_ev, cfg, sigma_pixels=0)
    want = ref["whiteline_energy"][0]
    assert np.array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, atol=2e-3, equal_nan=True)
    assert np.isfinite(got).sum() > WIDTH - 10
    # Sigmas in the partial chunk against finite differences.
    cols = slice(CHUNK + 4, CHUNK + 10)
    ref_s = reference_fit(np.ascontiguousarray(mu[:, :, cols]), energies_ev, cfg)
    want_s = ref_s["whiteline_energy_sigma"][0]
    ok = np.isfinite(want_s)
    assert ok.sum() >= 4
    np.testing.assert_allclose(got_s[cols][ok], want_s[ok], rtol=1e-3, atol=1e-7)
    # A pixel's result does not depend on its neighbours in the chunk.
    for x in (0, 7, CHUNK - 1, CHUNK, WIDTH - 1):
        one = fit_stack(np.ascontiguousarray(mu[:, :, x:x + 1]), energies_ev, cfg)
        np.testing.assert_allclose(one.whiteline_energy[0, 0], got[x], atol=1e-5,
                                   equal_nan=True)
        np.testing.assert_allclose(one.whiteline_energy_sigma[0, 0], got_s[x], rtol=1e-4,
                                   equal_nan=True)
