import numpy as np
import pytest

from thermoxanes.simulators.beam import DriftParams
from thermoxanes.simulators.world import SimWorld


@pytest.fixture(scope="module")
def world256():
    return SimWorld.from_preset("nmc622-gravel", size=256, seed=5)


def test_flat_field_statistics(world256):
    flat = world256.render_frame(8300.0, exposure_s=0.3, sample_in=False).astype(float)
    p1, p99 = np.percentile(flat, [1, 99])
    assert 1250 < flat.mean() < 1450
    assert 280 < p1 < 480
    assert 2200 < p99 < 2650


def test_frame_to_frame_noise_in_flats(world256):
    a = world256.render_frame(8300.0, exposure_s=0.3, sample_in=False).astype(float)
    b = world256.render_frame(8300.0, exposure_s=0.3, sample_in=False).astype(float)
    dark = world256.render_frame(8300.0, exposure_s=0.3, shutter_open=False).astype(float)
    rel = np.std((a - b) / np.sqrt(2)) / np.mean(a - dark)
    assert 0.008 < rel < 0.03  # ~1.5 % in real flats


def test_hot_pixels_and_saturation(world256):
    dark = world256.render_frame(8300.0, exposure_s=1.0, shutter_open=False)
    hot = dark > 300
    assert 0 < hot.sum() < 0.001 * dark.size
    long = world256.render_frame(8300.0, exposure_s=30.0, sample_in=False)
    assert long.max() == 65535


def test_dose_scales_counts_and_noise():
    lo = SimWorld.from_preset("nmc622-gravel", size=64, seed=0, dose=1.0)
    hi = SimWorld.from_preset("nmc622-gravel", size=64, seed=0, dose=4.0)
    a = lo.render_frame(8300.0, exposure_s=0.3, sample_in=False).astype(float) - 100
    b = hi.render_frame(8300.0, exposure_s=0.3, sample_in=False).astype(float) - 100
    assert b.mean() / a.mean() == pytest.approx(4.0, rel=0.03)


def test_drift_truth_matches_image_shift():
    from scipy.ndimage import center_of_mass

    w = SimWorld.from_preset(
        "nmc622-gravel", size=128, seed=2, drift=DriftParams(sample_wander_um=0.6)
    )
    e = np.array([8400.0])
    a = w.truth(e)
    w.heater.setpoint_c = 120.0
    w.advance(2400.0)
    b = w.truth(e)
    expected = b["shift_px"] - a["shift_px"]
    assert np.abs(expected).max() > 0.5
    # Geometry only (valence moved too): the thickness maps move by exactly the shift.
    measured = np.subtract(center_of_mass(b["thickness_um"]), center_of_mass(a["thickness_um"]))
    np.testing.assert_allclose(measured, expected, atol=0.02)


def test_frame_info_and_magnification(world256):
    world256.render_frame(8200.0, exposure_s=0.3)
    lo = world256.last_frame
    world256.render_frame(8630.0, exposure_s=0.3)
    hi = world256.last_frame
    assert hi.magnification > lo.magnification
    assert lo.energy_ev == 8200.0 and lo.sample_in and lo.shutter_open
    assert len(lo.shift_px) == 2


def test_sample_stage_moves_image():
    w = SimWorld.from_preset("nmc622-gravel", size=96, seed=0)
    a = w.truth()["thickness_um"]
    b = w.truth(sample_xy_um=(4 * w.pixel_size_um, 0.0))["thickness_um"]
    np.testing.assert_allclose(b[:, 10:-10], a[:, 6:-14], atol=1e-3)


def test_rotation_sees_a_3d_object():
    w = SimWorld.from_preset("nmc622-gravel", size=96, seed=1)
    px2 = w.pixel_size_um**2
    views = {t: w.truth(theta_deg=t)["thickness_um"] for t in (0.0, 37.0, 90.0)}
    volumes = {t: v.sum() * px2 for t, v in views.items()}
    # The projected NMC volume is conserved under rotation...
    for t in (37.0, 90.0):
        assert volumes[t] == pytest.approx(volumes[0.0], rel=0.05)
    # ...while the image changes (particles at different depths move sideways).
    r = np.corrcoef(views[0.0].ravel(), views[90.0].ravel())[0, 1]
    assert r < 0.8
    frame = w.render_frame(8350.0, exposure_s=0.3, theta_deg=90.0)
    assert frame.shape == (96, 96)


def test_hollow_particles_are_thinner_in_the_middle():
    w = SimWorld.from_preset("nmc442-hollow", size=128, seed=0)
    t = w.truth()["thickness_um"]
    px = w.pixel_size_um
    checked = 0
    for vol in w.sample.particles:
        x, y, _ = vol.spec.center_um
        r = int(round(64 + y / px - 0.5))
        c = int(round(64 + x / px - 0.5))
        ring = t[max(r - 12, 0):r + 13, max(c - 12, 0):c + 13].max()
        assert t[r, c] < 0.8 * ring
        checked += 1
    assert checked >= 2


@pytest.mark.parametrize("exposure_s", [0.002, 0.3])
def test_noise_variance_matches_counting_statistics(exposure_s):
    w = SimWorld.from_preset("nmc622-gravel", size=128, seed=9)
    d = w.detector
    frames = [w.render_frame(8300.0, exposure_s=exposure_s, sample_in=False).astype(float)
              for _ in range(2)]
    signal = (frames[0] + frames[1]) / 2 - d.dark_offset_adu
    keep = w.dark_rate_adu_per_s < 10  # no hot pixels
    var = np.var((frames[0] - frames[1])[keep]) / 2
    expected = np.mean(signal[keep]) / d.photons_per_adu + d.read_noise_adu**2 + 1 / 12
    assert var == pytest.approx(expected, rel=0.1)
