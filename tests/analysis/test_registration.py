"""Sub-pixel registration and the bilinear shift kernel."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tests.analysis.synthetic import synthetic_mu
from thermoxanes.analysis.config import FitConfig
from thermoxanes.analysis.fit import fit_stack
from thermoxanes.analysis.registration import register_stack, shift_frame


def _blob(shape, center, radius):
    yy, xx = np.indices(shape)
    r2 = (yy - center[0]) ** 2 + (xx - center[1]) ** 2
    return np.exp(-r2 / (2 * radius**2))


def test_shift_matches_scipy_inside(rng):
    img = rng.normal(size=(16, 16))
    out = shift_frame(img, (1.3, -2.6))
    want = ndimage.shift(img, (1.3, -2.6), order=1, mode="constant", cval=np.nan)
    inner = (slice(3, 13), slice(1, 12))
    np.testing.assert_allclose(out[inner], want[inner], rtol=1e-10)
    assert np.isnan(out[0]).all() and np.isnan(out[:, -1]).all()
    np.testing.assert_array_equal(shift_frame(img, (0.0, 0.0)), img)


def test_variance_shift_uses_squared_weights():
    var = np.ones((8, 8))
    out = shift_frame(var, (0.5, 0.0), variance=True)
    np.testing.assert_allclose(out[2:6, 2:6], 0.5)


def test_register_low_contrast_stack(energies_ev, rng):
    """Known sub-pixel drifts are found, also on the low-contrast pre-edge frames."""
    shape = (48, 48)
    thickness = 0.3 * _blob(shape, (22, 25), 7) + 0.1 * _blob(shape, (12, 12), 3)
    valence = np.full(shape, 3.0)
    mu = synthetic_mu(energies_ev, valence, thickness, nonresonant=0.3)
    truth = np.zeros((energies_ev.size, 2))
    truth[:, 0] = rng.uniform(-1.5, 1.5, energies_ev.size)
    truth[:, 1] = rng.uniform(-1.5, 1.5, energies_ev.size)
    drifted = np.stack([ndimage.shift(m, s, order=3, mode="nearest") for m, s in zip(mu, truth,
                                                                                     strict=True)])
    drifted += rng.normal(0.0, 0.003, drifted.shape)
    _, _, shifts = register_stack(drifted.astype(np.float32), None, energies_ev, upsample=20)
    # Shifts are relative to the first registered frame (highest energy).
    ref = np.argmax(energies_ev)
    expected = -(truth - truth[ref])
    np.testing.assert_allclose(shifts, expected, atol=0.15)


def test_fit_stack_reports_shifts(energies_ev, rng):
    shape = (24, 24)
    thickness = 0.4 * _blob(shape, (12, 12), 5)
    mu = synthetic_mu(energies_ev, np.full(shape, 2.5), thickness).astype(np.float32)
    mu[20] = ndimage.shift(mu[20], (1.0, 0.0), order=1, mode="nearest")
    maps = fit_stack(mu, energies_ev, FitConfig(register=True))
    assert maps.registration_shifts.shape == (energies_ev.size, 2)
    np.testing.assert_allclose(maps.registration_shifts[20], (-1.0, 0.0), atol=0.1)
    others = np.delete(maps.registration_shifts, 20, axis=0)
    assert np.abs(others).max() < 0.1


def test_frames_without_contrast_keep_last_shift(rng):
    shape = (32, 32)
    energies = np.arange(5.0)
    blob = _blob(shape, (16, 16), 4)
    stack = np.stack([blob, blob, rng.normal(0, 1e-3, shape), blob, blob]).astype(np.float32)
    stack[3] = ndimage.shift(blob, (0.5, 0.0), order=3)
    stack[2] = 0.0  # no contrast at all
    _, _, shifts = register_stack(stack, None, energies)
    np.testing.assert_allclose(shifts[3], (-0.5, 0.0), atol=0.1)
    np.testing.assert_allclose(shifts[2], shifts[3])


def test_running_registration_matches_skimage(rng):
    """The half-spectrum phase correlation gives skimage's shift (same upsampled grid)."""
    from skimage.registration import phase_cross_correlation

    from thermoxanes.analysis.registration import RunningRegistration

    shape = (64, 80)  # even and odd halves differ: W // 2 + 1 columns
    img = ndimage.gaussian_filter(rng.normal(size=shape), 3.0)
    for true_shift in [(1.37, -2.81), (-0.45, 0.6), (3.0, 0.0)]:
        moved = ndimage.shift(img, true_shift, order=3, mode="grid-wrap")
        moved = moved + rng.normal(0.0, 1e-3, shape)
        reg = RunningRegistration(shape, upsample=20)
        reg.shift_for(img)
        got = reg.shift_for(moved)
        want, _, _ = phase_cross_correlation(img - img.mean(), moved - moved.mean(),
                                             upsample_factor=20, normalization=None)
        np.testing.assert_allclose(got, want, atol=0.05 + 1e-9)
        np.testing.assert_allclose(got, -np.asarray(true_shift), atol=0.1)
