import pytest
from bluesky import RunEngine
from bluesky.utils import FailedStatus

from thermoxanes.plans.heating import (
    SAFE_STATE_PLAN,
    HeatingProgram,
    Hold,
    Ramp,
    heating_series,
)


def test_program_round_trip_and_validation():
    program = HeatingProgram.seed002(hold_s=600, sweeps_per_hold=2)
    assert program.num_sweeps == 8
    assert HeatingProgram.from_list(program.to_list()) == program
    with pytest.raises(ValueError, match="segment 0"):
        HeatingProgram.from_list([{"kind": "ramp", "target_c": 100}])
    with pytest.raises(ValueError, match="unknown kind"):
        HeatingProgram.from_list([{"kind": "soak", "duration_s": 10}])
    with pytest.raises(ValueError, match="rate_c_per_min"):
        Ramp(100.0, 0.0)
    with pytest.raises(ValueError, match="at least one"):
        HeatingProgram(())


def test_series_links_sweeps_and_ends_safe(beamline, short_grid):
    program = HeatingProgram((Hold(900.0, 2), Ramp(120.0, 10.0), Hold(300.0, 1)))
    RE = RunEngine({})
    starts, events = [], []
    RE.subscribe(lambda n, d: starts.append(d) if n == "start" else None)
    RE.subscribe(lambda n, d: events.append(d) if n == "event" else None)
    uids = RE(heating_series(beamline.camera, beamline.mono, beamline.sample_x,
                             beamline.shutter, beamline.heater, beamline.clock, program,
                             short_grid, n_darks=1, safe_temperature_c=30.0))
    # three sweeps, then the run recording the heater's safe state
    assert len(uids) == 4 == len(starts)
    assert starts[-1]["plan_name"] == SAFE_STATE_PLAN
    assert starts[-1]["exit_path"] == "completed"
    starts = starts[:-1]
    assert len({s["series_uid"] for s in starts}) == 1
    assert [s["sweep_index"] for s in starts] == [0, 1, 2]
    assert starts[0]["heating_program"] == program.to_list()
    # second sweep of the first hold starts half-way through it (evenly spaced)
    t0 = [e["data"]["clock_time_s"] for e in events]
    assert min(t0) < 900.0
    # the last sweep is at the ramp target, the heater setpoint goes safe afterwards
    assert starts[2]["setpoint_c"] == pytest.approx(120.0)
    assert events[-2]["data"]["heater_temperature_c"] == pytest.approx(120.0, abs=3.0)
    assert beamline.heater.setpoint_c.get() == pytest.approx(30.0)
    # holds last at least their duration: 900 s + ramp ~10 min + 300 s
    assert beamline.clock.position >= 900.0 + 300.0 + 9.0 * 60


def test_program_above_heater_limit_refused_before_moving(beamline, short_grid):
    program = HeatingProgram((Ramp(100.0, 20.0), Hold(60.0, 1), Ramp(600.0, 20.0)))
    RE = RunEngine({})
    with pytest.raises(ValueError, match="segment 2: ramp to 600.0 C"):
        RE(heating_series(beamline.camera, beamline.mono, beamline.sample_x,
                          beamline.shutter, beamline.heater, beamline.clock, program,
                          short_grid, n_darks=1))
    assert beamline.world.heater.temperature_c == pytest.approx(25.0, abs=1.0)
    assert beamline.mono.position == 8333.0  # nothing moved


def test_series_goes_safe_when_a_sweep_fails(beamline, short_grid):
    program = HeatingProgram((Ramp(100.0, 20.0), Hold(60.0, 1)))
    RE = RunEngine({})
    bad_grid = [*short_grid[:-1], 20000.0]  # last energy beyond the mono's limit
    temps = []
    RE.subscribe(lambda n, d: temps.append(d["data"]["heater_temperature_c"])
                 if n == "event" else None)
    with pytest.raises(FailedStatus) as info:
        RE(heating_series(beamline.camera, beamline.mono, beamline.sample_x,
                          beamline.shutter, beamline.heater, beamline.clock, program,
                          bad_grid, n_darks=1, safe_temperature_c=25.0))
    assert "outside" in str(info.value.args[0].exception())
    assert max(temps) > 90.0  # it was hot when it failed
    assert beamline.heater.setpoint_c.get() == pytest.approx(25.0)
    assert beamline.world.heater.temperature_c < 30.0  # and it cooled to the safe state
