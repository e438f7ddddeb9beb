import json
import threading
import time

import numpy as np
import pytest
from bluesky import RunEngine

from thermoxanes.analysis.maps import XanesMaps
from thermoxanes.plans.xanes import xanes_sweep
from thermoxanes.streaming.analysis_service import AnalysisService
from thermoxanes.streaming.protocol import MapUpdateMessage
from thermoxanes.streaming.publisher import Publisher
from thermoxanes.streaming.subscriber import Subscriber


def _serve(service, tmp_path, max_sweeps):
    ready = tmp_path / "ready"
    thread = threading.Thread(target=service.run, kwargs=dict(
        max_sweeps=max_sweeps, idle_timeout_s=30, ready_file=ready), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not ready.exists():
        assert time.monotonic() < deadline, "service never received a message"
        time.sleep(0.05)
    return thread


@pytest.mark.system
def test_service_fits_sweeps_and_flags_lost_frames(beamline, short_grid, tmp_path):
    lost = set()

    def lookup(datum_id):
        return None if datum_id in lost else beamline.camera.frame_lookup(datum_id)

    publisher = Publisher("tcp://127.0.0.1:*", frame_lookup=lookup,
                          header_keys=beamline.header_keys)
    service = AnalysisService(publisher.endpoint, tmp_path / "out",
                              maps_endpoint="tcp://127.0.0.1:*")
    maps_sub = Subscriber(service.map_publisher.endpoint)
    try:
        thread = _serve(service, tmp_path, max_sweeps=2)
        RE = RunEngine({})
        RE.subscribe(publisher)
        RE(xanes_sweep(beamline.camera, beamline.mono, beamline.sample_x, beamline.shutter,
                       short_grid, readables=beamline.frame_readables, n_darks=2,
                       md={"sweep_index": 0, "series_uid": "s"}))

        # second sweep: the frame at the 5th energy never reaches the wire
        def drop_fifth(name, doc):
            if name == "event" and doc["data"].get("mono_energy_ev") == short_grid[4]:
                lost.add(doc["data"]["camera_image"])
        RE.subscribe(drop_fifth)  # runs after the camera read, before the publisher sends
        RE.unsubscribe(0)
        RE.subscribe(publisher)
        RE(xanes_sweep(beamline.camera, beamline.mono, beamline.sample_x, beamline.shutter,
                       short_grid, readables=beamline.frame_readables, n_darks=2,
                       md={"sweep_index": 1, "series_uid": "s"}))
        publisher.flush(10)
        thread.join(60)
        assert not thread.is_alive()
        updates = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not updates:
            message = maps_sub.recv(timeout_s=0.2)
            if isinstance(message, MapUpdateMessage):
                updates.append(message)
    finally:
        publisher.close()
        maps_sub.close()

    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["sweeps"]
    assert [s["sweep_index"] for s in summary] == [0, 1]
    first, second = summary
    assert first["complete"] is True
    assert first["n_frames"] == 2 + 2 * short_grid.size
    assert 2.0 < first["mean_valence"] < 4.0
    assert first["temperature_c"] == pytest.approx(25.0, abs=2.0)
    maps = XanesMaps.from_hdf5(tmp_path / "out" / first["maps_file"])
    assert maps.valence.shape == (32, 32)
    assert maps.mask.sum() == first["n_pixels"] > 0
    # the incomplete sweep is reported, not fitted
    assert second["complete"] is False
    assert "8330" in second["problem"]
    assert not (tmp_path / "out" / "maps" / "sweep_001.h5").exists()
    # a map update was published for the fitted sweep
    assert updates, "no map update received"
    arrays = updates[0].arrays
    np.testing.assert_array_equal(arrays["valence"], maps.valence)
    assert updates[0].header["sweep_index"] == 0
    # with its full-resolution histogram, named for late joiners' snapshots
    assert updates[0].header["summary_arrays"] == ["valence_histogram",
                                                   "valence_histogram_edges"]
    counts, _ = np.histogram(maps.valence[maps.mask & np.isfinite(maps.valence)],
                             bins=arrays["valence_histogram_edges"])
    np.testing.assert_array_equal(arrays["valence_histogram"], counts)
    assert (tmp_path / "out" / "figures" / "valence_sweep_000.png").stat().st_size > 1000


def _pump(service, until, timeout_s=60.0):
    """Receive and handle messages in this thread until ``until()`` or the deadline."""
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, "timed out waiting for the service"
        message = service.subscriber.recv(timeout_s=0.2)
        if message is not None:
            service.handle(message)


@pytest.mark.system
def test_corrupt_frames_flagged_masked_and_safe_state_run_not_fitted(beamline, short_grid,
                                                                     tmp_path):
    from thermoxanes.plans.heating import HeatingProgram, Hold, heating_series

    publisher = Publisher("tcp://127.0.0.1:*", frame_lookup=beamline.camera.frame_lookup,
                          header_keys=beamline.header_keys)
    service = AnalysisService(publisher.endpoint, tmp_path / "out", figures=False)
    try:
        _pump(service, lambda: service.messages > 0)  # subscription live (heartbeat)
        camera = beamline.camera
        RE = RunEngine({})
        RE.subscribe(publisher)

        # after the sample frame at the 4th energy, corrupt the next sample frame:
        # sweep 0 a band of rows, sweep 1 the whole frame
        schedule = {0: "rows", 1: "zeros"}
        counts = {}

        def arm(name, doc):
            if name == "start" and doc.get("sweep_index") in schedule:
                counts["kind"] = schedule[doc["sweep_index"]]
            elif name == "event" and counts.get("kind") and doc["data"].get(
                    "mono_energy_ev") == short_grid[3] and camera.frame_type.get() == "data":
                camera.inject_corrupt_frames(1, kind=counts.pop("kind"))

        RE.subscribe(arm)
        RE(heating_series(camera, beamline.mono, beamline.sample_x, beamline.shutter,
                          beamline.heater, beamline.clock, HeatingProgram((Hold(1.0, 2),)),
                          short_grid, n_darks=1, md={"profile": "sim"}))
        publisher.flush(10)
        _pump(service, lambda: len(service.summary) == 2 and service.other_runs)
    finally:
        service.close()
        publisher.close()

    first, second = service.summary
    assert first["complete"] is True
    (bad,) = first["corrupt_frames"]
    assert bad["action"] == "masked" and bad["n_rows"] == 8
    maps = XanesMaps.from_hdf5(tmp_path / "out" / first["maps_file"])
    assert not maps.mask[10:18].any()  # the corrupt rows are masked ...
    assert maps.mask[:8].any()  # ... the others fitted
    assert second["corrupt_frames"][0]["action"] == "dropped"
    assert second["complete"] is False and "corrupt frame" in second["problem"]
    assert second["maps_file"]  # fitted on the energies present
    (safe,) = service.other_runs
    assert safe["exit_path"] == "completed" and safe["safe_action_done"] is True
    assert safe["data"]["heater_setpoint_c"] == 25.0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(summary["sweeps"]) == 2 and summary["heater_safe_state"][0]["exit_path"]


def test_restarted_service_appends_to_the_summary_it_finds(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps(
        {"sweeps": [{"sweep_index": 0, "complete": True}],
         "heater_safe_state": [{"run_uid": "x", "exit_path": "abort"}]}))
    service = AnalysisService("tcp://127.0.0.1:1", out, figures=False)
    try:
        assert service.summary == [{"sweep_index": 0, "complete": True}]
        assert service.fitted_here == 0
        service._record({"sweep_index": 2, "complete": True})
    finally:
        service.close()
    content = json.loads((out / "summary.json").read_text())
    assert [s["sweep_index"] for s in content["sweeps"]] == [0, 2]
    assert content["heater_safe_state"][0]["exit_path"] == "abort"
    # an unreadable summary is kept aside, never silently overwritten
    (out / "summary.json").write_text("{not json")
    service = AnalysisService("tcp://127.0.0.1:1", out, figures=False)
    service.close()
    assert service.summary == []
    assert list(out.glob("summary.unreadable-*.json"))
