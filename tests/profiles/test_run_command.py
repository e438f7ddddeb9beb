"""``thermoxanes run`` and ``thermoxanes ioc``: bad input gives one line and exit 2."""

import pytest

from thermoxanes.cli import main


@pytest.mark.parametrize("argv,needle", [
    (["run", "xanes", "--profile", "nope"], "unknown profile"),
    (["run", "xanes", "--energies", "8300"], "at least 2"),
    (["run", "xanes", "--energies", "a,b"], "--energies"),
    (["run", "heating", "--program", "/no/such.toml"], "does not exist"),
    (["run", "xanes", "--profile", "sim-epics", "--size", "32"], "--size"),
    (["ioc", "--profile", "fxi-18id"], "no simulated IOC"),
    (["ioc", "--profile", "sim-epics", "--speed", "0"], "speed"),
])
def test_bad_input_one_line_exit_2(argv, needle, capsys, tmp_path):
    rc = main([*argv, *(["--out", str(tmp_path)] if argv[0] == "run" else [])])
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err and len(err.strip().splitlines()) == 1


def test_program_file(tmp_path):
    from thermoxanes.commands.run import load_program, parse_energies

    assert len(parse_energies("full")) == 68 and len(parse_energies("whiteline")) == 21
    path = tmp_path / "p.toml"
    path.write_text('segments = [{kind = "ramp", target_c = 150, rate_c_per_min = 5},\n'
                    '            {kind = "hold", duration_s = 600, sweeps = 2}]\n')

    class Args:
        program = str(path)

    assert load_program(Args()).num_sweeps == 2
    path.write_text('segments = [{kind = "soak", duration_s = 600}]\n')
    with pytest.raises(ValueError, match="soak"):
        load_program(Args())


LOST_PV = "XF:18ID:Mono:Energy"


def _lost_connection():
    from thermoxanes.devices.connection import PVConnectionError

    return PVConnectionError(f"mono: Channel Access connection lost to {LOST_PV} "
                             "(mono_energy) while moving to 8350.0, after 0.1 s")


def _failed_status(exc):
    from ophyd.status import StatusBase

    status = StatusBase()
    status.set_exception(exc)
    return status


def test_pv_failure_found_behind_failed_status():
    from bluesky.utils import FailedStatus

    from thermoxanes.commands.run import abort_message, pv_failure

    lost = _lost_connection()
    status = _failed_status(lost)
    try:  # as the RunEngine raises it: FailedStatus(status) from status.exception()
        raise FailedStatus(status) from status.exception(timeout=0)
    except FailedStatus as exc:
        assert LOST_PV not in str(exc)
        assert pv_failure(exc) is lost
    assert pv_failure(FailedStatus(status)) is lost            # no cause: the status
    try:  # the plan's cleanup failed as well: the PV error is its context
        try:
            raise FailedStatus(_failed_status(_lost_connection())) from _lost_connection()
        except FailedStatus:
            raise RuntimeError("cleanup failed") from None
    except RuntimeError as exc:
        assert LOST_PV in str(pv_failure(exc))
    assert pv_failure(lost) is lost                            # raised by a read/stage
    assert pv_failure(RuntimeError("a bug")) is None
    assert pv_failure(FailedStatus(_failed_status(RuntimeError("no PV")))) is None

    line = abort_message(lost, [{"uid": "a"}], 7, "the catalog /data/out")
    assert "\n" not in line
    assert line.startswith("thermoxanes run: error: lost EPICS PV connection")
    assert LOST_PV in line and "run aborted, 7 events of 1 run(s)" in line
    assert line.endswith("already saved in the catalog /data/out")


class _LostMono:
    """A positioner whose IOC has gone: every move fails naming its PV."""

    name = "mono"
    parent = None

    def set(self, value):
        return _failed_status(_lost_connection())

    def stop(self, *, success=False):
        pass


def test_run_ioc_gone_mid_run_one_line_exit_2_runs_kept(tmp_path, capsys, monkeypatch):
    """``thermoxanes run`` with the IOC gone after two events: one line on stderr naming
    the PV, exit status 2, and the two events and the failed run's stop in the catalog."""
    import types

    from bluesky import plan_stubs as bps
    from bluesky import preprocessors as bpp
    from ophyd import Signal

    import thermoxanes.plans.xanes
    import thermoxanes.profiles.beamline

    energy = Signal(name="mono_energy_ev", value=8330.0)

    def fake_sweep(camera, mono, sample_x, shutter, energies, **kwargs):
        @bpp.run_decorator(md={"plan_name": "xanes_sweep"})
        def inner():
            for e in energies[:2]:
                yield from bps.mv(energy, e)
                yield from bps.trigger_and_read([energy])
            yield from bps.abs_set(_LostMono(), energies[-1], wait=True)
            yield from bps.trigger_and_read([energy])  # never reached

        return (yield from inner())

    fake_beamline = types.SimpleNamespace(
        world=None, camera=None, mono=None, sample_x=None, shutter=None, rotation=energy,
        ring=energy, frame_readables=[energy], wait_for_connection=lambda timeout: None)
    monkeypatch.setattr(thermoxanes.profiles.beamline, "build_beamline",
                        lambda *args, **kwargs: fake_beamline)
    monkeypatch.setattr(thermoxanes.plans.xanes, "xanes_sweep", fake_sweep)
    out = tmp_path / "out"
    rc = main(["run", "xanes", "--energies", "8330,8340,8350", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1, err
    assert LOST_PV in err and "run aborted, 2 events of 1 run(s)" in err
    assert f"the catalog {out.resolve()}" in err

    from thermoxanes.storage.catalog import EmbeddedCatalog

    with EmbeddedCatalog(out) as catalog:
        (uid,) = list(catalog.runs)
        stop = catalog.runs[uid].metadata["stop"]
        assert stop["exit_status"] == "fail"
        assert stop["num_events"] == {"primary": 2}
