"""System tests over Channel Access: the simulated IOC in a subprocess, ophyd/pyepics here.

One IOC (32x32 frames, clock at 120x wall time) serves every test of this module on a
private port (``tests/devices/ca_env.py``).
"""

from __future__ import annotations

import time

import h5py
import numpy as np
import pytest

from tests.devices.ca_env import SERVER_PORTS, start_ioc, stop_ioc

pytestmark = pytest.mark.system

SPEED = 120.0


@pytest.fixture(scope="module")
def ioc(tmp_path_factory):
    log = tmp_path_factory.mktemp("ioc") / "ioc.log"
    proc = start_ioc(["-m", "thermoxanes.cli", "ioc", "--profile", "sim-epics", "--size", "32",
                      "--seed", "1", "--speed", str(SPEED)],
                     SERVER_PORTS[0], "TXS:CLOCK:Time-I", log)
    yield proc
    stop_ioc(proc)


@pytest.fixture(scope="module")
def beamline(ioc, tmp_path_factory):
    from thermoxanes.profiles.beamline import build_epics_beamline
    from thermoxanes.profiles.schema import load_profile

    profile = load_profile("sim-epics")
    line = build_epics_beamline(profile, tmp_path_factory.mktemp("raw"), speed=SPEED)
    line.wait_for_connection(10.0)
    return line


def test_every_device_through_pyepics(beamline):
    import epics
    from bluesky.protocols import Movable, Readable

    bl = beamline
    for dev in bl.devices.values():
        assert isinstance(dev, Readable), dev.name
        assert dev.read()
    for dev in (bl.mono, bl.sample_x, bl.shutter, bl.heater, bl.clock, bl.rotation):
        assert isinstance(dev, Movable), dev.name

    # focusing monochromator: three motors together, to the lens-equation positions
    bl.mono.set(8350.0).wait(20)
    zp_mm, det_mm = bl.mono.calibration.positions_mm(8350.0)
    assert epics.caget("TXS:MONO:Energy.RBV") == pytest.approx(8350.0, abs=1e-3)
    assert epics.caget("TXS:ZP:Z.RBV") == pytest.approx(zp_mm, abs=1e-3)
    assert epics.caget("TXS:DET:Z.RBV") == pytest.approx(det_mm, abs=1e-3)
    assert bl.mono.read()["mono_energy_ev"]["value"] == pytest.approx(8350.0, abs=1e-3)

    # motors: ophyd and plain pyepics
    bl.sample_x.set(150.0).wait(20)
    assert epics.caget("TXS:SAMPLE:X.RBV") == pytest.approx(150.0)
    assert epics.caput("TXS:SAMPLE:X", 0.0, wait=True, timeout=20) == 1   # completes at the end
    assert epics.caget("TXS:SAMPLE:X.RBV", use_monitor=False) == 0.0
    assert epics.caget("TXS:SAMPLE:X.DMOV", use_monitor=False) == 1
    bl.rotation.set(12.5).wait(20)
    assert bl.rotation.read()["rotation"]["value"] == pytest.approx(12.5)
    bl.rotation.set(0.0).wait(20)

    # shutter
    bl.shutter.set("close").wait(10)
    assert not bl.shutter.is_open and epics.caget("TXS:SHUTTER:Pos-Sts") == 0
    bl.shutter.set("open").wait(10)
    assert bl.shutter.is_open

    # ring current and clock (simulated seconds)
    assert 100.0 < bl.ring.read()["ring_current_ma"]["value"] < 1000.0
    t0 = bl.clock.position
    start = time.monotonic()
    bl.clock.set(30.0).wait(10)
    assert bl.clock.position >= t0 + 30.0
    assert time.monotonic() - start < 30.0 / SPEED + 2.0

    # camera: one frame into a file, its Resource and Datum
    bl.camera.stage()
    try:
        bl.camera.frame_type.put("flat")
        bl.camera.trigger().wait(10)
        docs = list(bl.camera.collect_asset_docs())
    finally:
        bl.camera.unstage()
    assert [d[0] for d in docs] == ["resource", "datum"]
    path = docs[0][1]["resource_path"]
    assert epics.caget("TXS:CAM:HDF1:FullFileName_RBV", as_string=True) == path
    with h5py.File(path, "r") as f:
        assert f["/entry/data/data"].shape == (1, 32, 32)
        np.testing.assert_array_equal(f["/entry/data/data"][0], bl.camera.last_frame())
    assert epics.caget("TXS:CAM:image1:ArrayData").size == 32 * 32


@pytest.mark.parametrize("model,prefix", [("eurotherm2216e", "TXS:ET2216:"),
                                          ("linkam_t96", "TXS:T96:"),
                                          ("lakeshore336", "TXS:LS336:")])
def test_heater_models_settle(ioc, model, prefix):
    from thermoxanes.devices.connection import wait_for_connection
    from thermoxanes.devices.temperature import CONTROLLER_CLASSES

    heater = CONTROLLER_CLASSES[model](prefix, name=f"h_{model}", time_scale=1.0 / SPEED)
    wait_for_connection([heater], 10.0)
    heater.settle_s.put(10.0)
    heater.tolerance_c.put(1.5)
    heater.max_ramp_rate_c_per_min.put(60.0)
    heater.ramp_rate_c_per_min.set(30.0).wait(5)
    target = round(heater.position) + 8.0
    start = time.monotonic()
    heater.set(target).wait(60)
    assert abs(heater.position - target) <= 1.5
    assert heater.setpoint_c.get() == pytest.approx(target)
    assert time.monotonic() - start < 30.0
    heater.set(25.0).wait(60)


def test_limits_refused_before_anything_moves(beamline):
    from ophyd.utils import LimitError

    bl = beamline
    before = (bl.mono.dcm_energy.position, bl.mono.zoneplate_z_mm.position)
    with pytest.raises(LimitError, match="energy 20000.0 eV outside"):
        bl.mono.set(20000.0)
    time.sleep(0.2)
    assert (bl.mono.dcm_energy.position, bl.mono.zoneplate_z_mm.position) == before
    with pytest.raises(LimitError):
        bl.sample_x.set(1e6)
    setpoint = bl.heater.setpoint_c.get()
    with pytest.raises(LimitError, match="setpoint 1000.0 C outside"):
        bl.heater.set(1000.0)
    with pytest.raises(LimitError, match="ramp rate"):
        bl.heater.ramp_rate_c_per_min.set(500.0)
    assert bl.heater.setpoint_c.get() == setpoint


def test_profile_channel_access_timeouts_applied(ioc, tmp_path):
    from thermoxanes.profiles.beamline import build_epics_beamline
    from thermoxanes.profiles.schema import load_profile

    profile = load_profile("sim-epics")
    ep = profile.epics
    ep.read_timeout_s, ep.reconnect_timeout_s, ep.write_timeout_s = 3.0, 1.5, 7.0
    ep.move_timeout_margin_s = 12.0
    line = build_epics_beamline(profile, tmp_path)
    for signal in (line.camera.file_path, line.heater.setpoint_c, line.shutter.status,
                   line.mono.zoneplate_z_mm.user_setpoint, line.ring.current_ma):
        assert (signal.timeout, signal.connection_timeout, signal.write_timeout) == (
            3.0, 1.5, 7.0), signal.name
    motors = [*line.mono.real_positioners, line.sample_stage.x, line.rotation]
    assert {m.move_timeout_margin_s for m in motors} == {12.0}


def test_unreachable_pv_named_within_timeout(ioc, tmp_path):
    from thermoxanes.devices import PVConnectionError
    from thermoxanes.profiles.beamline import build_epics_beamline
    from thermoxanes.profiles.schema import load_profile

    profile = load_profile("sim-epics")
    profile.epics.ring_current = "TXS:NO:SUCH:PV"
    line = build_epics_beamline(profile, tmp_path)
    start = time.monotonic()
    with pytest.raises(PVConnectionError, match="TXS:NO:SUCH:PV"):
        line.wait_for_connection(1.0)
    assert time.monotonic() - start < 5.0


def _run(plan, *callbacks):
    from bluesky import RunEngine

    RE = RunEngine({})
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    for callback in callbacks:
        RE.subscribe(callback)
    RE(plan)
    return docs


def test_xanes_sweep_over_channel_access(ioc, tmp_path):
    from thermoxanes.plans.xanes import xanes_sweep
    from thermoxanes.profiles.beamline import build_epics_beamline
    from thermoxanes.profiles.schema import load_profile
    from thermoxanes.storage.catalog import EmbeddedCatalog

    energies = [8300.0, 8340.0, 8350.0, 8400.0]
    catalog = EmbeddedCatalog(tmp_path / "catalog")
    try:
        bl = build_epics_beamline(load_profile("sim-epics"), catalog.raw_dir, speed=SPEED)
        bl.wait_for_connection(10.0)
        docs = _run(xanes_sweep(bl.camera, bl.mono, bl.sample_x, bl.shutter, energies,
                                readables=bl.frame_readables, n_darks=2, n_flats=1,
                                sample_out_offset_um=2000.0, md={"profile": "sim-epics"}),
                    catalog.writer(batch_size=1))
        run = catalog.runs.values()[-1]      # TiledWriter read the frames from our files
        shapes = {s: run[s]["camera_image"].read().shape for s in ("dark", "flat", "primary")}
    finally:
        catalog.close()
    assert shapes == {"dark": (2, 32, 32), "flat": (4, 32, 32), "primary": (4, 32, 32)}
    names = [n for n, _ in docs]
    assert names[0] == "start" and names[-1] == "stop"
    assert docs[-1][1]["exit_status"] == "success"
    descriptors = {d["uid"]: d["name"] for n, d in docs if n == "descriptor"}
    events = [d for n, d in docs if n == "event"]
    by_stream = {s: [e for e in events if descriptors[e["descriptor"]] == s]
                 for s in ("dark", "flat", "primary")}
    assert [len(by_stream[s]) for s in ("dark", "flat", "primary")] == [2, 4, 4]
    energies_read = [e["data"]["mono_energy_ev"] for e in by_stream["primary"]]
    assert energies_read == pytest.approx(energies, abs=1e-3)
    assert all("heater_temperature_c" in e["data"] for e in events)
    resources = {d["uid"]: d for n, d in docs if n == "resource"}
    datums = {d["datum_id"]: d for n, d in docs if n == "datum"}
    frames = {}
    for stream, evs in by_stream.items():
        frames[stream] = []
        for e in evs:
            datum = datums[e["data"]["camera_image"]]
            path = resources[datum["resource"]]["resource_path"]
            with h5py.File(path, "r") as f:
                frames[stream].append(f["/entry/data/data"][datum["datum_kwargs"]["point_number"]])
    for e in by_stream["primary"]:                # the live publisher's frame source
        assert bl.camera.frame_lookup(e["data"]["camera_image"]).shape == (32, 32)
    dark, flat, data = (np.mean(frames[s]) for s in ("dark", "flat", "primary"))
    assert dark < 0.5 * flat
    assert data < flat            # the sample absorbs


def test_heating_program_over_channel_access(beamline):
    from thermoxanes.plans.heating import HeatingProgram, Hold, Ramp, heating_series

    bl = beamline
    bl.heater.settle_s.put(20.0)
    program = HeatingProgram((Ramp(35.0, 60.0), Hold(60.0, sweeps=1)))
    docs = _run(heating_series(bl.camera, bl.mono, bl.sample_x, bl.shutter, bl.heater,
                               bl.clock, program, [8330.0, 8345.0, 8360.0],
                               readables=[bl.rotation, bl.ring], n_darks=1, n_flats=1,
                               safe_temperature_c=25.0))
    starts = [d for n, d in docs if n == "start" and d.get("plan_name") == "xanes_sweep"]
    assert [s["sweep_index"] for s in starts] == [0]
    assert starts[0]["setpoint_c"] == pytest.approx(35.0)
    events = [d for n, d in docs if n == "event" and "camera_image" in d["data"]]
    temps = [d["data"]["heater_temperature_c"] for d in events]
    assert np.mean(temps) == pytest.approx(35.0, abs=2.0)
    clock = [d["data"]["clock_time_s"] for d in events]
    assert clock == sorted(clock)
    assert bl.heater.setpoint_c.get() == pytest.approx(25.0)   # sent safe at the end


def test_cli_run_over_channel_access(ioc, tmp_path, capsys):
    from thermoxanes.cli import main

    rc = main(["run", "xanes", "--profile", "sim-epics", "--energies", "8330,8350",
               "--n-darks", "1", "--out", str(tmp_path / "out"), "--no-catalog"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "1 run(s)" in out and "success" in out
    assert len(list((tmp_path / "out" / "raw").glob("*.h5"))) == 5   # dark + 2x(flat, data)


def test_cli_run_heating_program_over_channel_access(ioc, tmp_path, capsys):
    from thermoxanes.cli import main

    program = tmp_path / "program.toml"
    program.write_text('segments = [{kind = "ramp", target_c = 32, rate_c_per_min = 60},\n'
                       '            {kind = "hold", duration_s = 30, sweeps = 1}]\n')
    rc = main(["run", "heating", "--profile", "sim-epics", "--program", str(program),
               "--energies", "8330,8350", "--n-darks", "1", "--out", str(tmp_path / "out"),
               "--no-catalog"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "(xanes_sweep)" in out and "(heater_safe_state)" in out


def test_cli_run_unreachable_pv_exits_2(ioc, tmp_path, capsys):
    from importlib import resources

    from thermoxanes.cli import main

    text = (resources.files("thermoxanes.profiles") / "sim-epics.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('rotation = "TXS:ROT:Theta"', 'rotation = "TXS:ROT:Nope"'))
    start = time.monotonic()
    rc = main(["run", "xanes", "--profile", str(bad), "--energies", "8330,8350",
               "--out", str(tmp_path / "out"), "--no-catalog", "--connection-timeout-s", "1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "TXS:ROT:Nope" in err and len(err.strip().splitlines()) == 1
    assert time.monotonic() - start < 10


def _time_to_error(action):
    """(seconds, exception) of ``action``, which must fail."""
    t0 = time.monotonic()
    try:
        action()
    except Exception as exc:  # any error, as long as it comes and names a PV
        return time.monotonic() - t0, exc
    return time.monotonic() - t0, None


@pytest.mark.timeout(90, method="signal")
def test_zz_ioc_gone_errors_do_not_hang(ioc, beamline):
    """Last in this module: kill the IOC while the mono, the heater and the clock are busy.
    Those statuses fail at once; then every verb (set, read, stage, a plan) fails within a
    bounded time, each with an error naming a PV. (Before: the energy move waited for its
    motors' move timeouts, 5x the expected move time + 30 s, then reported success.)"""
    from ophyd.utils.errors import RedundantStaging

    from thermoxanes.plans.xanes import xanes_sweep

    bl = beamline
    bl.mono.dcm_energy.velocity.set(0.5).wait(5)     # 0.5 eV/s: a move that lasts
    target = 8600.0 if bl.mono.position.energy_ev < 8450.0 else 8300.0
    bl.camera.stage()                                 # staged when the IOC dies
    busy = {"mono.set (in flight)": bl.mono.set(target),
            "heater.set (in flight)": bl.heater.set(60.0),
            "clock.set (in flight)": bl.clock.set(3600.0)}
    deadline = time.monotonic() + 10.0
    while not bl.mono.dcm_energy.moving and time.monotonic() < deadline:
        time.sleep(0.05)
    assert bl.mono.dcm_energy.moving and not any(st.done for st in busy.values())
    ioc.kill()
    ioc.wait(timeout=10)
    killed = time.monotonic()
    results = {}
    for name, status in busy.items():       # seconds counted from the kill
        exc = _time_to_error(lambda status=status: status.wait(30))[1]
        results[name] = (time.monotonic() - killed, exc)
    verbs = {
        "camera.unstage": bl.camera.unstage,          # fails, but leaves it unstaged ...
        "camera.stage": bl.camera.stage,              # ... so this names a PV, not staging
        "mono.set": lambda: bl.mono.set(8400.0).wait(30),
        "sample_x.set": lambda: bl.sample_x.set(10.0).wait(30),
        "rotation.set": lambda: bl.rotation.set(5.0).wait(30),
        "shutter.set": lambda: bl.shutter.set("close").wait(30),
        "heater.set": lambda: bl.heater.set(30.0).wait(30),
        "heater ramp rate set": lambda: bl.heater.ramp_rate_c_per_min.set(5.0).wait(30),
        "clock.set": lambda: bl.clock.set(10.0).wait(30),
        "xanes_sweep (RunEngine)": lambda: _run(xanes_sweep(
            bl.camera, bl.mono, bl.sample_x, bl.shutter, [8300.0, 8350.0], n_darks=1)),
    }
    for role in ("mono", "sample_stage", "rotation", "shutter", "heater", "ring", "clock"):
        verbs[f"{role}.read"] = getattr(bl, role).read
    for name, verb in verbs.items():
        results[name] = _time_to_error(verb)
    for name, (seconds, exc) in results.items():
        print(f"IOC gone: {name}: {seconds:.2f} s: {type(exc).__name__}: {exc}")
    assert not isinstance(results["camera.stage"][1], RedundantStaging)
    for name, (seconds, exc) in results.items():
        assert exc is not None, f"{name} did not fail with the IOC gone"
        assert seconds < 30.0, (name, seconds, exc)
        assert "TXS:" in str(exc), (name, exc)          # names the PV
    assert time.monotonic() - killed < 80.0
