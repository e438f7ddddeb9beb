"""``thermoxanes replay`` / ``export`` / ``fit`` from the command line: the replay CLI
feeding an analysis service, and bad input (a missing run, a folder that is not a
catalog, a truncated raw file, a wrong or truncated HDF5 file): one line naming the
problem, exit status 2, nothing else touched."""

from __future__ import annotations

import shutil
import socket
import threading

import h5py
import numpy as np
import pytest

from tests.storage.conftest import GRID, SERIES_UID
from tests.storage.test_export import cli
from thermoxanes.analysis.maps import XanesMaps


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_line_error(status, stderr, *needles):
    assert status == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    for needle in needles:
        assert str(needle) in lines[0], lines[0]
    return lines[0]


@pytest.mark.system
def test_replay_command_feeds_the_analysis_service(stored_series, tmp_path):
    from thermoxanes.streaming.analysis_service import AnalysisService

    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    service = AnalysisService(endpoint, tmp_path / "out", figures=False)
    thread = threading.Thread(target=service.run, kwargs=dict(max_sweeps=2,
                                                              idle_timeout_s=60), daemon=True)
    thread.start()
    status, stdout, stderr = cli("replay", SERIES_UID, "--to", endpoint, "--speed", "max",
                                 "--catalog", stored_series.catalog.directory,
                                 "--wait-s", "1.5", "--header-key", "theta_deg=rotation")
    assert status == 0, stderr
    assert stdout.count("frames in") == 2
    thread.join(60)
    assert not thread.is_alive()
    assert [s["complete"] for s in service.summary] == [True, True]
    for k in range(2):
        live = stored_series.live_dir / "maps" / f"sweep_{k:03d}.h5"
        again = tmp_path / "out" / "maps" / f"sweep_{k:03d}.h5"
        with h5py.File(live, "r") as a, h5py.File(again, "r") as b:
            for name in a:
                assert a[name][()].tobytes() == b[name][()].tobytes(), name


def test_missing_run_and_not_a_catalog(stored_series, tmp_path):
    out = tmp_path / "out"
    status, _, stderr = cli("export", "no-such-run", "--catalog",
                            stored_series.catalog.directory, "-o", out)
    _one_line_error(status, stderr, "no-such-run")
    assert not out.exists()
    assert not list(tmp_path.glob(".thermoxanes-export-*"))
    status, _, stderr = cli("replay", "no-such-run", "--to", "tcp://127.0.0.1:*",
                            "--catalog", stored_series.catalog.directory, "--wait-s", "0")
    _one_line_error(status, stderr, "no-such-run")
    # a folder that is not a catalog is left exactly as it was
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("hello")
    for args in (("export", "x", "--catalog", plain, "-o", out),
                 ("replay", "x", "--to", "tcp://127.0.0.1:*", "--catalog", plain)):
        status, _, stderr = cli(*args)
        _one_line_error(status, stderr, plain, "no thermoxanes catalog")
    assert sorted(p.name for p in plain.iterdir()) == ["notes.txt"]
    assert not out.exists()
    # a missing catalog server
    status, _, stderr = cli("export", "x", "--catalog-uri",
                            f"http://127.0.0.1:{_free_port()}/api/v1", "-o", out)
    _one_line_error(status, stderr, "cannot open the tiled server")


def test_fit_rejects_wrong_layout_and_truncated_files(stored_series, tmp_path):
    wrong = stored_series.live_dir / "maps" / "sweep_000.h5"  # maps, not a raw stack
    status, _, stderr = cli("fit", wrong, "-o", tmp_path / "m.h5")
    _one_line_error(status, stderr, wrong, "missing datasets")
    # an FXI export cut in half
    status, _, stderr = cli("export", stored_series.uids[0], "--format", "fxi", "--catalog",
                            stored_series.catalog.directory, "-o", tmp_path / "fxi")
    assert status == 0, stderr
    (good,) = (tmp_path / "fxi").glob("sweep_*.h5")
    cut = tmp_path / "cut.h5"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    status, _, stderr = cli("fit", cut, "-o", tmp_path / "m.h5")
    _one_line_error(status, stderr, cut)
    assert not (tmp_path / "m.h5").exists()


@pytest.mark.system
def test_truncated_raw_file_is_named(tmp_path):
    from bluesky import RunEngine

    from thermoxanes.plans.xanes import xanes_sweep
    from thermoxanes.profiles.beamline import build_beamline
    from thermoxanes.profiles.schema import load_profile
    from thermoxanes.storage.catalog import EmbeddedCatalog

    directory = tmp_path / "exp"
    with EmbeddedCatalog(directory) as catalog:
        bl = build_beamline(load_profile("sim"), catalog.raw_dir, size=16, seed=2)
        RE = RunEngine({})
        RE.subscribe(catalog.writer(batch_size=5))
        (uid,) = RE(xanes_sweep(bl.camera, bl.mono, bl.sample_x, bl.shutter, GRID,
                                readables=bl.frame_readables, n_darks=1,
                                md={"series_uid": "trunc", "sweep_index": 0}))
    (raw,) = (directory / "raw").glob("*.h5")
    backup = tmp_path / "backup.h5"
    shutil.copy(raw, backup)
    data = raw.read_bytes()
    raw.write_bytes(data[: len(data) // 3])
    out = tmp_path / "out"
    status, _, stderr = cli("export", uid, "--format", "fxi", "--catalog", directory,
                            "-o", out)
    _one_line_error(status, stderr, raw.name)
    assert not out.exists() and not list(tmp_path.glob(".thermoxanes-export-*"))
    status, stdout, stderr = cli("replay", uid, "--to", "tcp://127.0.0.1:*", "--catalog",
                                 directory, "--wait-s", "0")
    _one_line_error(status, stderr, raw.name)
    assert "frames in" not in stdout  # nothing of the broken run was sent
    # the file restored: the same run exports again
    shutil.copy(backup, raw)
    status, _, stderr = cli("export", uid, "--format", "tiff", "--catalog", directory,
                            "-o", out)
    assert status == 0, stderr
    assert (out / f"sweep_000_{uid[:8]}_xanes.tif").exists()
    np.testing.assert_equal(len(list(out.iterdir())), 5)


@pytest.mark.system
def test_analyze_process_stores_maps_through_the_running_server(stored_series, tmp_path):
    """The demo's arrangement: the catalog served in one process, ``thermoxanes analyze
    --catalog-dir DIR`` in another stores maps through that server (not a second SQLite
    opener); the maps of a replay equal the live ones."""
    import subprocess
    import sys
    import time

    from thermoxanes.storage.replay import Replayer
    from thermoxanes.storage.results import find_maps, load_maps
    from thermoxanes.storage.runs import resolve_runs

    cat = stored_series.catalog
    before = {uid: len(find_maps(cat, uid)) for uid in stored_series.uids}
    with Replayer("tcp://127.0.0.1:*", header_keys=stored_series.header_keys) as replayer:
        ready = tmp_path / "ready"
        proc = subprocess.Popen(
            [sys.executable, "-m", "thermoxanes.cli", "analyze", "--endpoint",
             replayer.endpoint, "--out", str(tmp_path / "out"), "--no-figures",
             "--max-sweeps", "2", "--idle-timeout-s", "60", "--ready-file", str(ready),
             "--catalog-dir", str(cat.directory)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 120
            while not ready.exists():
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
                time.sleep(0.1)
            replayer.replay(resolve_runs(cat.runs, SERIES_UID))
            replayer.flush(30)
            output, _ = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, output
    assert "result sink" not in output, output
    for k, uid in enumerate(stored_series.uids):
        assert len(find_maps(cat, uid)) == before[uid] + 1
        stored = load_maps(cat, uid)
        live = XanesMaps.from_hdf5(stored_series.live_dir / "maps" / f"sweep_{k:03d}.h5")
        for name in ("valence", "valence_sigma", "edge_energy", "mask"):
            assert getattr(stored, name).tobytes() == getattr(live, name).tobytes(), name


def test_export_refuses_a_run_that_is_not_a_sweep():
    from thermoxanes.storage.export import sweep_stack
    from thermoxanes.storage.runs import StoredRun

    with pytest.raises(ValueError, match="not a XANES sweep"):
        sweep_stack(StoredRun(start={"uid": "abc"}, stop=None, streams={}))
