"""Fault injection on the simulated beamline: heater safety and data integrity, as JSON.

Each scenario runs a short heating program (32x32 frames by default, a 16-energy grid)
through the real pieces: RunEngine, the embedded tiled catalog (``TiledWriter``), the
ZeroMQ publisher and ``thermoxanes analyze`` processes. It injects one fault and reports:

- ``frames_acquired``: frames whose event documents the RunEngine emitted;
- ``frames_lost``: of those, frames readable neither from the catalog (re-opened after
  the run) nor from the raw HDF5 files the documents point to (must be 0);
- ``frames_lost_from_catalog``: frames acquired *before* the fault that the catalog
  cannot serve (must be 0);
- ``heater_safe``: the heater setpoint is the safe one (or its output off) at the end;
- ``safe_state_recorded``: a ``heater_safe_state`` run says so in the documents (not
  possible after ``RE.halt()``, which skips plan cleanup);
- ``fault_to_error_s``: wall seconds from the injection to the RunEngine raising, for
  faults that must end the program.

Usage::

    python benchmarks/bench_faults.py [--size 32] [--only NAME ...] [--work DIR]

Scenario functions are imported by ``tests/system/test_faults.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

GRID_EV = np.array([8200, 8250, 8300, 8320, 8330, 8335, 8338, 8340, 8342, 8345, 8348,
                    8350, 8355, 8400, 8500, 8600], dtype=float)
SAFE_C = 25.0
READY_TIMEOUT_S = 120.0
#: tiled's client retries a failing request for up to TILED_RETRY_TIMEOUT (45 s by
#: default) and TiledWriter forces one more round for event rows; every later document
#: (the sweep's stop, the safe-state record) pays it again. The catalog scenario shortens
#: it to keep the run short; ``fault_to_error_s`` scales with it.
TILED_RETRY_TIMEOUT_S = 3.0


# -- documents --------------------------------------------------------------------------------
class Recorder:
    """Keeps every document; ``on_event(stream, k, fn)`` calls ``fn`` at the k-th event
    of ``stream`` counted over all runs (in the RunEngine's thread)."""

    def __init__(self):
        self.docs: list[tuple[str, dict[str, Any]]] = []
        self._streams: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        self._actions: dict[tuple[str, int], Any] = {}

    def on_event(self, stream: str, k: int, fn) -> None:
        self._actions[(stream, k)] = fn

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        self.docs.append((name, doc))
        if name == "descriptor":
            self._streams[doc["uid"]] = doc.get("name")
        elif name == "event":
            stream = self._streams.get(doc["descriptor"])
            self._counts[stream] = k = self._counts.get(stream, 0) + 1
            action = self._actions.pop((stream, k), None)
            if action is not None:
                action()

    def starts(self, plan_name: str | None = None) -> list[dict[str, Any]]:
        return [d for n, d in self.docs if n == "start"
                and (plan_name is None or d.get("plan_name") == plan_name)]

    def frames(self) -> dict[tuple[str, str], list[tuple[str, float]]]:
        """(run uid, stream) -> [(datum id, emitted at)] of every camera frame emitted."""
        runs = {d["uid"]: d["run_start"] for n, d in self.docs if n == "descriptor"}
        out: dict[tuple[str, str], list[tuple[str, float]]] = {}
        for n, d in self.docs:
            if n == "event" and "camera_image" in d["data"]:
                key = (runs[d["descriptor"]], self._streams[d["descriptor"]])
                out.setdefault(key, []).append((d["data"]["camera_image"], d["time"]))
        return out

    def resources(self) -> dict[str, dict[str, Any]]:
        return {d["uid"]: d for n, d in self.docs if n == "resource"}


# -- the rig ----------------------------------------------------------------------------------
class CatalogWriteError(RuntimeError):
    """A document could not be written to the catalog; the run is not stored past it."""


class LoudCatalogWriter:
    """Wrap a ``TiledWriter``: the first failure raises :class:`CatalogWriteError` naming
    the catalog and the document; later documents fail at once instead of paying tiled's
    retries again (the failure is already loud; the cleanup must not wait on a dead server).

    Subscribe it after the publisher, so the wire still gets every document.
    """

    def __init__(self, writer, uri: str):
        self.writer = writer
        self.uri = uri
        self.failed: str | None = None

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if self.failed is not None:
            raise CatalogWriteError(f"catalog unavailable since: {self.failed}")
        try:
            self.writer(name, doc)
        except Exception as exc:
            self.failed = (f"writing a {name!r} document to the tiled catalog at "
                           f"{self.uri.split('?')[0]} failed: {type(exc).__name__}: {exc}")
            raise CatalogWriteError(
                f"{self.failed}; the run is not stored past this point (frames so far stay "
                f"in the raw HDF5 files)") from exc


class Rig:
    """Simulated beamline + embedded catalog + publisher + RunEngine in this process."""

    def __init__(self, work: Path, *, size: int = 32, seed: int = 1,
                 raw_dir: Path | None = None):
        from bluesky import RunEngine

        from thermoxanes.profiles.beamline import build_beamline
        from thermoxanes.profiles.schema import load_profile
        from thermoxanes.storage.catalog import EmbeddedCatalog
        from thermoxanes.streaming.publisher import Publisher

        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.profile = load_profile("sim")
        self.catalog = EmbeddedCatalog(self.work)
        self.catalog_open = True
        self.beamline = build_beamline(self.profile, raw_dir or self.catalog.raw_dir,
                                       size=size, seed=seed)
        self.publisher = Publisher("tcp://127.0.0.1:*",
                                   frame_lookup=self.beamline.camera.frame_lookup,
                                   header_keys=self.beamline.header_keys)
        self.RE = RunEngine({}, context_managers=[])
        self.RE.record_interruptions = True
        self.recorder = Recorder()
        # recorder and publisher first: a failing catalog must not keep documents off the wire
        self.RE.subscribe(self.recorder)
        self.RE.subscribe(self.publisher)
        self.catalog_writer = LoudCatalogWriter(self.catalog.writer(batch_size=1),
                                                self.catalog.uri)
        self.RE.subscribe(self.catalog_writer)
        #: like ``recorder.on_event`` but after the catalog has written the event
        self.after_catalog = Recorder()
        self.RE.subscribe(self.after_catalog)
        self.services: list[subprocess.Popen] = []
        self.fault_at: float | None = None

    def plan(self, program, **kwargs):
        from thermoxanes.plans.heating import HeaterLimits, heating_series

        b, heater = self.beamline, self.profile.heater
        kwargs.setdefault("safe_temperature_c", heater.safe_temperature_c)
        kwargs.setdefault("safe_state", heater.safe_state)
        kwargs.setdefault("limits", HeaterLimits.from_profile(heater))
        return heating_series(
            b.camera, b.mono, b.sample_x, b.shutter, b.heater, b.clock, program, GRID_EV,
            readables=[b.rotation, b.ring], n_darks=1, n_flats=1,
            sample_out_offset_um=self.profile.sample_stage.out_offset_um,
            md={"profile": "sim", "sample": "bench_faults"}, **kwargs)

    def mark_fault(self) -> None:
        self.fault_at = time.monotonic()

    def run(self, plan) -> dict[str, Any]:
        """Run ``plan``; return error text and the time from the fault to the error."""
        t0 = time.monotonic()
        error = None
        try:
            self.RE(plan)
        except Exception as exc:  # noqa: BLE001 - the error is the measurement
            text = " ".join(str(exc).split())[:400]
            error = f"{type(exc).__name__}: {text}"
        t_end = time.monotonic()
        with contextlib.suppress(Exception):
            self.publisher.flush(timeout_s=10.0)
        return {
            "error": error,
            "wall_s": t_end - t0,
            "fault_to_error_s": (t_end - self.fault_at)
            if error is not None and self.fault_at is not None else None,
        }

    # -- services -------------------------------------------------------------------------
    def start_service(self, out: Path, *extra: str) -> subprocess.Popen:
        out.mkdir(parents=True, exist_ok=True)
        ready = out / f"ready-{len(self.services)}"
        cmd = [sys.executable, "-m", "thermoxanes.cli", "analyze", "--endpoint",
               self.publisher.endpoint, "--out", str(out), "--no-figures",
               "--idle-timeout-s", "60", "--ready-file", str(ready), *extra]
        log = open(out / f"service-{len(self.services)}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        self.services.append(proc)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"analysis service exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("analysis service not ready in time")
            time.sleep(0.05)
        return proc

    # -- outcome --------------------------------------------------------------------------
    def heater_safe(self) -> bool:
        heater = self.beamline.world.heater
        if self.profile.heater.safe_state == "output_off":
            return not heater.output_on
        return abs(heater.setpoint_c - self.profile.heater.safe_temperature_c) < 1e-6

    def safe_state_record(self) -> dict[str, Any] | None:
        from thermoxanes.plans.heating import SAFE_STATE_PLAN

        starts = self.recorder.starts(SAFE_STATE_PLAN)
        return starts[-1] if starts else None

    def frame_accounting(self) -> dict[str, int]:
        """Frames emitted vs readable from the re-opened catalog, else from raw files."""
        import h5py

        from thermoxanes.storage.catalog import EmbeddedCatalog

        frames = self.recorder.frames()
        resources = self.recorder.resources()
        acquired = sum(len(v) for v in frames.values())
        before = [t for v in frames.values() for _, t in v
                  if self.fault_at is None or t < self._fault_epoch()]
        from_catalog = lost = lost_catalog_before = 0
        self.close_catalog()
        with EmbeddedCatalog(self.work) as catalog, _tiled_retry_timeout(2.0):
            for (run_uid, stream), items in frames.items():
                n_cat = 0
                try:
                    array = catalog.runs[run_uid][stream]["camera_image"].read()
                    n_cat = int(array.shape[0])
                except Exception:  # noqa: BLE001 - not in the catalog: try the raw file
                    n_cat = 0
                from_catalog += min(n_cat, len(items))
                for index, (datum_id, t_emit) in enumerate(items):
                    if index < n_cat:
                        continue
                    if self.fault_at is None or t_emit < self._fault_epoch():
                        lost_catalog_before += 1
                    resource = resources.get(datum_id.split("/")[0])
                    ok = False
                    if resource is not None:
                        point = int(datum_id.split("/")[1])
                        try:
                            with h5py.File(resource["resource_path"], "r", swmr=True) as fh:
                                frame = fh[resource["resource_kwargs"]["dataset"]][point]
                                ok = frame.shape == self.beamline.world.frame_shape
                        except Exception:  # noqa: BLE001 - unreadable counts as lost
                            ok = False
                    lost += 0 if ok else 1
        return {"frames_acquired": acquired, "frames_acquired_before_fault": len(before),
                "frames_from_catalog": from_catalog, "frames_lost": lost,
                "frames_lost_from_catalog": lost_catalog_before}

    def _fault_epoch(self) -> float:
        """The fault time on the documents' clock (time.time())."""
        return time.time() - (time.monotonic() - self.fault_at)

    def close_catalog(self) -> None:
        if self.catalog_open:
            with contextlib.suppress(Exception):
                self.catalog.close()
            self.catalog_open = False

    def close(self) -> None:
        for proc in self.services:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        with contextlib.suppress(Exception):
            self.publisher.close()
        self.close_catalog()


def _summary(out: Path) -> dict[str, Any]:
    path = out / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {"sweeps": []}


def _outcome(rig: Rig, name: str, result: dict[str, Any], **extra) -> dict[str, Any]:
    record = rig.safe_state_record()
    out = {"fault": name, "faults_injected": 1, **result,
           "heater_safe": rig.heater_safe(),
           "safe_state_recorded": bool(record and record.get("safe_action_done")),
           "exit_path": record.get("exit_path") if record else None}
    out.update(rig.frame_accounting())
    out.update(extra)
    return out


def _program(sweeps: int):
    from thermoxanes.plans.heating import HeatingProgram, Hold, Ramp

    return HeatingProgram((Ramp(60.0, 20.0), Hold(1.0, sweeps)))


def _n_frames_per_sweep() -> int:
    return 1 + 2 * GRID_EV.size


# -- scenarios ------------------------------------------------------------------------------
def scenario_service_restart(work: Path, size: int = 32) -> dict[str, Any]:
    """The analysis service is killed mid-sweep and restarted: it resumes at the next
    sweep; the interrupted sweep is not fitted; no map mixes two sweeps."""
    rig = Rig(work, size=size)
    out = work / "analysis"
    try:
        first = rig.start_service(out)

        def kill_and_restart():
            rig.mark_fault()
            first.kill()
            first.wait(10)
            rig.start_service(out, "--max-sweeps", "1")

        # sweep 1 (the second), 5th sample frame
        rig.recorder.on_event("primary", GRID_EV.size + 5, kill_and_restart)
        result = rig.run(rig.plan(_program(3)))
        second = rig.services[-1]
        second.wait(60)
        summary = _summary(out)
        sweeps = summary["sweeps"]
        maps_files = sorted(p.name for p in (out / "maps").glob("sweep_*.h5"))
        mixed = []
        import h5py

        sweep_uids = [s["uid"] for s in rig.recorder.starts("xanes_sweep")]
        for entry in sweeps:
            if entry.get("maps_file"):
                with h5py.File(out / entry["maps_file"], "r") as fh:
                    if fh.attrs["run_uid"] != sweep_uids[entry["sweep_index"]]:
                        mixed.append(entry["maps_file"])
            if entry["complete"] and entry["n_frames"] != _n_frames_per_sweep():
                mixed.append(entry["sweep_index"])
        return _outcome(rig, "analysis service killed and restarted mid-sweep", result,
                        sweeps_fitted=[s["sweep_index"] for s in sweeps if s["complete"]],
                        maps_files=maps_files, maps_mixing_sweeps=mixed)
    finally:
        rig.close()


def scenario_stalled_subscriber(work: Path, size: int = 32) -> dict[str, Any]:
    """One analysis service is stopped (SIGSTOP) during acquisition; another keeps up.
    Acquisition time is compared with the same program without the stalled one."""
    timings = {}
    for stalled in (False, True):
        rig = Rig(work / ("stalled" if stalled else "baseline"), size=size)
        try:
            live_out = rig.work / "analysis-live"
            rig.start_service(live_out, "--max-sweeps", "3")
            if stalled:
                frozen = rig.start_service(rig.work / "analysis-stalled")
                os.kill(frozen.pid, signal.SIGSTOP)
                rig.mark_fault()
            result = rig.run(rig.plan(_program(3)))
            rig.services[0].wait(120)
            live = _summary(live_out)["sweeps"]
            timings[stalled] = result["wall_s"]
            if stalled:
                outcome = _outcome(
                    rig, "stalled subscriber (analysis service SIGSTOPped)", result,
                    live_service_sweeps_complete=sum(1 for s in live if s["complete"]),
                    acquisition_s_baseline=timings[False],
                    acquisition_s_with_stalled=timings[True],
                    acquisition_slowdown=timings[True] / timings[False])
        finally:
            rig.close()
    return outcome


def scenario_corrupt_frame(work: Path, size: int = 32) -> dict[str, Any]:
    """The camera delivers a frame with a band of zero rows: flagged, masked, no crash."""
    rig = Rig(work, size=size)
    out = work / "analysis"
    try:
        rig.start_service(out, "--max-sweeps", "1")

        def corrupt():
            rig.mark_fault()
            rig.beamline.camera.inject_corrupt_frames(1, kind="rows")

        rig.recorder.on_event("primary", 4, corrupt)
        result = rig.run(rig.plan(_program(1)))
        rig.services[0].wait(60)
        sweeps = _summary(out)["sweeps"]
        entry = sweeps[0] if sweeps else {}
        return _outcome(rig, "corrupt camera frame (zero rows)", result,
                        service_alive_until_done=rig.services[0].returncode == 0,
                        sweep_complete=entry.get("complete"),
                        corrupt_frames=entry.get("corrupt_frames"))
    finally:
        rig.close()


@contextlib.contextmanager
def _tiled_retry_timeout(seconds: float):
    import tiled.client.utils as tcu

    saved = tcu.TILED_RETRY_TIMEOUT
    tcu.TILED_RETRY_TIMEOUT = float(seconds)
    try:
        yield
    finally:
        tcu.TILED_RETRY_TIMEOUT = saved


def scenario_catalog_unreachable(work: Path, size: int = 32,
                                 retry_timeout_s: float = TILED_RETRY_TIMEOUT_S
                                 ) -> dict[str, Any]:
    """The tiled server stops mid-sweep: the program fails loudly, the heater goes safe,
    frames acquired before stay readable (catalog re-opened; raw files for the rest)."""
    rig = Rig(work, size=size)
    try:
        def stop_server():
            rig.mark_fault()
            rig.close_catalog()

        rig.after_catalog.on_event("primary", GRID_EV.size + 5, stop_server)
        with _tiled_retry_timeout(retry_timeout_s):
            result = rig.run(rig.plan(_program(3)))
        heater_safe_at_error = rig.heater_safe()
        return _outcome(rig, "catalog (tiled server) unreachable mid-sweep", result,
                        tiled_retry_timeout_s=retry_timeout_s,
                        heater_safe_when_error_raised=heater_safe_at_error)
    finally:
        rig.close()


def _mount_tmpfs(path: Path, size_kib: int) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs",
                           str(path)], capture_output=True)
    return done.returncode == 0


def scenario_disk_full(work: Path, size: int = 64) -> dict[str, Any] | None:
    """The raw-frame folder is a tiny tmpfs that fills mid-run (needs root to mount; None
    otherwise): the program fails loudly, earlier frames stay readable."""
    raw = Path(work) / "raw"  # the catalog serves files from here only
    if not _mount_tmpfs(raw, 1024):
        return None
    rig = None
    try:
        rig = Rig(work, size=size)
        camera = rig.beamline.camera
        check = camera._check_free_space

        def check_and_mark(nbytes):
            try:
                check(nbytes)
            except OSError:
                rig.mark_fault()  # the moment the disk is found full
                raise

        camera._check_free_space = check_and_mark
        result = rig.run(rig.plan(_program(6)))
        used = shutil.disk_usage(raw)
        return _outcome(rig, "raw-data disk full (tmpfs)", result,
                        disk_used_fraction=used.used / used.total)
    finally:
        if rig is not None:
            rig.close()
        subprocess.run(["umount", "-l", str(raw)], capture_output=True)


def _exit_path_scenario(name: str, work: Path, size: int, arm) -> dict[str, Any]:
    rig = Rig(work, size=size)
    try:
        plan_kwargs = arm(rig) or {}
        result = rig.run(rig.plan(_program(2), **plan_kwargs))
        if rig.RE.state == "paused":
            rig.RE.abort("bench")
        return _outcome(rig, name, result)
    finally:
        rig.close()


def _in_thread(fn):
    return lambda: threading.Thread(target=fn, daemon=True).start()


def scenario_exit_paths(work: Path, size: int = 32) -> list[dict[str, Any]]:
    """Completion, exception, abort, stop, pause then abort, halt, over-temperature,
    beam dump and temperature excursion suspensions: heater safe at the end of each."""
    results = []

    def nothing(rig):
        return None

    def exception(rig):
        rig.beamline.mono._limits = (4500.0, 8500.0)  # the grid's last energy is refused
        rig.recorder.on_event("primary", GRID_EV.size - 1, rig.mark_fault)

    def command(which):
        def arm(rig):
            def act():
                rig.mark_fault()
                getattr(rig.RE, which)()
            rig.recorder.on_event("primary", 5, _in_thread(act))
        return arm

    def pause(rig):
        rig.recorder.on_event("primary", 5, _in_thread(lambda: rig.RE.request_pause()))

    def over_temperature(rig):
        def act():
            rig.mark_fault()
            rig.beamline.heater.inject_temperature_offset(500.0, None)
        rig.recorder.on_event("primary", 5, act)

    def beam_dump(rig):
        rig.recorder.on_event("flat", 5, lambda: rig.beamline.ring.inject_beam_dump(0.3))
        return {"ring_current": rig.beamline.ring.current_ma, "ring_floor_ma": 100.0,
                "ring_resume_ma": 300.0}

    def excursion(rig):
        rig.recorder.on_event(
            "primary", 5, lambda: rig.beamline.heater.inject_temperature_offset(20.0, 0.3))
        return {"temperature_band_c": 5.0}

    for name, arm in [("completion", nothing), ("exception in the plan", exception),
                      ("RE.abort()", command("abort")), ("RE.stop()", command("stop")),
                      ("pause (Ctrl-C) then RE.abort()", pause),
                      ("RE.halt()", command("halt")),
                      ("over-temperature", over_temperature),
                      ("beam dump (suspend, re-take)", beam_dump),
                      ("temperature excursion in a hold (suspend)", excursion)]:
        slug = "".join(c if c.isalnum() else "_" for c in name)[:40]
        result = _exit_path_scenario(name, work / slug, size, arm)
        result["faults_injected"] = 0 if arm is nothing else 1
        results.append(result)
    return results


def _free_port() -> int:
    import socket

    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port


def configure_ca_client() -> int:
    """Loopback Channel Access on private ports for this process (before libca starts);
    returns the IOC's server port. Kept if already configured (e.g. by the tests)."""
    if os.environ.get("THERMOXANES_BENCH_CA_PORT"):
        return int(os.environ["THERMOXANES_BENCH_CA_PORT"])
    port, repeater = _free_port(), _free_port()
    os.environ.update({
        "EPICS_CA_ADDR_LIST": f"127.0.0.1:{port}", "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_SERVER_PORT": str(port), "EPICS_CA_REPEATER_PORT": str(repeater),
        "EPICS_CA_MAX_ARRAY_BYTES": "100000000", "THERMOXANES_BENCH_CA_PORT": str(port),
    })
    return port


def _ioc_env(port: int) -> dict[str, str]:
    env = dict(os.environ)
    repeater = os.environ.get("EPICS_CA_REPEATER_PORT", "5065")
    env.update({
        "EPICS_CA_ADDR_LIST": "127.0.0.1", "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_SERVER_PORT": str(port), "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
        "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1", "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_CAS_BEACON_PORT": repeater, "EPICS_CA_REPEATER_PORT": repeater,
        "EPICS_CA_MAX_ARRAY_BYTES": "100000000", "PYTHONUNBUFFERED": "1",
    })
    return env


def scenario_ioc_killed(work: Path, size: int = 32, ca_port: int | None = None,
                        speed: float = 120.0) -> dict[str, Any] | None:
    """The simulated IOC (profile ``sim-epics``, caproto, every device's PVs) is killed
    mid-sweep: the program must fail within a bounded time with a clear message, every
    frame acquired before must be readable from the catalog, and the safe-state attempt
    must be reported. Returns None if the IOC cannot start."""
    import ophyd  # noqa: F401, I001 - before epics: pyepics PVs must be ophyd's
    import epics

    from bluesky import RunEngine

    from thermoxanes.plans.heating import HeaterLimits, HeatingProgram, Hold, Ramp
    from thermoxanes.plans.heating import heating_series
    from thermoxanes.profiles.beamline import build_epics_beamline
    from thermoxanes.profiles.schema import load_profile
    from thermoxanes.storage.catalog import EmbeddedCatalog

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    port = ca_port if ca_port is not None else configure_ca_client()
    log = open(work / "ioc.log", "w")  # noqa: SIM115 - closed below
    ioc = subprocess.Popen(
        [sys.executable, "-m", "thermoxanes.cli", "ioc", "--profile", "sim-epics", "--size",
         str(size), "--seed", "1", "--speed", str(speed)],
        env=_ioc_env(port), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    catalog = None
    try:
        deadline = time.monotonic() + 60
        while epics.caget("TXS:CLOCK:Time-I", timeout=0.5) is None:
            if ioc.poll() is not None or time.monotonic() > deadline:
                return None
        profile = load_profile("sim-epics")
        catalog = EmbeddedCatalog(work)
        line = build_epics_beamline(profile, catalog.raw_dir, speed=speed)
        line.wait_for_connection(20.0)
        line.heater.settle_s.put(10.0)
        RE = RunEngine({}, context_managers=[])
        recorder = Recorder()
        RE.subscribe(recorder)
        writer = LoudCatalogWriter(catalog.writer(batch_size=1), catalog.uri)
        RE.subscribe(writer)
        fault = {}

        def kill_ioc():
            fault["t"] = time.monotonic()
            fault["epoch"] = time.time()
            os.killpg(ioc.pid, signal.SIGKILL)

        recorder.on_event("primary", 3, kill_ioc)
        program = HeatingProgram((Ramp(35.0, 60.0), Hold(60.0, 1)))
        grid = [8320.0, 8330.0, 8340.0, 8350.0, 8360.0, 8400.0]
        error = None
        t0 = time.monotonic()
        try:
            RE(heating_series(line.camera, line.mono, line.sample_x, line.shutter,
                              line.heater, line.clock, program, grid,
                              readables=[line.rotation, line.ring], n_darks=1, n_flats=1,
                              safe_temperature_c=profile.heater.safe_temperature_c,
                              safe_state=profile.heater.safe_state,
                              limits=HeaterLimits.from_profile(profile.heater),
                              md={"profile": profile.name}))
        except Exception as exc:  # noqa: BLE001 - the error is the measurement
            error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
        t_end = time.monotonic()
        records = recorder.starts("heater_safe_state")
        record = records[-1] if records else {}
        frames = recorder.frames()
        acquired = sum(len(v) for v in frames.values())
        before = sum(1 for v in frames.values() for _, t in v if t < fault.get("epoch", 1e18))
        catalog.close()
        catalog = None
        readable = 0
        with EmbeddedCatalog(work) as reopened:
            for (run_uid, stream), items in frames.items():
                try:
                    array = reopened.runs[run_uid][stream]["camera_image"].read()
                    readable += min(int(array.shape[0]), len(items))
                except Exception:  # noqa: BLE001 - counted as not readable
                    pass
        return {
            "fault": "IOC killed mid-sweep (sim-epics, Channel Access)",
            "faults_injected": 1 if fault else 0,
            "error": error, "wall_s": t_end - t0,
            "fault_to_error_s": t_end - fault["t"] if fault and error else None,
            "heater_safe": None,  # unknowable: the controller died with the IOC
            "heater_safe_note": "controller unreachable; the attempt is reported",
            "safe_state_recorded": bool(record.get("safe_action_done")),
            "safe_state_attempt_reported": bool(record) and "safe_action_done" in record,
            "safe_action_problem": record.get("safe_action_problem"),
            "exit_path": record.get("exit_path"),
            "frames_acquired": acquired, "frames_acquired_before_fault": before,
            "frames_from_catalog": readable,
            "frames_lost": max(0, before - readable),
            "frames_lost_from_catalog": max(0, before - readable),
        }
    finally:
        if catalog is not None:
            with contextlib.suppress(Exception):
                catalog.close()
        if ioc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(ioc.pid, signal.SIGKILL)
            ioc.wait(10)
        log.close()


SCENARIOS = {
    "exit_paths": scenario_exit_paths,
    "service_restart": scenario_service_restart,
    "stalled_subscriber": scenario_stalled_subscriber,
    "corrupt_frame": scenario_corrupt_frame,
    "catalog_unreachable": scenario_catalog_unreachable,
    "disk_full": scenario_disk_full,
    "ioc_killed": scenario_ioc_killed,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32, help="frame side (pixels)")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), default=None)
    parser.add_argument("--work", default=None, help="working folder (default: a temp dir)")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.CRITICAL)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_faults-"))
    t0 = time.monotonic()
    results: list[dict[str, Any]] = []
    skipped = []
    with contextlib.redirect_stdout(sys.stderr):  # the RunEngine prints; JSON goes out
        for name in args.only or list(SCENARIOS):
            kwargs = {"size": args.size} if name != "disk_full" else {}
            got = SCENARIOS[name](work / name, **kwargs)
            if got is None:
                skipped.append(name)
            elif isinstance(got, list):
                results.extend(got)
            else:
                results.append(got)
    errors = [r["fault_to_error_s"] for r in results if r.get("fault_to_error_s") is not None]
    report = {
        "size": args.size,
        "energies": int(GRID_EV.size),
        "scenarios": results,
        "skipped": skipped,
        "faults_injected": sum(r["faults_injected"] for r in results),
        "frames_acquired": sum(r["frames_acquired"] for r in results),
        "acquired_frames_lost": sum(r["frames_lost"] for r in results),
        "frames_acquired_before_fault_missing_from_catalog":
            sum(r["frames_lost_from_catalog"] for r in results),
        "runs": len(results),
        "runs_with_reachable_heater": sum(1 for r in results if r["heater_safe"] is not None),
        "runs_ending_heater_safe": sum(1 for r in results if r["heater_safe"]),
        "runs_with_safe_state_in_documents": sum(1 for r in results
                                                 if r["safe_state_recorded"]),
        "fault_to_clear_error_s": {"max": max(errors), "median": float(np.median(errors))}
        if errors else None,
        "targets": {
            "zero_acquired_frames_lost": all(r["frames_lost"] == 0 for r in results),
            "all_runs_heater_safe": all(r["heater_safe"] for r in results
                                        if r["heater_safe"] is not None),
            "safe_state_attempt_reported_when_unreachable": all(
                r.get("safe_state_attempt_reported") for r in results
                if r["heater_safe"] is None),
        },
        "wall_s": time.monotonic() - t0,
    }
    print(json.dumps(report, indent=2, default=str))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
