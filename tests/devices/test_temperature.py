"""Temperature-controller logic with ophyd's fake signals (no IOC)."""

import threading
import time

import pytest
from ophyd.sim import make_fake_device
from ophyd.utils import LimitError

from thermoxanes.devices.temperature import CONTROLLER_CLASSES, HEATER_MODELS


def _fake(model):
    cls = make_fake_device(CONTROLLER_CLASSES[model])
    heater = cls("X:", name="heater", time_scale=0.01, poll_s=0.005)
    heater.settle_s.put(10.0)          # 0.1 wall s at time_scale 0.01
    heater.tolerance_c.put(1.0)
    return heater


def _read(heater, value_c):
    if heater.model == "eurotherm2216e":
        heater.sensor_dc.sim_put(int(round(value_c * 10)))
    else:
        heater.temperature_c.sim_put(value_c)


@pytest.mark.parametrize("model", sorted(HEATER_MODELS))
def test_done_after_settling_within_tolerance(model):
    heater = _fake(model)
    _read(heater, 25.0)
    status = heater.set(100.0)
    time.sleep(0.2)
    assert not status.done                  # far from the setpoint
    _read(heater, 99.5)
    start = time.monotonic()
    status.wait(5)
    assert status.success and time.monotonic() - start >= 0.09
    assert heater.setpoint_c.get() == pytest.approx(100.0)


def test_excursion_restarts_the_settle_clock():
    heater = _fake("lakeshore336")
    heater.settle_s.put(30.0)               # 0.3 wall s
    _read(heater, 50.0)
    status = heater.set(50.0)

    def wander():
        time.sleep(0.15)
        _read(heater, 53.0)
        time.sleep(0.05)
        _read(heater, 50.2)

    threading.Thread(target=wander).start()
    start = time.monotonic()
    status.wait(5)
    assert time.monotonic() - start >= 0.45


def test_limits_refused_before_any_write():
    heater = _fake("linkam_t96")
    heater.max_temperature_c.put(300.0)
    heater.max_ramp_rate_c_per_min.put(10.0)
    with pytest.raises(LimitError, match="setpoint 350.0 C outside"):
        heater.set(350.0)
    with pytest.raises(LimitError, match="ramp rate 20.0"):
        heater.ramp_rate_c_per_min.set(20.0)
    assert heater.setpoint_c.get() == 0 and heater.heating.get() == 0


def test_stop_and_safe_state():
    heater = _fake("lakeshore336")
    _read(heater, 120.0)
    status = heater.set(200.0)
    heater.stop(success=False)
    with pytest.raises(Exception, match="stopped"):
        status.wait(1)
    assert heater.setpoint_c.get() == pytest.approx(120.0)     # held where it is
    heater.safe_temperature_c.put(25.0)
    heater.unstage()
    assert heater.setpoint_c.get() == pytest.approx(25.0)
    heater.safe_state.put("output_off")
    heater.heater_range.sim_put(3)
    heater.unstage()
    assert heater.heater_range.get() == 0 and heater.output_on.get() is False
