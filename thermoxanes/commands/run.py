"""``thermoxanes run --profile PROFILE PLAN``: run a plan on the devices of any profile.

Plans: ``xanes`` (one sweep, :func:`thermoxanes.plans.xanes.xanes_sweep`) and ``heating``
(a heating program with sweeps during its holds,
:func:`thermoxanes.plans.heating.heating_series`). For EPICS profiles every PV must connect
within the profile's ``connection_timeout_s`` first; otherwise the command exits with
status 2 and one line naming the PVs, before anything moves. Runs are stored in an
embedded tiled catalog under ``--out`` (frames as HDF5 files under ``--out/raw``).
If the IOC goes away mid-run (a device status fails, or a read raises, with an error
naming a PV), the RunEngine closes the run as usual (its documents stay in the catalog) and
the command exits with status 2 and one line naming the PV and what was saved.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

PLANS = ("xanes", "heating")


def parse_energies(text: str) -> list[float]:
    """``full`` (68-energy Ni K-edge grid), ``whiteline`` (21 points) or ``E1,E2,...`` (eV)."""
    from thermoxanes.plans.energy_grid import whiteline_energy_grid, xanes_energy_grid

    if text == "full":
        return [float(e) for e in xanes_energy_grid()]
    if text == "whiteline":
        return [float(e) for e in whiteline_energy_grid()]
    try:
        energies = [float(e) for e in text.split(",") if e.strip()]
    except ValueError:
        raise ValueError(f"--energies: expected 'full', 'whiteline' or a comma-separated "
                         f"list of energies in eV, got {text!r}") from None
    if len(energies) < 2:
        raise ValueError(f"--energies: need at least 2 energies, got {text!r}")
    return energies


def load_program(args: argparse.Namespace) -> Any:
    """The heating program: from ``--program FILE`` (TOML/JSON ``segments``) or seed 002."""
    from thermoxanes.plans.heating import HeatingProgram

    if args.program is None:
        return HeatingProgram.seed002(hold_s=args.hold_min * 60.0,
                                      sweeps_per_hold=args.sweeps_per_hold,
                                      rate_c_per_min=args.rate_c_per_min)
    path = Path(args.program)
    if not path.is_file():
        raise ValueError(f"--program: {path} does not exist")
    try:
        data = (json.loads(path.read_text()) if path.suffix == ".json"
                else tomllib.loads(path.read_text()))
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"--program {path}: cannot parse: {exc}") from None
    segments = data.get("segments") if isinstance(data, dict) else data
    if not isinstance(segments, list):
        raise ValueError(f"--program {path}: expected a list 'segments' of ramp/hold tables")
    return HeatingProgram.from_list(segments)


class _Counter:
    """Counts documents per run and prints one line per finished run."""

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []
        self.total_events = 0  # of every run, including one that never got its stop
        self._events = 0

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if name == "start":
            self._events = 0
            self.runs.append({"uid": doc["uid"], "plan_name": doc.get("plan_name")})
        elif name == "event":
            self._events += 1
            self.total_events += 1
        elif name == "event_page":
            self._events += len(doc.get("seq_num", []))
            self.total_events += len(doc.get("seq_num", []))
        elif name == "stop" and self.runs:
            run = self.runs[-1]
            run.update(events=self._events, exit_status=doc.get("exit_status"))
            print(f"run {run['uid'][:8]} ({run['plan_name']}): {self._events} events, "
                  f"{run['exit_status']}", flush=True)


def pv_failure(exc: BaseException) -> BaseException | None:
    """The EPICS error behind ``exc``, or None when there is none.

    bluesky raises ``FailedStatus(status)`` when a device status fails; it names no PV. The
    device's error is its ``__cause__`` (and ``status.exception()``), possibly further down
    the ``__cause__``/``__context__`` chain when the plan's cleanup failed too. Returns the
    first :class:`~thermoxanes.devices.connection.PVConnectionError` or
    :class:`~thermoxanes.devices.connection.PVTimeoutError` found (these name the PVs),
    else the first ophyd ``DisconnectedError``.
    """
    from ophyd.utils import DisconnectedError

    from thermoxanes.devices.connection import PVConnectionError, PVTimeoutError

    seen: set[int] = set()
    queue: list[BaseException] = [exc]
    disconnected = None
    while queue:
        err = queue.pop(0)
        if id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, PVConnectionError | PVTimeoutError):
            return err
        if isinstance(err, DisconnectedError) and disconnected is None:
            disconnected = err
        linked = [err.__cause__, err.__context__]
        for arg in getattr(err, "args", ()):   # FailedStatus(status)
            if callable(getattr(arg, "exception", None)) and getattr(arg, "done", False):
                try:
                    linked.append(arg.exception(timeout=0))
                except Exception:  # noqa: BLE001 - not a status after all
                    pass
        queue.extend(e for e in linked if isinstance(e, BaseException))
    return disconnected


def abort_message(failure: BaseException, runs: list[dict[str, Any]], events: int,
                  saved_in: str) -> str:
    """The one line ``thermoxanes run`` prints when an EPICS error ended the plan."""
    from thermoxanes.devices.connection import PVTimeoutError

    what = ("EPICS IOC not answering" if isinstance(failure, PVTimeoutError)
            else "lost EPICS PV connection (IOC not reachable)")
    detail = (str(failure).strip().splitlines() or [type(failure).__name__])[0]
    return (f"thermoxanes run: error: {what}: {detail}; run aborted, {events} events of "
            f"{len(runs)} run(s) already saved in {saved_in}")


def _cmd_run(args: argparse.Namespace) -> int:
    from bluesky import RunEngine

    from thermoxanes.plans.heating import HeaterLimits, heating_series
    from thermoxanes.plans.xanes import xanes_sweep
    from thermoxanes.profiles.beamline import build_beamline
    from thermoxanes.profiles.schema import load_profile

    profile = load_profile(args.profile)
    energies = parse_energies(args.energies)
    program = load_program(args) if args.plan == "heating" else None
    if args.size is not None and profile.kind != "sim":
        raise ValueError("--size applies to 'sim' profiles only (sim-epics: thermoxanes ioc "
                         "--size)")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    acq = profile.acquisition
    n_darks = acq.n_darks if args.n_darks is None else args.n_darks
    n_flats = acq.n_flats if args.n_flats is None else args.n_flats
    if n_darks < 0 or n_flats < 1:
        raise ValueError(f"need --n-darks >= 0 and --n-flats >= 1, got {n_darks}, {n_flats}")

    catalog = publisher = None
    if args.no_catalog:
        raw_dir = out / "raw"
    else:
        from thermoxanes.storage.catalog import EmbeddedCatalog

        catalog = EmbeddedCatalog(out)
        raw_dir = catalog.raw_dir
    try:
        beamline = build_beamline(profile, raw_dir, size=args.size)
        try:
            beamline.wait_for_connection(args.connection_timeout_s)
        except TimeoutError as exc:
            raise ValueError(str(exc)) from None
        md = {"profile": profile.name}
        if beamline.world is not None:
            md["sample"] = beamline.world.preset.name
        common = dict(readables=[beamline.rotation, beamline.ring], n_darks=n_darks,
                      n_flats=n_flats, sample_out_offset_um=profile.sample_stage.out_offset_um,
                      md=md)
        if args.plan == "xanes":
            plan = xanes_sweep(beamline.camera, beamline.mono, beamline.sample_x,
                               beamline.shutter, energies,
                               **{**common, "readables": beamline.frame_readables})
        else:
            plan = heating_series(
                beamline.camera, beamline.mono, beamline.sample_x, beamline.shutter,
                beamline.heater, beamline.clock, program, energies, **common,
                safe_temperature_c=profile.heater.safe_temperature_c,
                safe_state=profile.heater.safe_state,
                limits=HeaterLimits.from_profile(profile.heater))
        RE = RunEngine({})
        counter = _Counter()
        RE.subscribe(counter)
        if catalog is not None:
            RE.subscribe(catalog.writer(batch_size=1))
        if args.publish:
            from thermoxanes.streaming.publisher import Publisher

            publisher = Publisher(args.publish, frame_lookup=beamline.camera.frame_lookup,
                                  header_keys=beamline.header_keys)
            RE.subscribe(publisher)
            print(f"publishing documents and frames on {publisher.endpoint}", flush=True)
        start = time.monotonic()
        try:
            RE(plan)
        except Exception as exc:
            # the RunEngine has already closed the run (stop document, exit_status
            # "fail") and the catalog written it; only the traceback is replaced
            failure = pv_failure(exc)
            if failure is None:
                raise
            saved_in = (f"the catalog {out}" if catalog is not None
                        else f"{raw_dir} (frames only: --no-catalog)")
            print(abort_message(failure, counter.runs, counter.total_events, saved_in),
                  file=sys.stderr, flush=True)
            return 2
        finally:
            if publisher is not None:
                publisher.close()
        ok = all(r.get("exit_status") == "success" for r in counter.runs)
        print(f"{len(counter.runs)} run(s) in {time.monotonic() - start:.1f} s; "
              f"frames under {raw_dir}" + ("" if catalog is None else f"; catalog {out}"),
              flush=True)
        return 0 if ok and counter.runs else 1
    finally:
        if catalog is not None:
            catalog.close()


def add_subparser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``thermoxanes run``."""
    parser = subparsers.add_parser(
        "run", help="run a plan (xanes, heating) on the devices of a profile",
        description=sys.modules[__name__].__doc__.split("\n\n")[0])
    parser.add_argument("plan", choices=PLANS, help="xanes: one sweep; heating: a program")
    parser.add_argument("--profile", default="sim", help="profile name or TOML path")
    parser.add_argument("--out", default="run_output", help="output folder")
    parser.add_argument("--energies", default="full",
                        help="'full' (68 energies), 'whiteline' (21) or E1,E2,... in eV")
    parser.add_argument("--n-darks", type=int, default=None, help="default: profile's")
    parser.add_argument("--n-flats", type=int, default=None, help="default: profile's")
    parser.add_argument("--program", default=None,
                        help="heating program TOML/JSON with 'segments' (default: seed 002)")
    parser.add_argument("--hold-min", type=float, default=20.0, help="seed 002 hold (min)")
    parser.add_argument("--sweeps-per-hold", type=int, default=1)
    parser.add_argument("--rate-c-per-min", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=None, help="frame side ('sim' only)")
    parser.add_argument("--connection-timeout-s", type=float, default=None,
                        help="wait this long for PVs (default: profile's)")
    parser.add_argument("--publish", default=None, metavar="ENDPOINT",
                        help="also publish documents and frames over ZeroMQ for the "
                             "analysis service (e.g. tcp://127.0.0.1:5577)")
    parser.add_argument("--no-catalog", action="store_true",
                        help="write frames and print a summary, without the tiled catalog")
    parser.set_defaults(func=_cmd_run)
    return parser
