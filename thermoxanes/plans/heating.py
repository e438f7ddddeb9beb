"""Heating programs: ramp and hold segments, with XANES sweeps repeated during holds.

A program is plain data (:class:`HeatingProgram`); :func:`heating_series` runs it. Every
sweep is its own run; the runs of one program share a ``series_uid`` and carry their
``sweep_index``, the segment, and the whole program in the start document.

Safety (``docs/safety.md``): a program is checked against :class:`HeaterLimits` before
anything moves; whatever ends the program (completion, an exception, ``RE.stop()``,
``RE.abort()``, Ctrl-C then stop/abort, a suspender trip) the heater is put in its safe state
and a short run (``plan_name`` ``"heater_safe_state"``, stream ``safe_state``) records the
action and a heater reading. ``RE.halt()`` skips plan cleanup; the heater is staged by the
program, so the RunEngine's unstage on halt is where a device can go safe on its own.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.protocols import Movable, Readable
from bluesky.suspenders import SuspendCeil, SuspendFloor, SuspendWhenOutsideBand
from bluesky.utils import FailedPause, RequestAbort, RequestStop

from thermoxanes.plans.xanes import xanes_sweep

#: ``plan_name`` of the short run that records the heater's safe state.
SAFE_STATE_PLAN = "heater_safe_state"
#: Its event stream.
SAFE_STATE_STREAM = "safe_state"
#: Safe states a heater can be put in.
SAFE_STATES = ("setpoint", "output_off")


class HeaterLimitError(ValueError):
    """A heating program outside the heater's limits (raised before anything moves)."""


class OverTemperatureError(RuntimeError):
    """The heater reading went above the over-temperature limit; the program was aborted."""


@dataclass(frozen=True)
class HeaterLimits:
    """Limits a heating program must respect (checked before anything moves).

    Parameters
    ----------
    max_temperature_c : float
        No setpoint above this (°C).
    max_ramp_rate_c_per_min : float
        No ramp faster than this (°C/min).
    max_setpoint_step_c : float
        No single setpoint change larger than this (°C); the move to the safe state is
        exempt (it must always be possible).
    min_temperature_c : float
        No setpoint below this (°C).
    """

    max_temperature_c: float = 450.0
    max_ramp_rate_c_per_min: float = 20.0
    max_setpoint_step_c: float = 250.0
    min_temperature_c: float = -50.0

    def __post_init__(self):
        for name in ("max_temperature_c", "max_ramp_rate_c_per_min", "max_setpoint_step_c",
                     "min_temperature_c"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"HeaterLimits.{name} must be finite")
        if not self.max_ramp_rate_c_per_min > 0 or not self.max_setpoint_step_c > 0:
            raise ValueError("HeaterLimits: max_ramp_rate_c_per_min and max_setpoint_step_c "
                             "must be > 0")
        if not self.min_temperature_c < self.max_temperature_c:
            raise ValueError("HeaterLimits: min_temperature_c must be below max_temperature_c")

    @classmethod
    def from_profile(cls, heater_section: Any) -> HeaterLimits:
        """Limits from a profile's ``[heater]`` section (any object with those attributes)."""
        default = cls()
        return cls(**{
            name: float(getattr(heater_section, name, getattr(default, name)))
            for name in ("max_temperature_c", "max_ramp_rate_c_per_min",
                         "max_setpoint_step_c", "min_temperature_c")
        })

    def to_dict(self) -> dict[str, float]:
        """JSON-serializable form for run metadata."""
        return asdict(self)


@dataclass(frozen=True)
class Ramp:
    """Ramp the heater to ``target_c`` (°C) at ``rate_c_per_min`` (°C/min)."""

    target_c: float
    rate_c_per_min: float
    kind: str = field(default="ramp", init=False)

    def __post_init__(self):
        if not self.rate_c_per_min > 0:
            raise ValueError(f"ramp to {self.target_c} C: rate_c_per_min must be > 0")


@dataclass(frozen=True)
class Hold:
    """Hold the temperature for ``duration_s`` (s) and take ``sweeps`` XANES sweeps.

    The sweeps start evenly spaced over the hold (the first at its start); if a sweep takes
    longer than the spacing, the next one starts right after it. The hold ends no earlier
    than ``duration_s`` after it began.
    """

    duration_s: float
    sweeps: int = 1
    kind: str = field(default="hold", init=False)

    def __post_init__(self):
        if self.duration_s < 0 or self.sweeps < 0:
            raise ValueError("hold: duration_s and sweeps must be >= 0")


Segment = Ramp | Hold


@dataclass(frozen=True)
class HeatingProgram:
    """A temperature program: a sequence of :class:`Ramp` and :class:`Hold` segments."""

    segments: tuple[Segment, ...]

    def __post_init__(self):
        if not self.segments:
            raise ValueError("a heating program needs at least one segment")

    @property
    def num_sweeps(self) -> int:
        """Total number of XANES sweeps the program takes."""
        return sum(s.sweeps for s in self.segments if isinstance(s, Hold))

    def validate(self, limits: HeaterLimits, start_c: float | None = None) -> None:
        """Check every segment against ``limits``; raise on the first violation.

        Parameters
        ----------
        limits : HeaterLimits
        start_c : float, optional
            Heater setpoint (°C) before the program; the first ramp's step is measured
            from it (not checked when ``None``).

        Raises
        ------
        HeaterLimitError
            Naming the segment (index and kind) and the limit it breaks.
        """
        previous_c = None if start_c is None else float(start_c)
        if previous_c is not None and not math.isfinite(previous_c):
            previous_c = None
        for index, segment in enumerate(self.segments):
            where = f"heating program segment {index}"
            if isinstance(segment, Hold):
                if not math.isfinite(segment.duration_s):
                    raise HeaterLimitError(f"{where}: hold duration_s must be finite")
                continue
            target_c, rate = float(segment.target_c), float(segment.rate_c_per_min)
            if not math.isfinite(target_c) or not math.isfinite(rate):
                raise HeaterLimitError(f"{where}: ramp target_c and rate_c_per_min must be finite")
            if target_c > limits.max_temperature_c:
                raise HeaterLimitError(
                    f"{where}: ramp to {target_c} C is above the heater's maximum of "
                    f"{limits.max_temperature_c} C")
            if target_c < limits.min_temperature_c:
                raise HeaterLimitError(
                    f"{where}: ramp to {target_c} C is below the heater's minimum of "
                    f"{limits.min_temperature_c} C")
            if rate > limits.max_ramp_rate_c_per_min:
                raise HeaterLimitError(
                    f"{where}: ramp rate {rate} C/min is above the maximum of "
                    f"{limits.max_ramp_rate_c_per_min} C/min")
            if previous_c is not None and abs(target_c - previous_c) > limits.max_setpoint_step_c:
                raise HeaterLimitError(
                    f"{where}: ramp setpoint step {previous_c} -> {target_c} C "
                    f"({abs(target_c - previous_c):.1f} C) is larger than the maximum step of "
                    f"{limits.max_setpoint_step_c} C")
            previous_c = target_c

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-serializable description for run metadata."""
        return [asdict(s) for s in self.segments]

    @classmethod
    def from_list(cls, items: Sequence[dict[str, Any]]) -> HeatingProgram:
        """Rebuild a program from :meth:`to_list` output (or TOML/JSON data)."""
        segments: list[Segment] = []
        for i, item in enumerate(items):
            item = dict(item)
            kind = item.pop("kind", None)
            try:
                if kind == "ramp":
                    segments.append(Ramp(**item))
                elif kind == "hold":
                    segments.append(Hold(**item))
                else:
                    raise ValueError(f"unknown kind {kind!r} (expected 'ramp' or 'hold')")
            except TypeError as exc:
                raise ValueError(f"heating program segment {i}: {exc}") from None
        return cls(tuple(segments))

    @classmethod
    def seed002(cls, hold_s: float = 1200.0, sweeps_per_hold: int = 1,
                rate_c_per_min: float = 5.0) -> HeatingProgram:
        """Holds at 25, 150, 200 and 250 °C with ramps between them (seed 002)."""
        segments: list[Segment] = [Hold(hold_s, sweeps_per_hold)]
        for target in (150.0, 200.0, 250.0):
            segments += [Ramp(target, rate_c_per_min), Hold(hold_s, sweeps_per_hold)]
        return cls(tuple(segments))


def _exit_path(exc: BaseException | None) -> str:
    """Short name of what ended a program, for the safe-state record."""
    if exc is None:
        return "completed"
    if isinstance(exc, RequestStop) or exc is RequestStop:
        return "stop"
    if isinstance(exc, RequestAbort):
        return "abort"
    if isinstance(exc, FailedPause):
        return "abort (pause without a checkpoint)"
    if isinstance(exc, OverTemperatureError):
        return "over_temperature"
    return "exception"


def _describe(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    text = str(exc)
    status = exc.args[0] if exc.args else None
    cause = None
    if callable(getattr(status, "exception", None)):  # FailedStatus: say why it failed
        try:
            cause = status.exception()
        except Exception:  # noqa: BLE001 - best effort
            cause = None
    if cause is not None:
        return f"{type(exc).__name__}: {type(cause).__name__}: {cause}"
    if exc.__cause__ is not None:
        return f"{type(exc).__name__}: {text} (caused by {_describe(exc.__cause__)})"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _signal(device: Any, name: str) -> Any:
    """``device.<name>`` if it is a subscribable signal (what suspenders watch), else None."""
    signal = getattr(device, name, None)
    return signal if signal is not None and hasattr(signal, "subscribe") else None


def heating_series(
    camera: Readable,
    mono: Movable,
    sample_x: Movable,
    shutter: Movable,
    heater: Movable,
    clock: Movable,
    program: HeatingProgram,
    energies_ev: Sequence[float],
    *,
    readables: Sequence[Readable] = (),
    n_darks: int = 5,
    n_flats: int = 1,
    sample_out_offset_um: float = 2000.0,
    safe_temperature_c: float | None = 25.0,
    md: dict[str, Any] | None = None,
    limits: HeaterLimits | None = None,
    safe_state: str = "setpoint",
    record_safe_state: bool = True,
    ring_current: Any = None,
    ring_floor_ma: float | None = None,
    ring_resume_ma: float | None = None,
    temperature_band_c: float | None = None,
    over_temperature_c: float | None = None,
    over_temperature_margin_c: float = 10.0,
    suspend_sleep_s: float = 0.0,
):
    """Run a heating program, with XANES sweeps during its holds (one run per sweep).

    Parameters
    ----------
    camera, mono, sample_x, shutter
        As in :func:`thermoxanes.plans.xanes.xanes_sweep`.
    heater : Movable
        Temperature controller: ``set(temperature_c)`` finishes when the sample temperature
        has settled at the target; it has a movable ``ramp_rate_c_per_min`` attribute and,
        for the safety features, ``setpoint_c`` and ``temperature_c`` signals and (for the
        ``"output_off"`` safe state) a movable ``output_on`` signal. If it is Stageable it
        is staged for the whole program, so that ``RE.halt()`` (which skips plan cleanup
        but unstages) reaches its ``unstage()``.
    clock : Movable and Readable
        Beamline clock: reading gives the time (s); ``set(duration_s)`` finishes after
        ``duration_s`` seconds (wall time at a beamline, simulated time in a simulator).
    program : HeatingProgram
        Ramp and hold segments.
    energies_ev : sequence of float
        Energy grid of every sweep (eV).
    readables : sequence of Readable
        Read with every frame besides camera and mono (the heater is always added).
    safe_temperature_c : float or None
        Setpoint (°C) of the ``"setpoint"`` safe state; ``None`` disables the safe-state
        action (the record still says so).
    md : dict, optional
        Extra metadata added to every sweep's start document.
    limits : HeaterLimits, optional
        Checked before anything moves (:meth:`HeatingProgram.validate`, the first step
        measured from the heater's present setpoint). Default: the heater's own
        ``max_temperature_c`` (and ``max_ramp_rate_c_per_min``, ``max_setpoint_step_c``
        when it has them), else :class:`HeaterLimits` defaults.
    safe_state : {"setpoint", "output_off"}
        What the heater is put in whenever the program ends: setpoint ``safe_temperature_c``
        or output off (``heater.output_on`` set False).
    record_safe_state : bool
        Emit the short ``heater_safe_state`` run after the safe-state action.
    ring_current : Subscribable signal, optional
        Ring current (mA); with ``ring_floor_ma`` a sweep suspends while it is below the
        floor and re-takes the interrupted energy point (rewind to its checkpoint).
    ring_floor_ma, ring_resume_ma : float, optional
        Suspend below ``ring_floor_ma``; resume above ``ring_resume_ma`` (default the floor).
    temperature_band_c : float, optional
        During a sweep, suspend while ``heater.temperature_c`` is more than this (°C) away
        from the hold's setpoint.
    over_temperature_c : float, optional
        A ``heater.temperature_c`` reading above this (°C) at any time aborts the program
        with :class:`OverTemperatureError` (the heater then goes safe). Default: the
        limits' ``max_temperature_c + over_temperature_margin_c``.
    suspend_sleep_s : float
        Wait (s) after conditions are back to nominal before a suspension is released.

    Returns
    -------
    list of str
        The run uids of the sweeps (not the safe-state record).

    Raises
    ------
    HeaterLimitError
        The program breaks a limit (before anything moves).
    OverTemperatureError
        The over-temperature limit tripped (after the heater went safe).
    """
    if not isinstance(program, HeatingProgram):
        raise TypeError("program must be a HeatingProgram")
    if safe_state not in SAFE_STATES:
        raise ValueError(f"safe_state must be one of {SAFE_STATES}, got {safe_state!r}")
    series_uid = str(uuid.uuid4())
    readables = [heater, clock, *[r for r in readables if r is not heater and r is not clock]]
    num_sweeps = program.num_sweeps
    temperature_signal = _signal(heater, "temperature_c")
    base_md = {
        "series_uid": series_uid,
        "num_sweeps": num_sweeps,
        "heating_program": program.to_list(),
        "safe_temperature_c": safe_temperature_c,
        "safe_state": safe_state,
    }
    base_md.update(md or {})
    uids: list[str] = []
    state: dict[str, Any] = {}

    def sweep(segment_index: int, hold_index: int):
        sweep_md = dict(base_md)
        setpoint_c = None
        if hasattr(heater, "setpoint_c"):
            setpoint_c = yield from bps.rd(heater.setpoint_c)
        sweep_md.update(
            {
                "sweep_index": len(uids),
                "segment_index": segment_index,
                "hold_sweep_index": hold_index,
                "setpoint_c": setpoint_c,
            }
        )
        plan = xanes_sweep(
            camera, mono, sample_x, shutter, energies_ev,
            readables=readables, n_darks=n_darks, n_flats=n_flats,
            sample_out_offset_um=sample_out_offset_um, md=sweep_md,
        )
        suspenders = []
        if ring_current is not None and ring_floor_ma is not None:
            suspenders.append(SuspendFloor(
                ring_current, ring_floor_ma,
                resume_thresh=ring_floor_ma if ring_resume_ma is None else ring_resume_ma,
                sleep=suspend_sleep_s,
                tripped_message=f"ring current below {ring_floor_ma} mA"))
        if temperature_band_c is not None and temperature_signal is not None \
                and setpoint_c is not None:
            suspenders.append(SuspendWhenOutsideBand(
                temperature_signal, setpoint_c - temperature_band_c,
                setpoint_c + temperature_band_c, sleep=suspend_sleep_s,
                tripped_message=f"heater temperature outside {setpoint_c} "
                                f"+/- {temperature_band_c} C during a hold"))
        if suspenders:
            plan = bpp.suspend_wrapper(plan, suspenders)
        uid = yield from plan
        uids.append(uid)

    def resolve_limits():
        if limits is not None:
            return limits
        values = {}
        for name in ("max_temperature_c", "max_ramp_rate_c_per_min", "max_setpoint_step_c"):
            if hasattr(heater, name):
                values[name] = float((yield from bps.rd(getattr(heater, name))))
        return HeaterLimits(**values)

    def check_limits():
        effective = yield from resolve_limits()
        start_c = None
        if hasattr(heater, "setpoint_c"):
            start_c = yield from bps.rd(heater.setpoint_c)
        program.validate(effective, start_c)
        if safe_temperature_c is not None and not (
                effective.min_temperature_c <= safe_temperature_c
                <= effective.max_temperature_c):
            raise HeaterLimitError(
                f"safe_temperature_c {safe_temperature_c} C is outside the heater's limits "
                f"[{effective.min_temperature_c}, {effective.max_temperature_c}] C")
        state["limits"] = effective
        base_md["heater_limits"] = effective.to_dict()
        return effective

    def run_program():
        for index, segment in enumerate(program.segments):
            yield from bps.checkpoint()
            if isinstance(segment, Ramp):
                yield from bps.mv(heater.ramp_rate_c_per_min, segment.rate_c_per_min)
                yield from bps.mv(heater, segment.target_c)
            else:
                start_s = yield from bps.rd(clock)
                spacing_s = segment.duration_s / segment.sweeps if segment.sweeps else 0.0
                for k in range(segment.sweeps):
                    now_s = yield from bps.rd(clock)
                    wait_s = start_s + k * spacing_s - now_s
                    if wait_s > 0:
                        yield from bps.mv(clock, wait_s)
                    yield from sweep(index, k)
                now_s = yield from bps.rd(clock)
                if start_s + segment.duration_s - now_s > 0:
                    yield from bps.mv(clock, start_s + segment.duration_s - now_s)
        return uids

    def over_temperature_plan():
        value = temperature_signal.get() if temperature_signal is not None else float("nan")
        raise OverTemperatureError(
            f"heater reading {float(value):.1f} C is above the over-temperature limit of "
            f"{state['over_c']} C: heating program aborted, heater sent to its safe state")
        yield  # pragma: no cover - makes this a generator

    def safe_action():
        """Put the heater in its safe state; return (done, problem)."""
        if safe_state == "output_off":
            output = getattr(heater, "output_on", None)
            if output is None:
                return False, "safe_state 'output_off' but the heater has no output_on"
            yield from bps.mv(output, False)
            return True, None
        if safe_temperature_c is None:
            return False, "no safe_temperature_c given: heater left as it was"
        # Not waited for: a cool-down can take many minutes; the setpoint is what matters.
        yield from bps.abs_set(heater, safe_temperature_c)
        return True, None

    def go_safe(exc: BaseException | None):
        try:
            done, problem = yield from safe_action()
        except Exception as action_exc:  # noqa: BLE001 - reported in the record, then raised
            done, problem = False, _describe(action_exc)
            state["safe_action_error"] = action_exc
        state["safe"] = done
        if not record_safe_state:
            return
        record_md = {
            "plan_name": SAFE_STATE_PLAN,
            "purpose": SAFE_STATE_PLAN,
            "series_uid": series_uid,
            "exit_path": _exit_path(exc),
            "error": _describe(exc),
            "safe_state": safe_state,
            "safe_temperature_c": safe_temperature_c,
            "safe_action_done": done,
            "safe_action_problem": problem,
            "sweep_uids": list(uids),
            "num_sweeps": num_sweeps,
        }
        for key in ("sample", "profile"):
            if key in base_md:
                record_md[key] = base_md[key]
        # Own run key: a sweep whose stop document could not be delivered (a failing
        # subscriber) is still "open" under the default key and would refuse open_run.
        # Each step is tried on its own: a subscriber that fails on the start document
        # (e.g. a dead catalog) has already let the earlier ones (the wire) have it.
        steps = (
            lambda: bps.open_run(record_md),
            lambda: bps.trigger_and_read([heater, clock], name=SAFE_STATE_STREAM),
            lambda: bps.close_run(exit_status="success" if done else "fail",
                                  reason="" if done else str(problem)),
        )
        for step in steps:
            try:
                yield from bpp.set_run_key_wrapper(step(), SAFE_STATE_PLAN)
            except Exception as record_exc:  # noqa: BLE001 - never mask the original error
                state.setdefault("record_errors", []).append(record_exc)

    def arm_device_safe_state():
        """Tell the heater our safe state, so that its own unstage() (halt) agrees."""
        if safe_temperature_c is not None and hasattr(heater, "safe_temperature_c"):
            yield from bps.mv(heater.safe_temperature_c, safe_temperature_c)
        if hasattr(heater, "safe_state"):
            yield from bps.mv(heater.safe_state, safe_state)

    def guarded(effective: HeaterLimits):
        yield from arm_device_safe_state()
        over_c = over_temperature_c
        if over_c is None:
            over_c = effective.max_temperature_c + over_temperature_margin_c
        state["over_c"] = over_c
        body = run_program()
        if temperature_signal is not None:
            body = bpp.suspend_wrapper(body, [SuspendCeil(
                temperature_signal, over_c, pre_plan=over_temperature_plan,
                tripped_message=f"heater temperature above {over_c} C")])
        try:
            result = yield from body
        except GeneratorExit:
            raise  # RE.halt(): no plan cleanup; unstage() is the device's last word
        except BaseException as exc:
            yield from go_safe(exc)
            raise
        yield from go_safe(None)
        if "safe_action_error" in state:
            raise state["safe_action_error"]
        return result

    effective = yield from check_limits()  # before anything moves or is staged
    if hasattr(heater, "stage") and hasattr(heater, "unstage"):
        return (yield from bpp.stage_wrapper(guarded(effective), [heater]))
    return (yield from guarded(effective))
