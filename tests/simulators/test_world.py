import numpy as np
import pytest

from thermoxanes.simulators.clock import SimClock
from thermoxanes.simulators.world import SimWorld


def test_clock_is_virtual():
    c = SimClock(start_s=5.0)
    assert c.now() == 5.0
    c.advance(2.5)
    c.sleep(1.0)
    assert c.now() == 8.5
    with pytest.raises(ValueError):
        c.advance(-1)


def test_presets_listed():
    names = SimWorld.presets()
    for name in ("nmc622-gravel", "nmc622-rod", "nmc442-hollow"):
        assert name in names


def test_render_shapes_and_kinds(small_world):
    w = small_world
    assert w.frame_shape == (96, 96)
    img = w.render_frame(8350.0, exposure_s=0.3)
    flat = w.render_frame(8350.0, exposure_s=0.3, sample_in=False)
    dark = w.render_frame(8350.0, exposure_s=0.3, shutter_open=False)
    assert img.dtype == np.uint16 and img.shape == (96, 96)
    assert 1200 < flat.mean() < 1500
    assert dark.mean() < 120 and np.median(dark) < 110
    assert img.mean() < flat.mean()
    long_flat = w.render_frame(8350.0, exposure_s=0.6, sample_in=False)
    assert long_flat.mean() == pytest.approx(2 * flat.mean() - dark.mean(), rel=0.02)


def test_render_does_not_advance_time(small_world):
    t0 = small_world.clock.now()
    small_world.render_frame(8340.0, exposure_s=0.1)
    small_world.truth()
    assert small_world.clock.now() == t0


def test_deterministic_under_seed():
    a = SimWorld.from_preset("nmc622-rod", size=48, seed=3)
    b = SimWorld.from_preset("nmc622-rod", size=48, seed=3)
    c = SimWorld.from_preset("nmc622-rod", size=48, seed=4)
    fa = a.render_frame(8345.0, exposure_s=0.3)
    fb = b.render_frame(8345.0, exposure_s=0.3)
    fc = c.render_frame(8345.0, exposure_s=0.3)
    np.testing.assert_array_equal(fa, fb)
    assert not np.array_equal(fa, fc)
    np.testing.assert_array_equal(a.truth()["valence"], b.truth()["valence"])
    # A Generator passed in gives the same world as its seed.
    d = SimWorld(a.preset, 48, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(d.render_frame(8345.0, exposure_s=0.3), fa)


def test_truth_keys_and_ranges(small_world):
    tr = small_world.truth(energies_ev=np.array([8300.0, 8400.0]))
    for key in ("valence", "thickness_um", "edge_energy", "whiteline_energy", "shift_px",
                "calibration_shift_ev", "absorbance", "mask"):
        assert key in tr
    v = tr["valence"]
    assert v.shape == (96, 96) and v.dtype == np.float32
    assert np.isnan(v[~tr["mask"]]).all()
    assert 3.0 < np.nanmean(v) < 3.8
    assert 8349.0 < np.nanmean(tr["whiteline_energy"]) < 8352.0
    assert 8341.0 < np.nanmean(tr["edge_energy"]) < 8344.0
    assert tr["shift_px"].shape == (2,)
    # Edge jump of a particle: ~0.2 OD at the thickest point.
    jump = tr["absorbance"][1] - tr["absorbance"][0]
    assert 0.1 < jump.max() < 0.4


def test_shared_clock_is_followed():
    clock = SimClock()
    w = SimWorld.from_preset("nmc622-gravel", size=32, seed=0, clock=clock)
    w.heater.setpoint_c = 100.0
    clock.advance(1800.0)
    assert w.heater.temperature_c > 90.0
    assert w.truth()["time_s"] == 1800.0


def test_valence_falls_on_heating():
    w = SimWorld.from_preset("nmc622-gravel", size=48, seed=2)
    v0 = np.nanmean(w.truth()["valence"])
    w.heater.setpoint_c = 200.0
    w.advance(3 * 3600.0)
    v1 = np.nanmean(w.truth()["valence"])
    assert v1 < v0 - 0.5
    w.heater.output_on = False
    w.advance(3600.0)
    assert w.heater.temperature_c < 60.0
    # Reduction is irreversible on cooling.
    assert np.nanmean(w.truth()["valence"]) == pytest.approx(v1, abs=0.02)


def test_ring_current_tops_up(small_world):
    w = SimWorld.from_preset("nmc622-gravel", size=16, seed=0)
    currents = []
    for _ in range(200):
        currents.append(w.ring_current_ma())
        w.advance(5.0)
    currents = np.array(currents)
    assert 395 < currents.min() and currents.max() < 402
    assert (np.diff(currents) > 0.5).any()  # a top-up happened


def test_projection_matches_the_3d_volume():
    w = SimWorld.from_preset("nmc622-gravel", size=64, seed=0)
    w.heater.setpoint_c = 160.0
    w.advance(3600.0)
    s = w.sample
    proj = s.project(0.0)
    c = s.chemistry.state.c
    ni_v_voxels = 0.0
    ni_voxels = 0.0
    for i, vol in enumerate(s.particles):
        v = s.valence_volume(i)
        solid = vol.solid(c)
        ni_v_voxels += float(np.nansum(v * vol.density * solid))
        ni_voxels += float((vol.density * solid).sum())
    vox = s.voxel_um
    ni_v_proj = float((2 * proj[0] + 3 * proj[1] + 4 * proj[2]).sum()) / vox
    assert ni_v_proj == pytest.approx(ni_v_voxels, rel=1e-3)
    assert float(proj[3].sum()) / vox == pytest.approx(ni_voxels, rel=1e-3)


def test_li_redistribution_conserves_the_mean():
    w = SimWorld.from_preset("nmc622-380c", size=48, seed=0, refresh_tolerance=0.0)
    s = w.sample
    x, a_cos, a_sin, s_red, c, p = s.chemistry.scalars()
    amp = s.chemistry.params.li_amplitude
    means = []
    maps = []
    for phi in (0.0, 1.0, 2.5):
        proj = s.project(0.0, (x, amp * np.cos(phi), amp * np.sin(phi), s_red, c, p))
        ni = proj[:3].sum(axis=0)
        means.append(float((2 * proj[0] + 3 * proj[1] + 4 * proj[2]).sum() / ni.sum()))
        maps.append(proj)
    # Li moves inside the particles: the mean valence stays, the map changes.
    assert np.ptp(means) < 2e-3
    assert np.abs(maps[2][0] - maps[0][0]).max() > 0.01


def test_ring_decay_mode_without_topup():
    from thermoxanes.simulators.beam import RingParams

    w = SimWorld.from_preset("nmc622-gravel", size=16, seed=0,
                             ring=RingParams(topup_period_s=0.0, lifetime_s=3600.0))
    i0 = w.ring_current_ma()
    w.advance(3600.0)
    assert w.ring_current_ma() == pytest.approx(i0 / np.e, rel=1e-6)
