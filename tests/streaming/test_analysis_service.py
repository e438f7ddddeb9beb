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
    assert (tmp_path / "out" / "figures" / "valence_sweep_000.png").stat().st_size > 1000
