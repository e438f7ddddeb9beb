import numpy as np

from thermoxanes.simulators.heater import Heater


def _run(h: Heater, seconds: int, step: float = 5.0):
    out = []
    for _ in range(int(seconds / step)):
        h.advance(step)
        out.append((h.target_c, h.block_temperature_c, h.temperature_c))
    return np.array(out)


def test_ramp_lag_overshoot_and_settle():
    h = Heater(np.random.default_rng(0))
    h.setpoint_c = 150.0
    h.ramp_rate_c_per_min = 5.0
    tr = _run(h, 5400)
    t = np.arange(1, tr.shape[0] + 1) * 5.0
    # The ramped target moves at 5 C/min.
    i = np.searchsorted(t, 600.0)
    assert abs(tr[i, 0] - (25 + 5 * 600 / 60)) < 0.1
    # The sample lags the target during the ramp.
    assert 1.0 < tr[i, 0] - tr[i, 2] < 8.0
    # Overshoot of the block, then settling.
    assert 150.2 < tr[:, 1].max() < 158.0
    assert abs(tr[-1, 2] - 150.0) < 0.2


def test_output_off_cools_and_thermocouple_noise():
    h = Heater(np.random.default_rng(1), temperature_c=200.0)
    h.setpoint_c = 200.0
    h.output_on = False
    tr = _run(h, 3600)
    assert tr[-1, 2] < 40.0
    readings = np.array([h.thermocouple_c() for _ in range(200)])
    assert 0.05 < readings.std() < 0.5
    assert abs(readings.mean() - h.block_temperature_c) < 0.1


def test_step_setpoint_without_ramp():
    h = Heater(np.random.default_rng(0))
    h.ramp_rate_c_per_min = 0.0
    h.setpoint_c = 100.0
    h.advance(1.0)
    assert h.target_c == 100.0
