"""The analysis service: subscribe to frames, fit every sweep, write and publish maps.

Run as its own process (``thermoxanes analyze``). For each sweep (one bluesky run) it
feeds darks, flats and sample frames to a :class:`SweepAccumulator` as they arrive; when
the run's stop document comes it finishes the fit and writes, under ``out_dir``:

- ``maps/sweep_NNN.h5``: the maps (``XanesMaps.to_hdf5``), with the run uid, series uid,
  sweep index and mean temperature as attributes;
- ``figures/valence_sweep_NNN.png``, ``figures/differential_sweep_NNN.png`` (against the
  previous sweep of the series) and ``figures/histogram_evolution.png``;
- ``summary.json``: one entry per sweep (temperature, mean edge energy, mean valence, and
  the RMS error against a ground-truth map when one is available in ``truth_dir``).

A sweep with frames missing in transit is marked incomplete and not fitted: a map never
mixes two sweeps or fills holes silently. A service (re)started while a sweep is under way
ignores that sweep's frames (it never saw its start) and begins with the next one.

Corrupt frames (a detector readout glitch: rows of zeros or stuck at saturation, a constant
frame, non-finite values, a wrong shape) are flagged in the summary entry
(``corrupt_frames``): the bad rows of a partly corrupt frame are masked (they enter the
accumulator as saturated pixels, which it leaves out); a wholly corrupt frame is dropped,
and if that leaves an energy without a frame the sweep is fitted on the energies present
and marked ``complete: False`` with the reason.

Runs that are not sweeps (no ``energies_ev`` in the start document, e.g. the
``heater_safe_state`` run a heating program ends with) are not fitted; their start
metadata and first event are listed under ``heater_safe_state`` in ``summary.json``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from thermoxanes.analysis.accumulator import SweepAccumulator
from thermoxanes.analysis.config import FitConfig
from thermoxanes.analysis.differential import differential_map
from thermoxanes.analysis.maps import XanesMaps
from thermoxanes.streaming.protocol import DocumentMessage, FrameMessage
from thermoxanes.streaming.publisher import Publisher
from thermoxanes.streaming.subscriber import Subscriber

log = logging.getLogger(__name__)

#: Map arrays sent in every map-update message.
PUBLISHED_MAPS = ("valence", "valence_sigma", "edge_energy", "edge_energy_sigma",
                  "whiteline_energy", "edge_jump", "mask")
#: Bin edges of the full-resolution histograms sent with every map update.
VALENCE_HISTOGRAM_EDGES = np.linspace(1.5, 4.5, 151)       # 0.02 valence units
DIFFERENTIAL_HISTOGRAM_EDGES = np.linspace(-2.0, 2.0, 401)  # 0.01 valence units


def map_histograms(valence: np.ndarray, differential: np.ndarray | None = None,
                   mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Full-resolution histograms of a sweep's maps, as sent in its map update.

    Returns ``valence_histogram`` (int64 counts of the finite valences inside ``mask``)
    and ``valence_histogram_edges`` (float64 bin edges), and the same for
    ``differential`` (``differential_histogram``, ``differential_histogram_edges``).
    Values outside the edges are not counted.  These are small (a few kB): a publisher
    with a snapshot endpoint keeps them for late joiners (``summary_arrays``).
    """
    out: dict[str, np.ndarray] = {}
    for name, values, edges in (("valence", valence, VALENCE_HISTOGRAM_EDGES),
                                ("differential", differential,
                                 DIFFERENTIAL_HISTOGRAM_EDGES)):
        if values is None:
            continue
        values = np.asarray(values)
        keep = np.isfinite(values)
        if mask is not None and np.shape(mask) == values.shape:
            keep &= np.asarray(mask, dtype=bool)
        counts, _ = np.histogram(values[keep], bins=edges)
        out[f"{name}_histogram"] = counts.astype(np.int64)
        out[f"{name}_histogram_edges"] = edges
    return out


def _suffix_value(data: dict[str, Any], suffix: str) -> float | None:
    for key, value in data.items():
        if key.endswith(suffix) and isinstance(value, (int, float)):
            return float(value)
    return None


@dataclass
class _Sweep:
    """What the service knows of one run while it arrives."""

    run_uid: str
    start: dict[str, Any]
    streams: dict[str, str] = field(default_factory=dict)  # descriptor uid -> stream name
    accumulator: SweepAccumulator | None = None
    temperatures_c: list[float] = field(default_factory=list)
    times_s: list[float] = field(default_factory=list)
    n_frames: int = 0
    first_frame_at: float | None = None
    error: str | None = None
    corrupt: list[dict[str, Any]] = field(default_factory=list)
    dropped_energies: list[float] = field(default_factory=list)
    corrupt_pixels: np.ndarray | None = None  # (H, W) bool: masked in the maps

    @property
    def sweep_index(self) -> int:
        return int(self.start.get("sweep_index", 0))

    @property
    def series_uid(self) -> str | None:
        return self.start.get("series_uid")


class AnalysisService:
    """Fit sweeps arriving over the wire protocol.

    Parameters
    ----------
    endpoint : str
        Publisher endpoint of the acquisition (e.g. ``tcp://127.0.0.1:5577``).
    out_dir : path
        Where maps, figures and ``summary.json`` go.
    maps_endpoint : str, optional
        Bind a publisher there and send a map update after every sweep.
    config : FitConfig, optional
        Fit settings.
    truth_dir : path, optional
        Folder with ``<run_uid>.h5`` files holding a ``valence`` ground-truth map (written
        by the simulator); if present the summary gets the RMS error against it.
    snapshot_endpoint : str, optional
        The publisher's snapshot endpoint, to join a sweep in progress.
    maps_snapshot_endpoint : str, optional
        Bind a snapshot endpoint for the map updates there: a late joiner (e.g. a monitor
        started mid-series) gets the histograms and means of every earlier sweep and the
        latest maps in full.
    figures : bool
        Write PNG figures.
    result_sinks : sequence of callables, optional
        Each is called as ``sink(entry, maps, start_doc)`` after a sweep was fitted and its
        files written (``entry``: the summary entry; ``maps``: :class:`XanesMaps`;
        ``start_doc``: the raw run's start document), e.g. to store the maps in a catalog.
        A sink that raises is logged and recorded in the entry; the service goes on.
    """

    def __init__(
        self,
        endpoint: str,
        out_dir: str | Path,
        *,
        maps_endpoint: str | None = None,
        config: FitConfig | None = None,
        truth_dir: str | Path | None = None,
        snapshot_endpoint: str | None = None,
        maps_snapshot_endpoint: str | None = None,
        figures: bool = True,
        result_sinks: Sequence[Callable[[dict[str, Any], XanesMaps, dict[str, Any]], Any]] = (),
    ) -> None:
        self.out_dir = Path(out_dir)
        self.maps_dir = self.out_dir / "maps"
        self.figures_dir = self.out_dir / "figures"
        self.maps_dir.mkdir(parents=True, exist_ok=True)
        if figures:
            self.figures_dir.mkdir(parents=True, exist_ok=True)
        self.config = config or FitConfig()
        self.truth_dir = Path(truth_dir) if truth_dir else None
        self.figures = figures
        self.result_sinks = list(result_sinks)
        self.subscriber = Subscriber(endpoint, snapshot_endpoint=snapshot_endpoint)
        self.map_publisher = Publisher(
            maps_endpoint, snapshot_endpoint=maps_snapshot_endpoint) if maps_endpoint else None
        self._sweeps: dict[str, _Sweep] = {}
        self._previous: dict[str | None, tuple[XanesMaps, int]] = {}
        self._history: list[tuple[np.ndarray, float, str]] = []
        self.summary: list[dict[str, Any]] = []
        self.other_runs: list[dict[str, Any]] = []
        self.fitted_here = 0  # sweeps finished by this process (summary may hold more)
        self._load_summary()
        self._others: dict[str, dict[str, Any]] = {}
        self._other_descriptors: dict[str, str] = {}
        self.messages = 0

    # -- message handling -----------------------------------------------------------------
    def handle(self, message: Any) -> dict[str, Any] | None:
        """Process one message; returns the summary entry when a sweep finished."""
        self.messages += 1
        if isinstance(message, DocumentMessage):
            return self._handle_document(message.name, message.doc)
        if isinstance(message, FrameMessage):
            self._handle_frame(message)
        return None

    def _handle_document(self, name: str, doc: dict[str, Any]) -> dict[str, Any] | None:
        if name == "start":
            if not doc.get("energies_ev"):
                self._others[doc["uid"]] = {
                    "run_uid": doc["uid"], "plan_name": doc.get("plan_name"),
                    **{k: doc.get(k) for k in ("series_uid", "exit_path", "error",
                                               "safe_state", "safe_action_done",
                                               "safe_action_problem") if k in doc}}
                log.info("run %s (%s) is not a sweep: recorded, not fitted",
                         doc["uid"][:8], doc.get("plan_name"))
                return None
            self._sweeps[doc["uid"]] = _Sweep(run_uid=doc["uid"], start=doc)
            log.info("sweep %s started (run %s)", doc.get("sweep_index"), doc["uid"][:8])
        elif name == "descriptor":
            sweep = self._sweeps.get(doc.get("run_start"))
            if sweep is not None:
                sweep.streams[doc["uid"]] = doc.get("name", "")
            elif doc.get("run_start") in self._others:
                self._other_descriptors[doc["uid"]] = doc["run_start"]
        elif name == "event" and doc.get("descriptor") in self._other_descriptors:
            other = self._others.get(self._other_descriptors[doc["descriptor"]])
            if other is not None and "data" not in other:
                other["data"] = {k: v for k, v in doc.get("data", {}).items()
                                 if isinstance(v, (int, float, str, bool))}
        elif name == "event":
            for sweep in self._sweeps.values():
                if sweep.streams.get(doc.get("descriptor")) == "primary":
                    data = doc.get("data", {})
                    temp = _suffix_value(data, "temperature_c")
                    if temp is not None:
                        sweep.temperatures_c.append(temp)
                    t = _suffix_value(data, "time_s")
                    if t is not None:
                        sweep.times_s.append(t)
                    break
        elif name == "stop":
            other = self._others.pop(doc.get("run_start"), None)
            if other is not None:
                other["exit_status"] = doc.get("exit_status")
                self.other_runs.append(other)
                self._write_summary()
                return None
            sweep = self._sweeps.pop(doc.get("run_start"), None)
            if sweep is not None:
                return self._finish(sweep, doc)
        return None

    @staticmethod
    def _check_frame(frame: np.ndarray, shape: tuple[int, ...] | None) -> tuple[str, Any]:
        """``("ok", None)``, ``("rows", bad_rows)`` or ``("whole", reason)``."""
        if frame.ndim != 2 or (shape is not None and tuple(frame.shape) != tuple(shape)):
            return "whole", f"shape {tuple(frame.shape)}, expected {shape}"
        if frame.dtype.kind == "f":
            finite = np.isfinite(frame)
            if not finite.all():
                bad_rows = ~finite.all(axis=1)
                if bad_rows.mean() > 0.5:
                    return "whole", "non-finite values"
                return "rows", bad_rows
        lo, hi = frame.min(), frame.max()
        if lo == hi:
            return "whole", f"constant frame ({lo})"
        top = np.iinfo(frame.dtype).max if frame.dtype.kind in "ui" else None
        bad_rows = (frame == 0).all(axis=1)
        if top is not None:
            bad_rows |= (frame == top).all(axis=1)
        if bad_rows.any():
            if bad_rows.mean() > 0.5:
                return "whole", f"{int(bad_rows.sum())} of {frame.shape[0]} rows zero/stuck"
            return "rows", bad_rows
        return "ok", None

    def _handle_frame(self, message: FrameMessage) -> None:
        header = message.header
        sweep = self._sweeps.get(header.get("run_uid"))
        if sweep is None or sweep.error:
            return
        frame = message.array
        stream = header.get("stream")
        energy = header.get("energy_ev")
        shape = sweep.accumulator.frame_shape if sweep.accumulator is not None else None
        verdict, detail = self._check_frame(np.asarray(frame), shape)
        if verdict != "ok":
            record = {"stream": stream, "energy_ev": energy, "seq": header.get("seq"),
                      "datum_id": header.get("datum_id")}
            if verdict == "whole":
                record.update(action="dropped", reason=str(detail))
                sweep.corrupt.append(record)
                if stream == "primary" and energy is not None:
                    sweep.dropped_energies.append(float(energy))
                log.warning("sweep %d: corrupt %s frame at %s eV dropped: %s",
                            sweep.sweep_index, stream, energy, detail)
                return
            rows = np.flatnonzero(detail)
            record.update(action="masked", rows=[int(rows[0]), int(rows[-1]) + 1],
                          n_rows=int(rows.size))
            sweep.corrupt.append(record)
            log.warning("sweep %d: %d corrupt rows of a %s frame at %s eV masked",
                        sweep.sweep_index, rows.size, stream, energy)
            if sweep.corrupt_pixels is None:
                sweep.corrupt_pixels = np.zeros(frame.shape, dtype=bool)
            sweep.corrupt_pixels[detail] = True
            frame = np.array(frame, copy=True)
            if frame.dtype.kind in "ui":
                frame[detail] = np.iinfo(frame.dtype).max  # saturated: left out of the fit
            else:
                frame[detail] = np.nan
        try:
            if sweep.accumulator is None:
                energies = sweep.start.get("energies_ev")
                if not energies:
                    raise ValueError("start document has no energies_ev")
                sweep.accumulator = SweepAccumulator(
                    np.asarray(energies, dtype=np.float64), frame.shape, self.config)
                sweep.first_frame_at = time.monotonic()
            if stream == "dark":
                sweep.accumulator.add_dark(frame)
            elif stream == "flat":
                sweep.accumulator.add_flat(frame, energy_ev=energy)
            elif stream == "primary":
                if energy is None:
                    raise ValueError("sample frame without energy_ev in its header")
                sweep.accumulator.add_frame(frame, energy_ev=energy)
            sweep.n_frames += 1
        except ValueError as exc:
            sweep.error = str(exc)
            log.error("sweep %d (run %s): %s", sweep.sweep_index, sweep.run_uid[:8], exc)

    # -- finishing a sweep ----------------------------------------------------------------
    def _finish(self, sweep: _Sweep, stop: dict[str, Any]) -> dict[str, Any]:
        t0 = time.monotonic()
        gaps = self.subscriber.run_info(sweep.run_uid)
        entry: dict[str, Any] = {
            "sweep_index": sweep.sweep_index,
            "run_uid": sweep.run_uid,
            "series_uid": sweep.series_uid,
            "exit_status": stop.get("exit_status"),
            "setpoint_c": sweep.start.get("setpoint_c"),
            "temperature_c": float(np.mean(sweep.temperatures_c)) if sweep.temperatures_c
            else None,
            "time_s": float(np.mean(sweep.times_s)) if sweep.times_s else None,
            "n_frames": sweep.n_frames,
            "complete": False,
        }
        if sweep.corrupt:
            entry["corrupt_frames"] = sweep.corrupt
        problem = sweep.error
        if problem is None and not gaps.complete:
            problem = (f"{gaps.missed_messages} messages missing in transit"
                       + (" (joined late)" if gaps.joined_late else ""))
        if problem is None and sweep.accumulator is None:
            problem = "no frames received"
        maps = None
        partial = None
        if problem is None:
            missing = sweep.accumulator.missing_energies
            if missing and sweep.dropped_energies:
                # holes left by dropped corrupt frames: fit what is there, say so
                partial = (f"corrupt frame(s) dropped; missing energies "
                           f"{', '.join(f'{e:g}' for e in missing[:10])} eV; fitted on the "
                           f"energies present")
            try:
                maps = sweep.accumulator.finish(allow_partial=partial is not None)
            except ValueError as exc:
                problem = str(exc) if partial is None else f"{partial}: {exc}"
        if maps is None:
            entry["problem"] = problem
            log.warning("sweep %d not fitted: %s", sweep.sweep_index, problem)
            self._record(entry)
            return entry
        if sweep.corrupt_pixels is not None:
            self._mask_pixels(maps, sweep.corrupt_pixels)
        entry["complete"] = partial is None
        if partial is not None:
            entry["problem"] = partial
        entry["fit_latency_s"] = time.monotonic() - t0
        entry.update(self._statistics(maps))
        entry["report"] = sweep.accumulator.report
        stem = f"sweep_{sweep.sweep_index:03d}"
        maps_path = self.maps_dir / f"{stem}.h5"
        maps.to_hdf5(maps_path, attrs={
            "run_uid": sweep.run_uid, "series_uid": sweep.series_uid or "",
            "sweep_index": sweep.sweep_index,
            "temperature_c": entry["temperature_c"] if entry["temperature_c"] is not None
            else np.nan,
        })
        entry["maps_file"] = str(maps_path.relative_to(self.out_dir))
        truth = self._truth(sweep.run_uid)
        if truth is not None:
            both = maps.mask & np.isfinite(truth) & np.isfinite(maps.valence)
            error = maps.valence[both].astype(np.float64) - truth[both]
            entry["truth_mean_valence"] = float(truth[both].mean()) if both.any() else None
            entry["valence_rms_error"] = float(np.sqrt(np.mean(error**2))) if both.any() else None
            entry["valence_bias"] = float(error.mean()) if both.any() else None
        previous = self._previous.get(sweep.series_uid)
        diff = None
        if previous is not None and previous[0].shape == maps.shape:
            diff = differential_map(previous[0], maps, "valence")
            values = diff.delta[diff.mask]
            entry["differential"] = {
                "against_sweep": previous[1],
                "mean_delta_valence": float(values.mean()) if values.size else None,
                "fraction_significant_oxidation": float(np.mean(diff.z[diff.mask] > 3.0))
                if values.size else None,
                "fraction_significant_reduction": float(np.mean(diff.z[diff.mask] < -3.0))
                if values.size else None,
            }
        self._previous[sweep.series_uid] = (maps, sweep.sweep_index)
        label = f"sweep {sweep.sweep_index}"
        self._history.append((maps.valence, entry["temperature_c"] or np.nan, label))
        if self.figures:
            self._figures(stem, maps, diff, entry)
        self._publish(sweep, maps, diff, entry)
        for sink in self.result_sinks:
            try:
                sink(entry, maps, sweep.start)
            except Exception as exc:  # noqa: BLE001 - a sink must not stop the service
                log.exception("result sink %r failed", sink)
                entry.setdefault("sink_errors", []).append(f"{type(exc).__name__}: {exc}")
        self._record(entry)
        log.info("sweep %d fitted: mean valence %.3f", sweep.sweep_index, entry["mean_valence"])
        return entry

    @staticmethod
    def _mask_pixels(maps: XanesMaps, bad: np.ndarray) -> None:
        """Take ``bad`` pixels out of the maps: mask False, every float map NaN there."""
        if bad.shape != maps.mask.shape:
            return
        maps.mask[bad] = False
        for value in vars(maps).values():
            if isinstance(value, np.ndarray) and value.shape == bad.shape \
                    and value.dtype.kind == "f":
                value[bad] = np.nan

    @staticmethod
    def _statistics(maps: XanesMaps) -> dict[str, Any]:
        mask = maps.mask
        n = int(mask.sum())

        def mean(a: np.ndarray) -> float | None:
            values = a[mask & np.isfinite(a)]
            return float(values.mean()) if values.size else None

        return {
            "n_pixels": n,
            "mean_edge_energy_ev": mean(maps.edge_energy),
            "mean_whiteline_energy_ev": mean(maps.whiteline_energy),
            "mean_valence": mean(maps.valence),
            "std_valence": float(np.nanstd(maps.valence[mask])) if n else None,
            "median_valence_sigma": float(np.nanmedian(maps.valence_sigma[mask])) if n else None,
        }

    def _truth(self, run_uid: str) -> np.ndarray | None:
        if self.truth_dir is None:
            return None
        path = self.truth_dir / f"{run_uid}.h5"
        for _ in range(20):  # the writer may still be closing the file
            if path.exists():
                try:
                    with h5py.File(path, "r") as fh:
                        return fh["valence"][()].astype(np.float64)
                except OSError:
                    pass
            time.sleep(0.05)
        return None

    def _figures(self, stem: str, maps: XanesMaps, diff: Any, entry: dict[str, Any]) -> None:
        from thermoxanes.streaming import figures

        temp = entry["temperature_c"]
        title = f"sweep {entry['sweep_index']}" + (f", {temp:.0f} °C" if temp is not None else "")
        figures.valence_map_png(self.figures_dir / f"valence_{stem}.png", maps.valence,
                                title=title)
        if diff is not None:
            figures.differential_png(
                self.figures_dir / f"differential_{stem}.png", diff.delta, diff.z,
                title=f"{title} minus sweep {entry['differential']['against_sweep']}")
        figures.histogram_evolution_png(
            self.figures_dir / "histogram_evolution.png",
            [h[0] for h in self._history], [h[1] for h in self._history],
            [h[2] for h in self._history])

    def _publish(self, sweep: _Sweep, maps: XanesMaps, diff: Any, entry: dict[str, Any]) -> None:
        if self.map_publisher is None:
            return
        arrays = {name: getattr(maps, name) for name in PUBLISHED_MAPS}
        if diff is not None:
            arrays["differential_valence"] = diff.delta
            arrays["differential_z"] = diff.z
        histograms = map_histograms(maps.valence, None if diff is None else diff.delta,
                                    maps.mask)
        arrays.update(histograms)
        header = {k: v for k, v in entry.items() if k != "report"}
        header["run_uid"] = sweep.run_uid
        # what a late joiner's snapshot keeps of this update (docs/protocol.md, 7)
        header["summary_arrays"] = list(histograms)
        self.map_publisher.send_map_update(header, arrays)

    def _load_summary(self) -> None:
        """A restarted service appends to the summary it finds (never overwrites it)."""
        path = self.out_dir / "summary.json"
        if not path.exists():
            return
        try:
            content = json.loads(path.read_text())
            self.summary = list(content.get("sweeps", []))
            self.other_runs = list(content.get("heater_safe_state", []))
        except (OSError, ValueError) as exc:
            backup = path.with_suffix(f".unreadable-{int(time.time())}.json")
            path.replace(backup)
            log.warning("summary.json unreadable (%s): kept as %s, starting afresh", exc, backup)
            return
        log.info("restarted: %d sweeps already in %s", len(self.summary), path)

    def _record(self, entry: dict[str, Any]) -> None:
        self.summary.append(entry)
        self.fitted_here += 1
        self._write_summary()

    def _write_summary(self) -> None:
        content: dict[str, Any] = {"sweeps": self.summary}
        if self.other_runs:
            content["heater_safe_state"] = self.other_runs
        tmp = self.out_dir / "summary.json.tmp"
        tmp.write_text(json.dumps(content, indent=2, default=float))
        tmp.replace(self.out_dir / "summary.json")

    # -- main loop ------------------------------------------------------------------------
    def run(
        self,
        *,
        max_sweeps: int | None = None,
        idle_timeout_s: float | None = None,
        ready_file: str | Path | None = None,
    ) -> list[dict[str, Any]]:
        """Receive and process until ``max_sweeps`` sweeps ended (in this process) or
        nothing came for ``idle_timeout_s`` seconds (``None``: run until interrupted).

        ``ready_file`` is created once the first message (normally a heartbeat) arrived,
        i.e. once the subscription is live.
        """
        last = time.monotonic()
        ready = False
        try:
            while max_sweeps is None or self.fitted_here < max_sweeps:
                message = self.subscriber.recv(timeout_s=0.5)
                now = time.monotonic()
                if message is None:
                    if idle_timeout_s is not None and now - last > idle_timeout_s:
                        log.info("no message for %.0f s: stopping", idle_timeout_s)
                        break
                    continue
                last = now
                if not ready and ready_file is not None:
                    Path(ready_file).write_text("ready\n")
                    ready = True
                self.handle(message)
        finally:
            self.close()
        return self.summary

    def close(self) -> None:
        """Close sockets (flushing the last map update)."""
        if self.map_publisher is not None:
            self.map_publisher.flush(timeout_s=5.0)
            self.map_publisher.close()
            self.map_publisher = None
        self.subscriber.close()
