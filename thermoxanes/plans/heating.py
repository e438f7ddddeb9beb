"""Heating programs: ramp and hold segments, with XANES sweeps repeated during holds.

A program is plain data (:class:`HeatingProgram`); :func:`heating_series` runs it. Every
sweep is its own run; the runs of one program share a ``series_uid`` and carry their
``sweep_index``, the segment, and the whole program in the start document.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.protocols import Movable, Readable

from thermoxanes.plans.xanes import xanes_sweep


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
):
    """Run a heating program, with XANES sweeps during its holds (one run per sweep).

    Parameters
    ----------
    camera, mono, sample_x, shutter
        As in :func:`thermoxanes.plans.xanes.xanes_sweep`.
    heater : Movable
        Temperature controller: ``set(temperature_c)`` finishes when the sample temperature
        has settled at the target; it has a movable ``ramp_rate_c_per_min`` attribute.
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
        Setpoint the heater is sent to when the program ends, fails or is aborted.
    md : dict, optional
        Extra metadata added to every sweep's start document.

    Returns
    -------
    list of str
        The run uids of the sweeps.
    """
    if not isinstance(program, HeatingProgram):
        raise TypeError("program must be a HeatingProgram")
    series_uid = str(uuid.uuid4())
    readables = [heater, clock, *[r for r in readables if r is not heater and r is not clock]]
    num_sweeps = program.num_sweeps
    base_md = {
        "series_uid": series_uid,
        "num_sweeps": num_sweeps,
        "heating_program": program.to_list(),
        "safe_temperature_c": safe_temperature_c,
    }
    base_md.update(md or {})
    uids: list[str] = []

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
        uid = yield from xanes_sweep(
            camera, mono, sample_x, shutter, energies_ev,
            readables=readables, n_darks=n_darks, n_flats=n_flats,
            sample_out_offset_um=sample_out_offset_um, md=sweep_md,
        )
        uids.append(uid)

    def check_limits():
        if not hasattr(heater, "max_temperature_c"):
            return
        ceiling_c = yield from bps.rd(heater.max_temperature_c)
        for index, segment in enumerate(program.segments):
            if isinstance(segment, Ramp) and segment.target_c > ceiling_c:
                raise ValueError(
                    f"heating program segment {index}: ramp to {segment.target_c} C is above "
                    f"the heater's maximum of {ceiling_c} C")

    def run_program():
        yield from check_limits()
        for index, segment in enumerate(program.segments):
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

    def go_safe():
        if safe_temperature_c is not None:
            yield from bps.abs_set(heater, safe_temperature_c)

    return (yield from bpp.finalize_wrapper(run_program(), go_safe()))
