"""A small stored heating series, acquired once for tests/storage: two 32x32 sweeps written by
``TiledWriter`` into an embedded catalog while a live analysis service fits them and
stores the maps in the same catalog."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

SERIES_UID = "series-storage-test"
GRID = np.array([8200, 8250, 8300, 8320, 8330, 8335, 8338, 8340, 8342, 8345, 8348,
                 8350, 8355, 8400, 8500, 8600], dtype=float)


def serve(service, ready: Path, max_sweeps: int) -> threading.Thread:
    """Run ``service`` in a thread; return once its subscription is live."""
    thread = threading.Thread(target=service.run, kwargs=dict(
        max_sweeps=max_sweeps, idle_timeout_s=30, ready_file=ready), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not ready.exists():
        assert time.monotonic() < deadline, "service never received a message"
        time.sleep(0.05)
    return thread


@dataclass
class StoredSeries:
    root: Path
    catalog: object          # EmbeddedCatalog, open for the whole package
    uids: list[str]
    live_dir: Path           # the live analysis service's output (maps/sweep_NNN.h5)
    header_keys: dict


@pytest.fixture(scope="package")
def stored_series(tmp_path_factory):
    from bluesky import RunEngine

    from thermoxanes.plans.xanes import xanes_sweep
    from thermoxanes.profiles.beamline import build_beamline
    from thermoxanes.profiles.schema import load_profile
    from thermoxanes.storage.catalog import EmbeddedCatalog
    from thermoxanes.storage.results import TiledResultsWriter
    from thermoxanes.streaming.analysis_service import AnalysisService
    from thermoxanes.streaming.publisher import Publisher

    root = tmp_path_factory.mktemp("stored")
    catalog = EmbeddedCatalog(root / "experiment")
    bl = build_beamline(load_profile("sim"), catalog.raw_dir, size=32, seed=1)
    publisher = Publisher("tcp://127.0.0.1:*", frame_lookup=bl.camera.frame_lookup,
                          header_keys=bl.header_keys)
    live_dir = root / "live"
    service = AnalysisService(publisher.endpoint, live_dir, figures=False,
                              result_sinks=[TiledResultsWriter(uri=catalog.uri)])
    try:
        thread = serve(service, root / "ready-live", max_sweeps=2)
        RE = RunEngine({})
        RE.subscribe(catalog.writer(batch_size=5))
        RE.subscribe(publisher)
        uids = []
        for k in range(2):
            uids += RE(xanes_sweep(bl.camera, bl.mono, bl.sample_x, bl.shutter, GRID,
                                   readables=bl.frame_readables, n_darks=2,
                                   md={"series_uid": SERIES_UID, "sweep_index": k}))
        publisher.flush(10)
        thread.join(60)
        assert not thread.is_alive()
    finally:
        publisher.close()
    assert [s.get("complete") for s in service.summary] == [True, True], service.summary
    assert not any("sink_errors" in s for s in service.summary), service.summary
    yield StoredSeries(root, catalog, list(uids), live_dir, dict(bl.header_keys))
    catalog.close()
