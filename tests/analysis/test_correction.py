"""Dark/flat correction against a plain numpy reference, with bad flats."""

from __future__ import annotations

import numpy as np
import pytest

from thermoxanes.analysis.correction import absorbance, correct_counts


def _reference(sample, flat, dark, saturation, gain=1.0, n_flat=1.0):
    s = sample.astype(np.float64) - dark
    f = flat.astype(np.float64) - dark
    bad = ~(f > 0) | ~(s > 0) | ~(flat < saturation) | ~(sample < saturation) | ~np.isfinite(dark)
    with np.errstate(all="ignore"):
        mu = np.where(bad, np.nan, -np.log(s / f))
        var = np.where(bad, np.nan, gain * (1 / s + 1 / (f * n_flat)))
    return mu, var, bad


def test_random_counts_with_bad_flats(rng):
    shape = (3, 16, 16)
    flat = rng.integers(1000, 3000, shape).astype(np.uint16)
    sample = (flat * rng.uniform(0.3, 0.9, shape)).astype(np.uint16)
    dark = rng.integers(90, 110, shape[1:]).astype(np.uint16)
    flat[0, 0, 0] = 0  # zero flat
    flat[0, 0, 1] = dark[0, 1]  # flat equal to the dark
    flat[1, 2, 2] = 65535  # saturated flat
    sample[2, 3, 3] = 65535  # saturated sample
    sample[2, 4, 4] = 50  # sample below the dark
    mu, bad = absorbance(sample, flat, dark)
    ref_mu, _, ref_bad = _reference(sample, flat, dark, 65535)
    np.testing.assert_array_equal(bad, ref_bad)
    np.testing.assert_allclose(mu, ref_mu, rtol=1e-6, equal_nan=True)
    assert bad.sum() == 5
    assert mu.dtype == np.float32


def test_nan_flat_float_input_and_variance(rng):
    flat = rng.uniform(1000, 3000, (16, 16))
    sample = flat * 0.5
    dark = np.full((16, 16), 100.0)
    flat[5, 5] = np.nan
    flat[6, 6] = -3.0
    mu, var, bad = correct_counts(sample, flat, dark, gain_adu_per_photon=2.0, n_flat=5)
    ref_mu, ref_var, ref_bad = _reference(sample, flat, dark, np.inf, gain=2.0, n_flat=5)
    np.testing.assert_array_equal(bad, ref_bad)
    np.testing.assert_allclose(mu, ref_mu, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(var, ref_var, rtol=1e-6, equal_nan=True)
    assert bad[5, 5] and bad[6, 6] and bad.sum() == 2


def test_broadcast_single_flat(rng):
    sample = rng.integers(500, 900, (4, 8, 8)).astype(np.uint16)
    flat = np.full((1, 8, 8), 2000, dtype=np.uint16)
    mu, bad = absorbance(sample, flat, np.zeros((8, 8)))
    np.testing.assert_allclose(mu, -np.log(sample / 2000.0), rtol=1e-6)
    assert not bad.any()


def test_mismatched_shapes():
    with pytest.raises(ValueError, match="flat"):
        absorbance(np.ones((8, 8)), np.ones((8, 9)), np.zeros((8, 8)))
    with pytest.raises(ValueError, match="dtype"):
        absorbance(np.ones((8, 8), dtype=complex), np.ones((8, 8)), np.zeros((8, 8)))


def test_log_matches_numpy_over_the_whole_float64_range(rng):
    """The kernel's own vectorized log against numpy's, from ratios near 1 (mu ~ 0,
    where float32 rounding of the ratio would lose it) to the ends of the float range
    (denormal and overflowing ratios take the libm path)."""
    flat = np.concatenate([
        rng.uniform(1.0, 1e4, 2000),
        np.full(4, 1e300), np.full(4, 1e-300), np.full(4, 1.0),
    ])
    ratio = np.concatenate([
        np.exp(rng.uniform(-20.0, 20.0, 1000)), 1.0 + rng.uniform(-1e-6, 1e-6, 1000),
        np.array([1e-20, 1e-15, 1e-10, 1e-5]), np.array([1e20, 1e100, 1e250, 1e300]),
        np.array([1e-310, 1e-320, 1.0, 0.9999999]),
    ])
    sample = flat * ratio
    dark = np.zeros_like(flat)
    mu, var, bad = correct_counts(sample, flat, dark)
    expected = -np.log((sample - dark) / (flat - dark))
    assert not bad.any()
    np.testing.assert_allclose(mu, expected.astype(np.float32), rtol=2e-7, atol=1e-30)
    regular = slice(0, 2000)
    np.testing.assert_allclose(var[regular], 1 / sample[regular] + 1 / flat[regular],
                               rtol=1e-6)
