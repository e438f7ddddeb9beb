"""``thermoxanes demo``: a simulated in situ heating XANES experiment, end to end.

The RunEngine drives simulated devices through a heating program (holds at 25, 150, 200
and 250 °C as in seed 002, XANES sweeps during the holds); runs are saved into an embedded
tiled catalog (frames in HDF5 files); documents and frames are published over ZeroMQ to
the analysis service, started as a separate process, which fits each sweep and writes
maps, figures and ``summary.json``. The simulator's ground truth is written beside, so the
summary reports the valence error of every map.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import h5py
import numpy as np

from thermoxanes.plans.energy_grid import xanes_energy_grid
from thermoxanes.plans.heating import HeaterLimits, HeatingProgram, heating_series
from thermoxanes.profiles.beamline import Beamline, build_beamline
from thermoxanes.profiles.schema import load_profile
from thermoxanes.storage.catalog import EmbeddedCatalog, how_to_open


@dataclass
class DemoOptions:
    """Settings of one demo run."""

    out: Path
    size: int = 512
    preset: str | None = None
    seed: int = 0
    hold_s: float = 1200.0
    sweeps_per_hold: int = 1
    rate_c_per_min: float = 5.0
    profile: str = "sim"
    batch_size: int = 20
    analysis_timeout_s: float = 300.0
    monitor: bool = False
    monitor_port: int = 8765


class TruthWriter:
    """RunEngine callback writing each sweep's ground-truth valence map (simulators only).

    Subscribed before the publisher, so the file exists before the stop document leaves.
    The map is the mean of the truth at the start and at the end of the sweep, both in the
    geometry of the start (the frame the analysis registers to).
    """

    def __init__(self, world: Any, directory: Path):
        self.world = world
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._start: dict[str, tuple[np.ndarray, np.ndarray, dict[str, Any]]] = {}

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if name == "start" and doc.get("plan_name") == "xanes_sweep":
            truth = self.world.truth()
            self._start[doc["uid"]] = (self.world.drift_um(), truth["valence"], truth)
        elif name == "stop" and doc["run_start"] in self._start:
            drift0, valence0, truth0 = self._start.pop(doc["run_start"])
            offset = drift0 - self.world.drift_um()
            truth1 = self.world.truth(sample_xy_um=(float(offset[0]), float(offset[1])))
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                valence = np.nanmean(np.stack([valence0, truth1["valence"]]), axis=0)
            with h5py.File(self.directory / f"{doc['run_start']}.h5", "w") as fh:
                fh["valence"] = valence.astype(np.float32)
                fh["valence_start"] = valence0
                fh["valence_end"] = truth1["valence"]
                fh["whiteline_energy_start"] = truth0["whiteline_energy"]
                fh["edge_energy_start"] = truth0["edge_energy"]
                fh["thickness_um_start"] = truth0["thickness_um"]
                fh.attrs["temperature_c_start"] = float(truth0["temperature_c"])
                fh.attrs["temperature_c_end"] = float(truth1["temperature_c"])


class Progress:
    """RunEngine callback printing sweep k of n, temperature and time left."""

    def __init__(self, num_sweeps: int, n_energies: int, stream: TextIO = sys.stdout):
        self.num_sweeps = num_sweeps
        self.n_energies = n_energies
        self.stream = stream
        self.t0 = time.monotonic()
        self.sweeps_done = 0
        self._primary: set[str] = set()
        self._sweeps: set[str] = set()
        self._points = 0
        self._sweep_index = 0

    def _eta(self) -> str:
        done = self.sweeps_done + self._points / max(self.n_energies, 1)
        if done <= 0:
            return "?"
        left = (time.monotonic() - self.t0) / done * (self.num_sweeps - done)
        return f"{left:4.0f} s"

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if name == "start" and doc.get("plan_name") == "xanes_sweep":
            self._sweeps.add(doc["uid"])
            self._points = 0
            self._sweep_index = int(doc.get("sweep_index", 0))
        elif name == "descriptor" and doc.get("name") == "primary":
            self._primary.add(doc["uid"])
        elif name == "event" and doc["descriptor"] in self._primary:
            self._points += 1
            if self._points % 17 == 0 or self._points == self.n_energies:
                data = doc["data"]
                sim_min = data.get("clock_time_s", 0.0) / 60.0
                print(f"  sweep {self._sweep_index + 1} of {self.num_sweeps}: "
                      f"energy {self._points}/{self.n_energies} "
                      f"({data.get('mono_energy_ev', float('nan')):.0f} eV), "
                      f"T = {data.get('heater_temperature_c', float('nan')):6.1f} C, "
                      f"beamtime {sim_min:6.1f} min, time left ~{self._eta()}",
                      file=self.stream, flush=True)
        elif name == "stop" and doc.get("run_start") in self._sweeps:
            self.sweeps_done += 1


def _free_tcp_ports(n: int) -> list[int]:
    """``n`` distinct free loopback TCP ports (all held open while picking)."""
    import contextlib
    import socket

    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _start_analysis(endpoint: str, opts: DemoOptions, num_sweeps: int,
                    maps_endpoint: str | None = None,
                    maps_snapshot_endpoint: str | None = None) -> subprocess.Popen:
    analysis_dir = opts.out / "analysis"
    analysis_dir.mkdir(parents=True, exist_ok=True)
    ready = analysis_dir / "ready"
    ready.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "thermoxanes.cli", "analyze", "--endpoint", endpoint,
           "--out", str(analysis_dir), "--truth-dir", str(opts.out / "truth"),
           "--max-sweeps", str(num_sweeps), "--idle-timeout-s", "60",
           "--ready-file", str(ready), "--catalog-dir", str(opts.out)]
    if maps_endpoint:
        cmd += ["--maps-endpoint", maps_endpoint]
        if maps_snapshot_endpoint:
            cmd += ["--maps-snapshot-endpoint", maps_snapshot_endpoint]
    log = open(analysis_dir / "analysis.log", "w")  # noqa: SIM115 - lives with the process
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120.0
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"analysis service exited with {proc.returncode}; "
                               f"see {analysis_dir / 'analysis.log'}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("analysis service did not become ready within 120 s")
        time.sleep(0.1)
    return proc


@dataclass
class DemoServices:
    """The processes and endpoints the demo starts beside the RunEngine.

    ``maps_endpoint`` and ``maps_snapshot_endpoint`` are bound by the analysis service
    (``thermoxanes analyze --maps-endpoint/--maps-snapshot-endpoint``) when the demo
    serves the monitor; a second ``thermoxanes monitor`` started mid-demo with both gets
    every sweep fitted before it joined.
    """

    analysis: subprocess.Popen
    monitor: Any = None
    maps_endpoint: str | None = None
    maps_snapshot_endpoint: str | None = None


def _start_services(data_endpoint: str, opts: DemoOptions, num_sweeps: int,
                    stream: TextIO) -> DemoServices:
    """Start the analysis service and, with ``opts.monitor``, the monitor."""
    print(f"  starting the analysis service (separate process) on {data_endpoint}",
          file=stream, flush=True)
    maps_endpoint = maps_snapshot_endpoint = None
    if opts.monitor:
        maps_endpoint, maps_snapshot_endpoint = (
            f"tcp://127.0.0.1:{port}" for port in _free_tcp_ports(2))
    analysis = _start_analysis(data_endpoint, opts, num_sweeps, maps_endpoint,
                               maps_snapshot_endpoint)
    services = DemoServices(analysis, maps_endpoint=maps_endpoint,
                            maps_snapshot_endpoint=maps_snapshot_endpoint)
    if opts.monitor:
        from thermoxanes.monitor.server import start_monitor

        try:
            services.monitor = start_monitor(maps_endpoint, data_endpoint,
                                             port=opts.monitor_port,
                                             maps_snapshot_endpoint=maps_snapshot_endpoint)
        except BaseException:
            analysis.terminate()
            raise
        print(f"  live monitor: {services.monitor.url} (map updates {maps_endpoint}, "
              f"maps snapshot {maps_snapshot_endpoint}, documents {data_endpoint})\n"
              f"  another monitor can join at any time: thermoxanes monitor --port 0 "
              f"--maps-endpoint {maps_endpoint} --maps-snapshot-endpoint "
              f"{maps_snapshot_endpoint} --data-endpoint {data_endpoint}",
              file=stream, flush=True)
    return services


def run_demo(opts: DemoOptions, stream: TextIO = sys.stdout) -> dict[str, Any]:
    """Run the demo; return the analysis summary (also in ``out/analysis/summary.json``)."""
    from bluesky import RunEngine

    from thermoxanes.streaming.publisher import Publisher

    t_start = time.monotonic()
    opts.out.mkdir(parents=True, exist_ok=True)
    profile = load_profile(opts.profile)
    program = HeatingProgram.seed002(opts.hold_s, opts.sweeps_per_hold, opts.rate_c_per_min)
    energies = xanes_energy_grid()
    num_sweeps = program.num_sweeps
    print(f"thermoxanes demo: {num_sweeps} sweeps x {energies.size} energies, "
          f"{opts.size}x{opts.size} frames, holds at 25/150/200/250 C, output in {opts.out}",
          file=stream, flush=True)
    catalog = EmbeddedCatalog(opts.out)
    beamline: Beamline = build_beamline(profile, catalog.raw_dir, size=opts.size,
                                        seed=opts.seed, preset=opts.preset)
    publisher = Publisher("tcp://127.0.0.1:*", frame_lookup=beamline.camera.frame_lookup,
                          header_keys=beamline.header_keys)
    analysis = None
    monitor = None
    try:
        services = _start_services(publisher.endpoint, opts, num_sweeps, stream)
        analysis, monitor = services.analysis, services.monitor
        RE = RunEngine({})
        # Order matters: the truth file must exist before the stop document is published,
        # and the publisher comes before the catalog writer so that a failing catalog
        # cannot keep documents from the analysis.
        RE.subscribe(TruthWriter(beamline.world, opts.out / "truth"))
        RE.subscribe(publisher)
        RE.subscribe(Progress(num_sweeps, energies.size, stream))
        RE.subscribe(catalog.writer(batch_size=opts.batch_size))
        RE(heating_series(
            beamline.camera, beamline.mono, beamline.sample_x, beamline.shutter,
            beamline.heater, beamline.clock, program, energies,
            readables=[beamline.rotation, beamline.ring],
            n_darks=profile.acquisition.n_darks, n_flats=profile.acquisition.n_flats,
            sample_out_offset_um=profile.sample_stage.out_offset_um,
            safe_temperature_c=profile.heater.safe_temperature_c,
            limits=HeaterLimits.from_profile(profile.heater),
            safe_state=profile.heater.safe_state,
            md={"sample": beamline.world.preset.name, "profile": profile.name},
        ))
        print(f"  acquisition done: {num_sweeps} sweeps, heater safe at "
              f"{beamline.world.heater.temperature_c:.0f} C, beamtime "
              f"{beamline.world.clock.now() / 3600:.2f} h simulated; waiting for the analysis",
              file=stream, flush=True)
        publisher.flush(timeout_s=60.0)
        analysis.wait(timeout=opts.analysis_timeout_s)
    except BaseException:
        if monitor is not None:
            monitor.close()
        raise
    finally:
        if analysis is not None and analysis.poll() is None:
            analysis.terminate()
        publisher.close()
        catalog.close()
    summary_path = opts.out / "analysis" / "summary.json"
    if not summary_path.exists():
        if monitor is not None:
            monitor.close()
        raise RuntimeError(f"the analysis service wrote no summary; see "
                           f"{opts.out / 'analysis' / 'analysis.log'}")
    summary = json.loads(summary_path.read_text())
    _print_summary(summary, opts, time.monotonic() - t_start, stream)
    if monitor is not None:
        print(f"\nThe monitor keeps serving {monitor.url}; Ctrl-C to end.", file=stream,
              flush=True)
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            monitor.close()
    return summary


def _fmt(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "-"


def _print_summary(summary: dict[str, Any], opts: DemoOptions, elapsed_s: float,
                   stream: TextIO) -> None:
    print("\n sweep  T (C)   edge (eV)  white line (eV)  valence  RMS error vs truth",
          file=stream)
    for s in summary["sweeps"]:
        print(f"  {s['sweep_index']:3d}  {_fmt(s.get('temperature_c'), '6.1f')}  "
              f"{_fmt(s.get('mean_edge_energy_ev'), '9.2f')}  "
              f"{_fmt(s.get('mean_whiteline_energy_ev'), '15.2f')}  "
              f"{_fmt(s.get('mean_valence'), '7.3f')}  "
              f"{_fmt(s.get('valence_rms_error'), '.3f')}"
              + ("" if s.get("complete") else f"  NOT FITTED: {s.get('problem')}"),
              file=stream)
    out = opts.out.resolve()
    print(f"\nDone in {elapsed_s:.0f} s. Outputs in {out}:", file=stream)
    print(f"  maps      {out / 'analysis' / 'maps'}", file=stream)
    print(f"  figures   {out / 'analysis' / 'figures'}", file=stream)
    print(f"  summary   {out / 'analysis' / 'summary.json'}", file=stream)
    print(f"  raw data  {out / 'raw'} (HDF5) and the tiled catalog {out / 'catalog'}",
          file=stream)
    print("Open the catalog with the tiled client:\n"
          + "\n".join("    " + line for line in how_to_open(out).splitlines()), file=stream)


def default_out() -> Path:
    """``demo_output/run-YYYYmmdd-HHMMSS`` under the current folder."""
    return Path("demo_output") / time.strftime("run-%Y%m%d-%H%M%S")


def ensure_empty(path: Path) -> None:
    """Refuse to mix a new demo into an earlier one's folder."""
    if path.exists() and any(path.iterdir()):
        raise ValueError(f"output folder {path} is not empty; choose another --out")


__all__ = ["DemoOptions", "run_demo", "default_out", "ensure_empty"]
