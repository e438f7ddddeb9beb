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
