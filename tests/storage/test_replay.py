"""Replay from the catalog into a second analysis service: the maps equal the live maps
bit for bit; maps stored in tiled read back equal too."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from tests.storage.conftest import SERIES_UID, serve
from thermoxanes.analysis.maps import MAP_NAMES, XanesMaps
from thermoxanes.storage.replay import Replayer, run_documents
from thermoxanes.storage.results import (
    TiledResultsWriter,
    find_maps,
    load_maps,
    load_maps_with_metadata,
)
from thermoxanes.storage.runs import read_run, resolve_runs


def _assert_same_bits(a: np.ndarray, b: np.ndarray, what: str) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert a.tobytes() == b.tobytes(), f"{what} differs"


def _assert_same_maps(a: XanesMaps, b: XanesMaps) -> None:
    for name in (*MAP_NAMES, "mask", "energies_ev", "registration_shifts"):
        _assert_same_bits(getattr(a, name), getattr(b, name), name)


def test_runs_read_back_with_the_tiled_client(stored_series):
    runs = resolve_runs(stored_series.catalog.runs, SERIES_UID)
    assert [r.metadata["start"]["uid"] for r in runs] == stored_series.uids
    run = read_run(runs[1])
    assert run.sweep_index == 1 and run.series_uid == SERIES_UID
    assert list(run.streams) == ["dark", "flat", "primary"]
    primary = run.streams["primary"]
    assert primary.external_keys == ["camera_image"]
    frames = primary.read_external("camera_image")
    assert frames.shape == (16, 32, 32) and frames.dtype == np.uint16
    docs = run_documents(run)
    names = [d.name for d in docs]
    assert names[0] == "start" and names[-1] == "stop"
    assert names.count("descriptor") == 3 and names.count("event") == 2 + 16 + 16
    # a single run by uid, by unique prefix and by scan id
    assert len(resolve_runs(stored_series.catalog.runs, stored_series.uids[0])) == 1
    assert resolve_runs(stored_series.catalog.runs, stored_series.uids[0][:8])[0].metadata[
        "start"]["uid"] == stored_series.uids[0]
    with pytest.raises(ValueError, match="no run, series or scan id"):
        resolve_runs(stored_series.catalog.runs, "no-such-run")


def test_maps_stored_in_tiled_with_provenance(stored_series):
    cat = stored_series.catalog
    for k, uid in enumerate(stored_series.uids):
        maps, md = load_maps_with_metadata(cat, uid)
        live = XanesMaps.from_hdf5(stored_series.live_dir / "maps" / f"sweep_{k:03d}.h5")
        _assert_same_maps(maps, live)
        assert md["raw_run_uid"] == uid and md["sweep_index"] == k
        assert md["series_uid"] == SERIES_UID
        assert md["temperature_c"] == pytest.approx(25.0, abs=3.0)
        assert md["software_version"] and md["software"]["tiled"]
        assert md["fit_config"] == live.config
        assert md["calibration"]["reference_spectra"]
        assert md["summary"]["complete"] is True
    assert "maps" in cat.client and "raw" in cat.client


@pytest.mark.system
def test_replay_equals_live_bit_for_bit(stored_series, tmp_path):
    from thermoxanes.streaming.analysis_service import AnalysisService

    cat = stored_series.catalog
    runs = resolve_runs(cat.runs, SERIES_UID)
    replayer = Replayer("tcp://127.0.0.1:*", speed=math.inf,
                        header_keys=stored_series.header_keys)
    writer = TiledResultsWriter(uri=cat.uri)
    service = AnalysisService(replayer.endpoint, tmp_path / "replayed", figures=False,
                              result_sinks=[writer])
    try:
        thread = serve(service, tmp_path / "ready", max_sweeps=2)
        report = replayer.replay(runs)
        assert replayer.flush(30)
        thread.join(60)
        assert not thread.is_alive()
    finally:
        replayer.close()
    assert [r["frames"] for r in report] == [2 + 16 + 16] * 2
    assert [s["complete"] for s in service.summary] == [True, True]
    for k in range(2):
        live = stored_series.live_dir / "maps" / f"sweep_{k:03d}.h5"
        again = tmp_path / "replayed" / "maps" / f"sweep_{k:03d}.h5"
        with h5py.File(live, "r") as a, h5py.File(again, "r") as b:
            assert set(a) == set(b)
            for name in a:
                _assert_same_bits(a[name][()], b[name][()], f"sweep {k} {name}")
            for key in ("run_uid", "series_uid", "sweep_index", "temperature_c", "config"):
                assert a.attrs[key] == b.attrs[key]
    # the replayed fit is stored beside the live one, nothing overwritten
    uid = stored_series.uids[0]
    fits = find_maps(cat, uid)
    assert [f.metadata["fit_number"] for f in fits][:2] == [1, 2]
    _assert_same_maps(load_maps(cat, uid, which=0), load_maps(cat, uid, which=1))


def test_writer_by_directory_uses_the_running_server(stored_series):
    """``thermoxanes analyze --catalog-dir DIR`` while the demo serves DIR: the writer
    connects to that server (catalog/server.json) instead of opening the SQLite again."""
    from thermoxanes.storage.catalog import server_info_path

    cat = stored_series.catalog
    info = server_info_path(cat.directory)
    assert info.exists() and info.stat().st_mode & 0o077 == 0  # holds the API key
    uid = stored_series.uids[1]
    maps, md = load_maps_with_metadata(cat, uid)
    writer = TiledResultsWriter(directory=cat.directory)
    try:
        key = writer.write(maps, raw_run_uid=uid, sweep_index=1, temperature_c=25.0)
        assert writer._handle is not None and writer._handle._embedded is None
    finally:
        writer.close()
    assert key.startswith(f"{uid}-")
    _assert_same_maps(load_maps(cat, uid), maps)
    assert find_maps(cat, uid)[-1].metadata["software_version"] == md["software_version"]


def test_replay_paces_by_event_times(stored_series):
    runs = resolve_runs(stored_series.catalog.runs, stored_series.uids[0])
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    with Replayer("tcp://127.0.0.1:*", speed=2.0, sleep=sleep,
                  clock=lambda: now[0]) as replayer:
        replayer.replay(runs)
    run = read_run(runs[0])
    last_event_s = max(float(s.time_s.max()) for s in run.streams.values())
    # no subscriber here: what counts is when each document left, on the fake clock
    expected_s = (max(run.stop["time"], last_event_s) - run.start["time"]) / 2.0
    assert now[0] == pytest.approx(expected_s, rel=1e-6)
    with pytest.raises(ValueError, match="speed"):
        Replayer("tcp://127.0.0.1:*", speed=0)
