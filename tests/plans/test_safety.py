"""Heater safety: limits before anything moves, the safe state on every exit path,
recorded in the documents, and suspenders (ring current, temperature band, over-temperature).

Every exit is checked the same way: the heater setpoint is the safe one afterwards and
(except for ``RE.halt()``) a ``heater_safe_state`` run records the action and a reading.
"""

import os
import signal
import threading
import time

import pytest
from bluesky import RunEngine
from bluesky.utils import FailedStatus, RunEngineInterrupted

from thermoxanes.plans.heating import (
    SAFE_STATE_PLAN,
    SAFE_STATE_STREAM,
    HeaterLimitError,
    HeaterLimits,
    HeatingProgram,
    Hold,
    OverTemperatureError,
    Ramp,
    heating_series,
)

SAFE_C = 30.0
PROGRAM = HeatingProgram((Ramp(100.0, 20.0), Hold(60.0, 1), Ramp(120.0, 20.0), Hold(60.0, 1)))


class Recorder:
    """Keeps every document; ``on_event(stream, k, fn)`` calls ``fn`` at the k-th event
    of ``stream`` (counted over all runs)."""

    def __init__(self):
        self.docs = []
        self._streams = {}
        self._counts = {}
        self._actions = {}

    def on_event(self, stream, k, fn):
        self._actions[(stream, k)] = fn

    def on_primary(self, k, fn):
        self.on_event("primary", k, fn)

    def __call__(self, name, doc):
        self.docs.append((name, doc))
        if name == "descriptor":
            self._streams[doc["uid"]] = doc.get("name")
        elif name == "event":
            stream = self._streams.get(doc["descriptor"])
            self._counts[stream] = k = self._counts.get(stream, 0) + 1
            action = self._actions.pop((stream, k), None)
            if action is not None:
                action()

    def starts(self, plan_name=None):
        return [d for n, d in self.docs if n == "start"
                and (plan_name is None or d.get("plan_name") == plan_name)]

    def safe_records(self):
        """(start, safe_state event data, stop) of every safe-state run."""
        out = []
        for start in self.starts(SAFE_STATE_PLAN):
            descs = {d["uid"] for n, d in self.docs if n == "descriptor"
                     and d["run_start"] == start["uid"] and d["name"] == SAFE_STATE_STREAM}
            events = [d["data"] for n, d in self.docs if n == "event"
                      and d["descriptor"] in descs]
            stops = [d for n, d in self.docs if n == "stop" and d["run_start"] == start["uid"]]
            out.append((start, events, stops))
        return out

    def primary_energies(self, run_uid):
        descs = {d["uid"] for n, d in self.docs if n == "descriptor"
                 and d["run_start"] == run_uid and d["name"] == "primary"}
        return [d["data"]["mono_energy_ev"] for n, d in self.docs
                if n == "event" and d["descriptor"] in descs]

    def stop_of(self, run_uid):
        return next(d for n, d in self.docs if n == "stop" and d["run_start"] == run_uid)


def _plan(beamline, grid, program=PROGRAM, **kwargs):
    kwargs.setdefault("safe_temperature_c", SAFE_C)
    return heating_series(beamline.camera, beamline.mono, beamline.sample_x,
                          beamline.shutter, beamline.heater, beamline.clock, program, grid,
                          readables=[beamline.ring], n_darks=1, **kwargs)


def _engine():
    RE = RunEngine({})
    RE.record_interruptions = True
    recorder = Recorder()
    RE.subscribe(recorder)
    return RE, recorder


def _in_thread(fn):
    """Call ``fn`` from another thread (RunEngine commands must not run on its loop)."""
    return lambda: threading.Thread(target=fn, daemon=True).start()


def _assert_safe_and_recorded(beamline, recorder, exit_path):
    assert beamline.heater.setpoint_c.get() == pytest.approx(SAFE_C)
    assert beamline.world.heater.setpoint_c == pytest.approx(SAFE_C)
    records = recorder.safe_records()
    assert len(records) == 1, [s["exit_path"] for s, _, _ in records]
    start, events, stops = records[0]
    assert start["exit_path"] == exit_path
    assert start["safe_action_done"] is True
    assert len(events) == 1 and events[0]["heater_setpoint_c"] == pytest.approx(SAFE_C)
    assert stops and stops[0]["exit_status"] == "success"
    return start


# -- limits ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("segments", "match"), [
    ((Ramp(100.0, 20.0), Hold(10.0), Ramp(500.0, 10.0)), "segment 2: ramp to 500.0 C is above"),
    ((Hold(10.0), Ramp(100.0, 50.0)), "segment 1: ramp rate 50.0 C/min is above"),
    ((Ramp(200.0, 10.0), Ramp(400.0, 10.0)), r"segment 0: ramp setpoint step 25.0 -> 200.0"),
    ((Ramp(-80.0, 10.0),), "segment 0: ramp to -80.0 C is below"),
])
def test_limits_violation_names_segment_before_anything_moves(beamline, short_grid,
                                                              segments, match):
    limits = HeaterLimits(max_temperature_c=450.0, max_ramp_rate_c_per_min=20.0,
                          max_setpoint_step_c=150.0)
    RE, recorder = _engine()
    with pytest.raises(HeaterLimitError, match=match):
        RE(_plan(beamline, short_grid, HeatingProgram(segments), limits=limits))
    assert recorder.docs == []  # not even a safe-state record: nothing moved
    assert beamline.heater.setpoint_c.get() == 25.0
    assert beamline.mono.position == 8333.0
    assert not beamline.heater._staged.value == "yes"


def test_validate_and_limits_from_profile():
    from thermoxanes.profiles.schema import load_profile

    limits = HeaterLimits.from_profile(load_profile("sim").heater)
    assert limits.max_temperature_c == 450.0 and limits.max_ramp_rate_c_per_min == 20.0
    HeatingProgram.seed002().validate(limits, start_c=25.0)
    with pytest.raises(HeaterLimitError, match="segment 1: ramp setpoint step 25.0 -> 400.0"):
        HeatingProgram((Hold(1.0), Ramp(400.0, 10.0))).validate(limits, start_c=25.0)
    with pytest.raises(ValueError):
        HeaterLimits(max_ramp_rate_c_per_min=0.0)


def test_safe_temperature_outside_limits_refused(beamline, short_grid):
    RE, recorder = _engine()
    with pytest.raises(HeaterLimitError, match="safe_temperature_c 900"):
        RE(_plan(beamline, short_grid, safe_temperature_c=900.0))
    assert recorder.docs == []


# -- exit paths -------------------------------------------------------------------------------
def test_completion_goes_safe_and_is_recorded(beamline, short_grid):
    RE, recorder = _engine()
    uids = RE(_plan(beamline, short_grid))
    start = _assert_safe_and_recorded(beamline, recorder, "completed")
    assert start["series_uid"] == recorder.starts("xanes_sweep")[0]["series_uid"]
    assert len(start["sweep_uids"]) == 2 and start["error"] is None
    assert uids[-1] == start["uid"]
    # the simulated heater really cooled down (the sim set() waits for it)
    assert beamline.world.heater.temperature_c < SAFE_C + 2.0


def test_exception_in_plan_goes_safe(beamline, short_grid):
    RE, recorder = _engine()
    bad_grid = [*short_grid[:-1], 20000.0]
    with pytest.raises(FailedStatus):
        RE(_plan(beamline, bad_grid))
    start = _assert_safe_and_recorded(beamline, recorder, "exception")
    assert "outside" in start["error"]
    sweep = recorder.starts("xanes_sweep")[0]
    assert recorder.stop_of(sweep["uid"])["exit_status"] == "fail"


@pytest.mark.parametrize("command", ["abort", "stop"])
def test_pause_then_abort_or_stop_goes_safe(beamline, short_grid, command):
    RE, recorder = _engine()
    recorder.on_primary(5, _in_thread(lambda: RE.request_pause(defer=False)))
    with pytest.raises(RunEngineInterrupted):
        RE(_plan(beamline, short_grid))
    # paused in the first hold: the heater holds its temperature, nothing recorded yet
    assert RE.state == "paused"
    assert beamline.world.heater.setpoint_c == pytest.approx(100.0)
    assert recorder.safe_records() == []
    getattr(RE, command)()
    start = _assert_safe_and_recorded(beamline, recorder, command)
    sweep = recorder.starts("xanes_sweep")[0]
    assert recorder.stop_of(sweep["uid"])["exit_status"] == (
        "abort" if command == "abort" else "success")
    assert start["sweep_uids"] == []  # the interrupted sweep never returned


def test_abort_while_running_goes_safe(beamline, short_grid):
    RE, recorder = _engine()
    recorder.on_primary(3, _in_thread(lambda: RE.abort("operator")))
    with pytest.raises(RunEngineInterrupted):  # RE() says it was interrupted
        RE(_plan(beamline, short_grid))
    assert RE.state == "idle"
    _assert_safe_and_recorded(beamline, recorder, "abort")


def test_ctrl_c_pauses_then_abort_goes_safe(beamline, short_grid):
    if threading.current_thread() is not threading.main_thread():  # pragma: no cover
        pytest.skip("SIGINT handling needs the main thread")
    RE, recorder = _engine()
    recorder.on_primary(4, lambda: os.kill(os.getpid(), signal.SIGINT))
    # four sweeps at 100 C: the deferred pause lands at a later checkpoint (normally the
    # next energy) even when a loaded machine delays the SIGINT handling a little
    program = HeatingProgram((Ramp(100.0, 20.0), Hold(60.0, 4)))
    with pytest.raises(RunEngineInterrupted):
        RE(_plan(beamline, short_grid, program))
    assert RE.state == "paused"
    assert beamline.world.heater.setpoint_c == pytest.approx(100.0)
    RE.abort("ctrl-c")
    _assert_safe_and_recorded(beamline, recorder, "abort")


@pytest.mark.parametrize("paused", [False, True])
def test_halt_skips_cleanup_but_unstage_makes_heater_safe(beamline, short_grid, paused):
    RE, recorder = _engine()
    if paused:
        recorder.on_primary(5, _in_thread(lambda: RE.request_pause(defer=False)))
        with pytest.raises(RunEngineInterrupted):
            RE(_plan(beamline, short_grid))
        RE.halt()
    else:
        recorder.on_primary(5, _in_thread(RE.halt))
        with pytest.raises(RunEngineInterrupted):
            RE(_plan(beamline, short_grid))
    # no plan cleanup: no safe-state run; the heater went safe in its own unstage()
    assert recorder.safe_records() == []
    assert beamline.world.heater.setpoint_c == pytest.approx(SAFE_C)
    assert "unstage" in beamline.heater.last_safe_action.get()
    sweep = recorder.starts("xanes_sweep")[0]
    assert recorder.stop_of(sweep["uid"])["exit_status"] == "abort"


def test_output_off_safe_state(beamline, short_grid):
    RE, recorder = _engine()
    RE(_plan(beamline, short_grid, HeatingProgram((Ramp(60.0, 20.0), Hold(10.0, 1))),
             safe_state="output_off"))
    assert beamline.world.heater.output_on is False
    (start, events, _), = recorder.safe_records()
    assert start["safe_state"] == "output_off" and events[0]["heater_output_on"] is False


# -- suspenders -------------------------------------------------------------------------------
def test_over_temperature_aborts_and_goes_safe(beamline, short_grid):
    RE, recorder = _engine()
    recorder.on_primary(3, lambda: beamline.heater.inject_temperature_offset(400.0, None))
    t0 = time.monotonic()
    try:
        with pytest.raises(OverTemperatureError, match="above the over-temperature limit"):
            RE(_plan(beamline, short_grid))
    finally:
        beamline.heater.clear_faults()
    assert time.monotonic() - t0 < 60
    start = _assert_safe_and_recorded(beamline, recorder, "over_temperature")
    assert "OverTemperatureError" in start["error"]
    assert len(recorder.starts("xanes_sweep")) == 1  # the second hold never began


def test_ring_dump_suspends_and_retakes_the_point(beamline, short_grid):
    RE, recorder = _engine()
    # the dump comes between the flat and the sample frame of the 6th energy
    recorder.on_event("flat", 6, lambda: beamline.ring.inject_beam_dump(0.5))
    t0 = time.monotonic()
    RE(_plan(beamline, short_grid, ring_current=beamline.ring.current_ma,
             ring_floor_ma=100.0, ring_resume_ma=300.0))
    assert time.monotonic() - t0 >= 0.5  # it waited for the beam
    sweep = recorder.starts("xanes_sweep")[0]
    energies = recorder.primary_energies(sweep["uid"])
    assert set(energies) == set(short_grid)
    descs = {d["uid"]: d["name"] for n, d in recorder.docs if n == "descriptor"
             and d["run_start"] == sweep["uid"]}
    n_flats = sum(1 for n, d in recorder.docs if n == "event"
                  and descs.get(d["descriptor"]) == "flat")
    # the interrupted point was taken again from its checkpoint: its flat twice (and its
    # sample frame too if the suspension landed after it; a few messages after the dump)
    assert n_flats == len(short_grid) + 1
    assert len(energies) in (len(short_grid), len(short_grid) + 1)
    assert "interruptions" in descs.values()
    assert recorder.stop_of(sweep["uid"])["exit_status"] == "success"
    _assert_safe_and_recorded(beamline, recorder, "completed")


def test_temperature_band_suspends_during_hold(beamline, short_grid):
    RE, recorder = _engine()
    recorder.on_primary(4, lambda: beamline.heater.inject_temperature_offset(25.0, 0.5))
    t0 = time.monotonic()
    RE(_plan(beamline, short_grid, temperature_band_c=5.0))
    assert time.monotonic() - t0 >= 0.5
    sweep = recorder.starts("xanes_sweep")[0]
    assert set(recorder.primary_energies(sweep["uid"])) == set(short_grid)
    descs = {d["uid"]: d["name"] for n, d in recorder.docs if n == "descriptor"
             and d["run_start"] == sweep["uid"]}
    assert "interruptions" in descs.values()
    _assert_safe_and_recorded(beamline, recorder, "completed")
