import time

import numpy as np
import pytest
from bluesky.protocols import Movable, Readable, Triggerable

from thermoxanes.optics import focus_positions_mm


def test_devices_satisfy_bluesky_protocols(beamline):
    assert isinstance(beamline.camera, Triggerable) and isinstance(beamline.camera, Readable)
    for device in (beamline.mono, beamline.sample_x, beamline.shutter, beamline.heater,
                   beamline.clock, beamline.rotation):
        assert isinstance(device, Movable), device.name
        assert isinstance(device, Readable), device.name


def test_mono_keeps_focus_and_costs_time(beamline):
    t0 = beamline.world.clock.now()
    beamline.mono.set(8630.0).wait(1)
    p, q = focus_positions_mm(8630.0, beamline.mono.magnification.get())
    assert beamline.mono.zoneplate_z_mm.get() == pytest.approx(p)
    assert beamline.mono.detector_z_mm.get() == pytest.approx(q)
    assert beamline.world.clock.now() > t0
    status = beamline.mono.set(50000.0)
    with pytest.raises(ValueError, match="outside"):
        status.wait(1)
    assert beamline.mono.position == 8630.0  # refused before moving


def test_heater_ramps_at_rate_and_settles(beamline):
    heater, clock = beamline.heater, beamline.world.clock
    heater.ramp_rate_c_per_min.put(10.0)
    t0 = clock.now()
    heater.set(125.0).wait(1)
    elapsed_min = (clock.now() - t0) / 60.0
    assert elapsed_min >= 100.0 / 10.0  # cannot beat the ramp rate
    assert elapsed_min < 100.0 / 10.0 + 20.0
    assert beamline.world.heater.temperature_c == pytest.approx(125.0, abs=1.0)
    with pytest.raises(ValueError, match="outside"):
        heater.set(900.0).wait(1)


def test_camera_frames_depend_on_shutter_and_sample(beamline):
    camera = beamline.camera
    camera.stage()
    try:
        def frame():
            camera.trigger().wait(1)
            return camera.frame_lookup(camera.image.get()).astype(float)

        sample = frame()
        beamline.sample_x.set(2000.0).wait(1)
        flat = frame()
        beamline.shutter.set("close").wait(1)
        dark = frame()
    finally:
        camera.unstage()
    assert dark.mean() < 0.2 * flat.mean()
    assert np.median(sample / flat) < 1.0
    docs = list(camera.collect_asset_docs())
    assert [n for n, _ in docs].count("resource") == 1
    assert [n for n, _ in docs].count("datum") == 3
    assert camera.describe()["camera_image"]["dtype_numpy"] == "<u2"


def test_heater_stop_never_heats_further_and_unstage_goes_safe(beamline):
    heater, world = beamline.heater, beamline.world
    heater.ramp_rate_c_per_min.put(10.0)
    # a ramp heading up, stopped half-way, is frozen at its present target
    world.heater.setpoint_c = 200.0
    world.advance(300.0)  # 5 min at 10 C/min: target ~75 C
    heater.stop(success=True)
    assert world.heater.setpoint_c == pytest.approx(world.heater.target_c)
    assert world.heater.setpoint_c < 100.0
    # a cool-down is left alone
    world.heater.setpoint_c = 25.0
    heater.stop(success=True)
    assert world.heater.setpoint_c == 25.0
    # unstage goes to the safe state, setpoint or output off
    heater.safe_temperature_c.put(30.0)
    world.heater.setpoint_c = 150.0
    heater.stage()
    heater.unstage()
    assert world.heater.setpoint_c == 30.0 and "unstage" in heater.last_safe_action.get()
    heater.safe_state.put("output_off")
    heater.stage()
    heater.unstage()
    assert world.heater.output_on is False and heater.output_on.get() is False
    heater.set(40.0).wait(1)  # a new setpoint switches the output back on
    assert world.heater.output_on is True


def test_heater_refuses_ramp_rate_above_maximum(beamline):
    beamline.heater.ramp_rate_c_per_min.put(50.0)
    with pytest.raises(ValueError, match="ramp rate 50.0"):
        beamline.heater.set(60.0).wait(1)


def test_fault_injection_puts_at_once_and_recovers_in_wall_time(beamline):
    ring, heater = beamline.ring, beamline.heater
    ring.read()
    seen = []
    ring.current_ma.subscribe(lambda value, **kw: seen.append(value), run=False)
    ring.inject_beam_dump(0.2)
    assert ring.beam_dumped and seen[-1] == 0.0
    ring.read()
    assert ring.current_ma.get() == 0.0  # reads stay dumped while it lasts
    deadline = time.monotonic() + 10
    while ring.beam_dumped and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not ring.beam_dumped and seen[-1] > 300.0
    t0 = heater.position
    heater.inject_temperature_offset(50.0, None)
    assert heater.temperature_c.get() == pytest.approx(t0 + 50.0, abs=1.0)
    assert heater.position == pytest.approx(t0 + 50.0, abs=1.0)
    heater.clear_faults()
    assert heater.temperature_c.get() == pytest.approx(t0, abs=1.0)


def test_camera_corrupt_frame_injection(beamline):
    camera = beamline.camera
    camera.inject_corrupt_frames(1, kind="rows")
    camera.trigger().wait(1)
    frame = camera.frame_lookup(camera.image.get())
    zero_rows = (frame == 0).all(axis=1)
    assert zero_rows.sum() == 8 and frame[~zero_rows].min() > 0
    camera.trigger().wait(1)
    assert (camera.frame_lookup(camera.image.get()) > 0).all()  # only the next one
    with pytest.raises(ValueError):
        camera.inject_corrupt_frames(1, kind="melted")


def test_camera_refuses_a_frame_when_the_disk_is_nearly_full(beamline):
    import errno

    import h5py

    camera = beamline.camera
    camera.stage()
    try:
        camera.trigger().wait(1)
        path = camera._file.filename
        camera.min_free_bytes = 1 << 62  # "the disk is full"
        with pytest.raises(OSError, match="disk full") as info:
            camera.trigger()
        assert info.value.errno == errno.ENOSPC and path in str(info.value)
    finally:
        camera.unstage()
        camera.min_free_bytes = type(camera).min_free_bytes
    with h5py.File(path, "r") as fh:  # the frame taken before is intact
        assert fh["/entry/data/data"].shape[0] == 1
