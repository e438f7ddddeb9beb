"""Motion classes with fake signals: timeouts instead of hangs, limits, pseudo math."""

import pytest
from ophyd.sim import make_fake_device
from ophyd.utils import LimitError

from thermoxanes.devices import EpicsShutter, FocusCalibration, FocusingMonochromator
from thermoxanes.devices.connection import CATimeouts, PVTimeoutError
from thermoxanes.devices.motion import LimitedEpicsMotor


def test_stalled_motor_times_out_naming_it():
    motor = make_fake_device(LimitedEpicsMotor)("FAKE:M1", name="sample_x")
    motor.velocity.sim_put(1000.0)
    motor.user_setpoint.sim_set_limits((-100.0, 100.0))
    motor.move_timeout_margin_s = 0.3
    status = motor.set(10.0)              # nothing ever reports DMOV: a dead IOC
    with pytest.raises(Exception) as info:
        status.wait(5)
    assert "sample_x" in repr(status) or "sample_x" in str(info.value)


def test_mono_move_fails_when_one_motor_fails():
    # ophyd's pseudo-positioner finishes its move when every real move has finished, failed
    # or not: a dead IOC made the energy move "succeed" once the motors timed out.
    mono = make_fake_device(FocusingMonochromator)(
        name="mono", mono_pv="F:E", zoneplate_pv="F:ZP", detector_pv="F:DET",
        calibration=FocusCalibration(magnification=50.0), limits_ev=(8000.0, 9000.0))
    for real, margin_s in zip(mono.real_positioners, (30.0, 0.3, 30.0), strict=True):
        real.user_setpoint.sim_set_limits((-1e6, 1e6))
        real.user_readback.sim_put(1.0)
        real.move_timeout_margin_s = margin_s      # only the zone plate stalls out early
    status = mono.set(8500.0)
    with pytest.raises(PVTimeoutError, match="mono_zoneplate_z_mm: not done moving"):
        status.wait(10)
    assert status.done and not status.success


def test_ca_timeouts_validated():
    assert CATimeouts().write_s == 10.0 and CATimeouts().read_s is None
    with pytest.raises(ValueError, match="write_s"):
        CATimeouts(write_s=0.0)


def test_soft_limits_from_llm_hlm():
    motor = make_fake_device(LimitedEpicsMotor)("FAKE:M2", name="m2")
    motor.user_setpoint.sim_set_limits((-100.0, 100.0))
    motor.low_limit_travel.sim_put(-5.0)
    motor.high_limit_travel.sim_put(5.0)
    with pytest.raises(LimitError, match=r"FAKE:M2\.LLM"):
        motor.check_value(6.0)
    motor.check_value(4.0)


def test_mono_forward_inverse_and_limits():
    cal = FocusCalibration(magnification=50.0)
    mono = make_fake_device(FocusingMonochromator)(
        name="mono", mono_pv="F:E", zoneplate_pv="F:ZP", detector_pv="F:DET",
        energy_units="keV", calibration=cal, limits_ev=(8000.0, 9000.0))
    real = mono.forward(mono.PseudoPosition(energy_ev=8500.0))
    assert real.dcm_energy == pytest.approx(8.5)
    assert (real.zoneplate_z_mm, real.detector_z_mm) == pytest.approx(cal.positions_mm(8500.0))
    assert mono.inverse(real).energy_ev == pytest.approx(8500.0)
    with pytest.raises(LimitError, match="outside"):
        mono.check_value(9500.0)
    mono.magnification.put(25.0)
    assert mono.calibration.magnification == 25.0
    with pytest.raises(ValueError, match="energy_units"):
        FocusingMonochromator(name="x", mono_pv="a", zoneplate_pv="b", detector_pv="c",
                              energy_units="J")


def test_shutter_rejects_bad_state():
    shutter = make_fake_device(EpicsShutter)(name="shutter", open_pv="S:O", close_pv="S:C",
                                             status_pv="S:S", open_value=0, timeout_s=0.2)
    with pytest.raises(ValueError, match="'open' or 'close'"):
        shutter.set("half")
    shutter.status.sim_put(1)
    assert not shutter.is_open
    with pytest.raises(PVTimeoutError, match="shutter: not done going open within 0.2 s .* "
                                             "did not report open; wrote 1 to S:O"):
        shutter.set("open").wait(2)
