"""The numba kernels against the plain numpy reference, on random small inputs."""

from __future__ import annotations

import numpy as np
import pytest

from tests.analysis.numpy_reference import READOUTS, reference_fit
from tests.analysis.synthetic import synthetic_mu
from thermoxanes.analysis.config import FitConfig
from thermoxanes.analysis.fit import fit_stack

ATOL = {"edge_energy": 2e-3, "whiteline_energy": 2e-3, "edge_jump": 1e-5, "valence": 1e-4}


def _compare(maps, ref, sigma_pixels: int, rtol_sigma: float = 1e-3) -> None:
    np.testing.assert_array_equal(maps.mask, ref["mask"])
    for name in READOUTS:
        got = getattr(maps, name).astype(np.float64)
        want = ref[name]
        if name != "edge_jump":
            assert np.array_equal(np.isnan(got), np.isnan(want)), name
        np.testing.assert_allclose(got, want, atol=ATOL[name], equal_nan=True, err_msg=name)
        got_s = getattr(maps, name + "_sigma").reshape(-1)[:sigma_pixels].astype(np.float64)
        want_s = ref[name + "_sigma"].reshape(-1)[:sigma_pixels]
        ok = np.isfinite(want_s)
        np.testing.assert_allclose(got_s[ok], want_s[ok], rtol=rtol_sigma, atol=1e-7,
                                   err_msg=name + "_sigma")


@pytest.mark.parametrize("method", ["quadratic", "gaussian", "trig_poly"])
def test_random_spectra_match_reference(energies_ev, rng, method):
    valence = rng.uniform(1.9, 4.1, (5, 6))
    mu = synthetic_mu(energies_ev, valence, rng.uniform(0.05, 0.4, (5, 6)),
                      shift_ev=rng.uniform(-1, 1))
    mu = (mu + rng.normal(0.0, 0.01, mu.shape)).astype(np.float32)
    cfg = FitConfig(max_valence_sigma=np.inf, register=False, whiteline_method=method)
    maps = fit_stack(mu, energies_ev, cfg)
    ref = reference_fit(mu, energies_ev, cfg, sigma_pixels=6)
    _compare(maps, ref, sigma_pixels=6)


def test_given_variance_matches_reference(energies_ev, rng):
    valence = rng.uniform(2.0, 4.0, (4, 4))
    mu = synthetic_mu(energies_ev, valence, 0.3)
    var = rng.uniform(1e-5, 4e-5, mu.shape)
    mu = (mu + rng.normal(0.0, 1.0, mu.shape) * np.sqrt(var)).astype(np.float32)
    var = var.astype(np.float32)
    cfg = FitConfig(max_valence_sigma=np.inf, register=False)
    maps = fit_stack(mu, energies_ev, cfg, variance=var)
    ref = reference_fit(mu, energies_ev, cfg, variance=var, sigma_pixels=5)
    _compare(maps, ref, sigma_pixels=5)


def test_nan_flat_and_edge_at_border(energies_ev, rng):
    """NaN pixels, flat spectra (no edge) and edges at/beyond the edge-window border."""
    valence = rng.uniform(2.0, 4.0, (6, 6))
    mu = synthetic_mu(energies_ev, valence, 0.3).astype(np.float32)
    mu[:, 0, :] = 0.7  # flat spectra: no edge jump
    mu[5, 1, 1] = np.nan  # pre-edge NaN: whole pixel out
    mu[14, 1, 2] = np.nan  # NaN at the start of the edge window
    mu[:, 2, :] = synthetic_mu(energies_ev, np.full((1, 6), 3.0), 0.3,
                               shift_ev=-15.0)[:, 0, :]  # edge below the window start
    mu[:, 3, :] = synthetic_mu(energies_ev, np.full((1, 6), 3.0), 0.3,
                               shift_ev=-9.0)[:, 0, :]  # edge right at the border
    mu[:, 4, :] = synthetic_mu(energies_ev, np.full((1, 6), 2.0), 0.3,
                               shift_ev=9.5)[:, 0, :]  # edge near the window end
    cfg = FitConfig(max_valence_sigma=np.inf, register=False)
    maps = fit_stack(mu, energies_ev, cfg)
    ref = reference_fit(mu, energies_ev, cfg, sigma_pixels=0)
    _compare(maps, ref, sigma_pixels=0)
    assert not maps.mask[0].any()
    assert not maps.mask[1, 1]
    assert np.isnan(maps.valence[0]).all()
    assert np.isnan(maps.edge_energy[1, 2])
    assert np.isnan(maps.edge_energy[2]).all()


def test_noise_free_valence_exact(energies_ev):
    valence = np.linspace(2.0, 4.0, 16).reshape(4, 4)
    mu = synthetic_mu(energies_ev, valence, 0.3).astype(np.float32)
    maps = fit_stack(mu, energies_ev, FitConfig(max_valence_sigma=np.inf, register=False))
    np.testing.assert_allclose(maps.valence, valence, atol=1e-3)
    assert maps.mask.all()


def test_calibration_shift_applied(energies_ev):
    valence = np.full((2, 2), 2.6)
    mu = synthetic_mu(energies_ev, valence, 0.3, shift_ev=0.8).astype(np.float32)
    off = fit_stack(mu, energies_ev, FitConfig(max_valence_sigma=np.inf, register=False))
    on = fit_stack(mu, energies_ev, FitConfig(max_valence_sigma=np.inf, register=False,
                                              calibration_shift_ev=0.8))
    np.testing.assert_allclose(on.valence, 2.6, atol=1e-3)
    assert np.all(np.abs(off.valence - 2.6) > 0.1)


def test_counts_with_bad_flats_match_reference(energies_ev, rng):
    """Raw counts with zero, saturated and NaN flats, through correction and the fit."""
    from tests.analysis.synthetic import synthetic_counts
    from thermoxanes.analysis.correction import correct_counts

    mu_true = synthetic_mu(energies_ev, rng.uniform(2.0, 4.0, (4, 5)), 0.3, nonresonant=0.5)
    sample, flat, dark = synthetic_counts(rng, mu_true, 5000.0)
    flat[:, 0, 0] = 0.0  # zero flat
    flat[7, 1, 1] = 65535.0  # saturated flat at one energy
    flat[30, 2, 2] = np.nan
    sample[40, 3, 3] = 65535.0  # saturated sample
    mu, var, bad = correct_counts(sample, flat, dark, saturation_adu=65535.0)
    assert bad[:, 0, 0].all() and bad[7, 1, 1] and bad[30, 2, 2] and bad[40, 3, 3]
    cfg = FitConfig(max_valence_sigma=np.inf, register=False)
    maps = fit_stack(mu, energies_ev, cfg, variance=var)
    ref = reference_fit(mu, energies_ev, cfg, variance=var, sigma_pixels=4)
    _compare(maps, ref, sigma_pixels=4)
    assert not maps.mask[0, 0] and not maps.mask[1, 1]
    good = np.ones((4, 5), dtype=bool)
    good[0, 0] = good[1, 1] = good[2, 2] = good[3, 3] = False
    assert maps.mask[good].all() and np.isfinite(maps.valence[good]).all()


def test_nan_at_one_energy_spoils_only_the_sums_that_use_it(energies_ev, rng):
    """The batch kernel adds energies in blocks; a NaN must still reach only the sums
    whose weight at its energy is not zero (a block never straddles two weight
    patterns), as in the frame-by-frame accumulation."""
    mu = synthetic_mu(energies_ev, np.full((1, 3), 3.0), 0.3)
    mu = (mu + rng.normal(0.0, 0.002, mu.shape)).astype(np.float32)
    lcf_only = int(np.flatnonzero(energies_ev == 8325.0)[0])  # in the valence window only
    post_only = int(np.flatnonzero(energies_ev == 8500.0)[0])  # in the post-edge window only
    clean = fit_stack(mu, energies_ev, FitConfig(register=False, max_valence_sigma=np.inf))
    mu[lcf_only, 0, 0] = np.nan
    mu[post_only, 0, 1] = np.nan
    maps = fit_stack(mu, energies_ev, FitConfig(register=False, max_valence_sigma=np.inf))
    assert maps.mask[0, 0] and np.isfinite(maps.edge_energy[0, 0])
    assert np.isfinite(maps.whiteline_energy[0, 0]) and np.isnan(maps.valence[0, 0])
    assert not maps.mask[0, 1] and np.isnan(maps.edge_jump[0, 1])
    assert maps.mask[0, 2] and np.isfinite(maps.valence[0, 2])
    # The edge and white line do not use the valence window's energy: unchanged.
    np.testing.assert_allclose(maps.edge_energy[0, 0], clean.edge_energy[0, 0], rtol=1e-6)
    np.testing.assert_allclose(maps.whiteline_energy[0, 0], clean.whiteline_energy[0, 0],
                               rtol=1e-6)
