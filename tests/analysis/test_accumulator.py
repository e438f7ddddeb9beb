"""SweepAccumulator: any order, duplicates, gaps, late flats/darks; equals the batch fit."""

from __future__ import annotations

import json

import numba
import numpy as np
import pytest

from tests.analysis.synthetic import synthetic_counts, synthetic_mu
from thermoxanes.analysis.accumulator import SweepAccumulator
from thermoxanes.analysis.config import FitConfig
from thermoxanes.analysis.correction import correct_counts
from thermoxanes.analysis.fit import fit_stack

CFG = FitConfig(register=False)


def _sweep(energies_ev, rng, shape=(8, 8)):
    valence = rng.uniform(2.0, 4.0, shape)
    mu = synthetic_mu(energies_ev, valence, 0.3, nonresonant=0.5)
    sample, flat, dark = synthetic_counts(rng, mu, 2000.0)
    return sample.astype(np.uint16), flat.astype(np.uint16), dark.astype(np.uint16)


def _batch(energies_ev, sample, flat, dark, cfg=CFG):
    mu, var, _ = correct_counts(sample, flat, dark.astype(np.float64))
    return fit_stack(mu, energies_ev, cfg, variance=var)


def _assert_same(a, b):
    for name in ("edge_energy", "edge_energy_sigma", "whiteline_energy", "valence",
                 "valence_sigma", "edge_jump"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-4, atol=1e-4,
                                   equal_nan=True, err_msg=name)
    np.testing.assert_array_equal(a.mask, b.mask)


def test_shuffled_order_equals_batch(energies_ev, rng):
    sample, flat, dark = _sweep(energies_ev, rng)
    acc = SweepAccumulator(energies_ev[::-1], (8, 8), CFG)
    acc.add_dark(dark)
    order = rng.permutation(energies_ev.size)
    for i in order[: order.size // 2]:  # frame first, flat after
        acc.add_frame(sample[i], energies_ev[i])
        acc.add_flat(flat[i], energies_ev[i])
    for i in order[order.size // 2:]:  # flat first
        acc.add_flat(flat[i], energies_ev[i])
        acc.add_frame(sample[i], energies_ev[i])
    maps = acc.finish()
    _assert_same(maps, _batch(energies_ev, sample, flat, dark))
    report = acc.report
    json.dumps(report)
    assert report["n_frames"] == energies_ev.size
    assert report["duplicates"] == [] and report["missing_energies"] == []


def test_late_dark_and_averaged_flats(energies_ev, rng):
    sample, flat, dark = _sweep(energies_ev, rng)
    flat2 = (flat.astype(np.int32) + rng.integers(-40, 40, flat.shape)).astype(np.uint16)
    acc = SweepAccumulator(energies_ev, (8, 8), CFG)
    for i, e in enumerate(energies_ev):
        acc.add_flat(flat[i], e)
        acc.add_frame(sample[i], e)
        acc.add_flat(flat2[i], e)
    acc.add_dark(dark)  # darks last: every contribution is redone
    maps = acc.finish()
    mean_flat = (flat.astype(np.float64) + flat2) / 2
    mu, var, _ = correct_counts(sample, mean_flat, dark.astype(np.float64), n_flat=2)
    _assert_same(maps, fit_stack(mu, energies_ev, CFG, variance=var))


def test_duplicates_gaps_unexpected_and_global_flat(energies_ev, rng):
    sample, flat, dark = _sweep(energies_ev, rng)
    acc = SweepAccumulator(energies_ev, (8, 8), CFG)
    acc.add_dark(dark)
    acc.add_flat(flat[0])  # one flat for all energies
    for i, e in enumerate(energies_ev[:-3]):
        acc.add_frame(sample[i], e)
    acc.add_frame(sample[5], energies_ev[5])
    acc.add_frame(sample[5], 9000.0)
    with pytest.raises(ValueError, match="missing energies"):
        acc.finish()
    report = acc.report
    assert report["duplicates"] == [float(energies_ev[5])]
    assert report["missing_energies"] == energies_ev[-3:].tolist()
    assert report["unexpected_energies"] == [9000.0]
    partial = acc.finish(allow_partial=True)
    assert partial.energies_ev.size == energies_ev.size - 3
    assert np.isfinite(partial.valence[partial.mask]).all()


def test_bad_flat_pixels_stay_local(energies_ev, rng):
    sample, flat, dark = _sweep(energies_ev, rng)
    flat[:, 2, 3] = 0
    flat[10, 4, 4] = 65535
    acc = SweepAccumulator(energies_ev, (8, 8), CFG)
    acc.add_dark(dark)
    for i, e in enumerate(energies_ev):
        acc.add_flat(flat[i], e)
        acc.add_frame(sample[i], e)
    maps = acc.finish()
    assert acc.report["n_bad_flat_pixels"] == 2
    assert not maps.mask[2, 3] and not maps.mask[4, 4]
    assert np.isnan(maps.valence[2, 3])
    good = np.ones((8, 8), dtype=bool)
    good[2, 3] = good[4, 4] = False
    assert maps.mask[good].all() and np.isfinite(maps.valence[good]).all()


def test_bad_input(energies_ev):
    with pytest.raises(ValueError, match="duplicate"):
        SweepAccumulator(np.r_[energies_ev, energies_ev[3]], (8, 8))
    acc = SweepAccumulator(energies_ev, (8, 8))
    with pytest.raises(ValueError, match="frame shape"):
        acc.add_frame(np.zeros((8, 9), dtype=np.uint16), energies_ev[0])
    with pytest.raises(ValueError, match="pre-edge"):
        SweepAccumulator(energies_ev[energies_ev > 8300], (8, 8))


def test_registration_in_accumulator(energies_ev, rng):
    sample, flat, dark = _sweep(energies_ev, rng, shape=(16, 16))
    acc = SweepAccumulator(energies_ev, (16, 16), FitConfig(register=True))
    acc.add_dark(dark)
    for i, e in enumerate(energies_ev):
        acc.add_flat(flat[i], e)
        acc.add_frame(sample[i], e)
    maps = acc.finish()
    assert maps.registration_shifts.shape == (energies_ev.size, 2)


def test_finish_twice_and_frames_after_finish(energies_ev, rng):
    sample, flat, dark = _sweep(energies_ev, rng)
    acc = SweepAccumulator(energies_ev, (8, 8), CFG)
    acc.add_dark(dark)
    for i, e in enumerate(energies_ev):
        acc.add_flat(flat[i], e)
        acc.add_frame(sample[i], e)
    first = acc.finish()
    kept = first.valence.copy()
    second = acc.finish()
    _assert_same(first, second)
    acc.add_frame(sample[-1], energies_ev[-1])  # a duplicate after finishing
    third = acc.finish()
    np.testing.assert_array_equal(first.valence, kept)
    assert acc.report["duplicates"] == [float(energies_ev[-1])]
    assert np.isfinite(third.valence[third.mask]).all()


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="a memory count, minutes without JIT")
def test_corrected_frames_are_not_kept(energies_ev, rng):
    """Held memory: raw sums, weighted sums and the read-out block, not one corrected
    absorbance and variance per energy (2.2 GB a sweep at 2048x2048)."""
    import tracemalloc

    shape = (64, 64)
    sample, flat, dark = _sweep(energies_ev, rng, shape=shape)
    frame_bytes = shape[0] * shape[1] * 4

    def feed() -> SweepAccumulator:
        acc = SweepAccumulator(energies_ev, shape, CFG)
        acc.add_dark(dark)
        for i, e in enumerate(energies_ev):
            acc.add_flat(flat[i], e)
            acc.add_frame(sample[i], e)
        acc.add_dark(dark)  # a late dark takes every contribution out and back in
        return acc

    feed()  # kernels compiled or loaded from the cache before the count starts
    tracemalloc.start()
    try:
        acc = feed()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    n_e = energies_ev.size
    n_blk = acc.plan.blk_hi - acc.plan.blk_lo
    # float32 sample and flat sums per energy, the block (mu and var), the sums.
    expected = frame_bytes * (2 * n_e + 2 * n_blk + acc._acc.shape[1] + 8)
    assert held < expected + 2 * n_e * frame_bytes // 4
    maps = acc.finish()
    _assert_same(maps, _batch(energies_ev, sample, flat, dark))
