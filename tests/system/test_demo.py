"""System test: ``thermoxanes demo`` end to end, analysis service in its own process."""

import io
import json
import subprocess
import sys
import time

import numpy as np
import pytest

# Tolerance on the valence map against the simulator truth at 96x96 pixels with the
# default dose: the RMS error per sweep must stay below this (valence units). The
# analysis' own per-pixel sigma there is ~0.1-0.2, so the RMS is noise, not bias.
RMS_TOLERANCE = 0.35
BIAS_TOLERANCE = 0.08


@pytest.mark.system
def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "thermoxanes.cli", "demo", "--size", "96", "--out", str(out)],
        capture_output=True, text=True, timeout=500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "sweep 4 of 4" in result.stdout
    assert "Open the catalog with the tiled client" in result.stdout

    summary = json.loads((out / "analysis" / "summary.json").read_text())["sweeps"]
    assert len(summary) == 4
    assert all(s["complete"] for s in summary)
    temps = [s["temperature_c"] for s in summary]
    np.testing.assert_allclose(temps, [25, 150, 200, 250], atol=3.0)
    valences = [s["mean_valence"] for s in summary]
    assert all(b < a for a, b in zip(valences, valences[1:], strict=False)), valences
    for s in summary:
        assert s["valence_rms_error"] < RMS_TOLERANCE, s
        assert abs(s["valence_bias"]) < BIAS_TOLERANCE, s
        assert s["mean_valence"] == pytest.approx(s["truth_mean_valence"], abs=BIAS_TOLERANCE)
    # the white line moves down on heating (seed 002)
    whitelines = [s["mean_whiteline_energy_ev"] for s in summary]
    assert whitelines[-1] < whitelines[0] - 1.0
    figures = out / "analysis" / "figures"
    assert (figures / "histogram_evolution.png").exists()
    assert len(list(figures.glob("differential_sweep_*.png"))) == 3
    assert len(list((out / "analysis" / "maps").glob("sweep_*.h5"))) == 4

    # every run is in the embedded catalog, frames in HDF5 files
    from thermoxanes.storage.catalog import EmbeddedCatalog

    with EmbeddedCatalog(out) as catalog:
        runs = [catalog.runs[s["run_uid"]] for s in summary]
        series = {run.metadata["start"]["series_uid"] for run in runs}
        assert len(series) == 1
        frames = runs[-1]["primary"]["camera_image"].read()
        assert frames.shape == (68, 96, 96) and frames.dtype == np.uint16
        # the maps of every sweep are stored next to the raw runs, bit-equal to the files
        from thermoxanes.analysis.maps import XanesMaps
        from thermoxanes.storage.results import load_maps

        for s in summary:
            stored = load_maps(catalog, s["run_uid"])
            on_disk = XanesMaps.from_hdf5(out / "analysis" / s["maps_file"])
            np.testing.assert_array_equal(stored.valence, on_disk.valence)


def test_demo_bad_size_is_one_line_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "thermoxanes.cli", "demo", "--size", "4", "--out",
         str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "--size" in result.stderr


def _wait_for(predicate, what, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_demo_monitor_binds_the_maps_snapshot_endpoint(tmp_path):
    """``demo --monitor``: the analysis service answers on a maps snapshot endpoint, the
    demo's monitor is given it, and it is printed for a second monitor (late joiners)."""
    from thermoxanes.demo import DemoOptions, _start_services
    from thermoxanes.streaming.publisher import Publisher
    from thermoxanes.streaming.subscriber import Subscriber

    publisher = Publisher("tcp://127.0.0.1:*", heartbeat_s=0.1)
    opts = DemoOptions(out=tmp_path, monitor=True, monitor_port=0)
    printed = io.StringIO()
    services = _start_services(publisher.endpoint, opts, 1, printed)
    late = None
    try:
        snapshot = services.maps_snapshot_endpoint
        assert snapshot and snapshot.startswith("tcp://127.0.0.1:")
        assert snapshot != services.maps_endpoint
        text = printed.getvalue()
        assert f"--maps-snapshot-endpoint {snapshot}" in text
        assert f"--maps-endpoint {services.maps_endpoint}" in text
        # the demo's own monitor asks the analysis service for the snapshot and gets it
        (maps_feed,) = [f for f in services.monitor._feeds if f.kind == "maps"]
        assert maps_feed.subscriber.snapshot_endpoint == snapshot
        _wait_for(lambda: maps_feed.subscriber.stats["snapshot"] == "ok",
                  "the demo monitor's snapshot")
        # so does a second monitor started later with the printed endpoints
        late = Subscriber(services.maps_endpoint, snapshot_endpoint=snapshot)

        def answered():
            late.recv(0.1)
            return late.stats["snapshot"] == "ok"

        _wait_for(answered, "a late joiner's snapshot")
    finally:
        if late is not None:
            late.close()
        services.monitor.close()
        services.analysis.terminate()
        services.analysis.wait(timeout=30)
        publisher.close()
