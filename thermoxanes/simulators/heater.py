"""Heater physics: a lumped thermal model under PID control, with a lagging sample.

Three lumped stages: the heating element, the heater block (where the thermocouple
sits) and the sample (a capillary in the hot zone) that follows the block with a
first-order lag::

    tau_e dq/dt = u - q                             heating element, PID output u in [0, 1]
    C dT_h/dt = P_max q - G (T_h - T_amb)          heater block
    dT_s/dt   = (T_h - T_s) / tau_lag               sample

The PID acts on the block temperature and chases a ramped setpoint
(``target_c``), which moves toward ``setpoint_c`` at ``ramp_rate_c_per_min``. The integral
term and the block's thermal inertia give a few degrees of overshoot at the end of a ramp;
the sample lags the block by about ``tau_lag_s * ramp_rate``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class HeaterParams:
    """Parameters of :class:`Heater` (SI-ish units named in the fields)."""

    ambient_c: float = 25.0
    #: Steady-state block temperature rise at full power (K).
    max_rise_k: float = 700.0
    #: Block time constant C/G (s).
    block_tau_s: float = 90.0
    #: Lag of the heating element (power delivered to the block) behind the PID output (s).
    element_lag_s: float = 30.0
    #: Lag of the sample behind the block (s).
    sample_lag_s: float = 40.0
    #: PID gains on the block temperature error (1/K, 1/(K s), s/K).
    kp_per_k: float = 0.02
    ki_per_k_s: float = 0.0006
    kd_s_per_k: float = 0.0
    #: Thermocouple noise (K, rms).
    thermocouple_noise_k: float = 0.15
    #: Integration sub-step (s).
    step_s: float = 1.0


class Heater:
    """PID-controlled heater with ramped setpoint and a sample that lags the block.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of thermocouple noise (the dynamics themselves are deterministic).
    params : HeaterParams, optional
    temperature_c : float, optional
        Initial block and sample temperature (deg C); ambient when omitted.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        params: HeaterParams | None = None,
        temperature_c: float | None = None,
    ) -> None:
        self.params = params or HeaterParams()
        self._rng = rng
        t0 = self.params.ambient_c if temperature_c is None else float(temperature_c)
        self._block_c = t0
        self._sample_c = t0
        self._target_c = t0
        self._integral = 0.0
        self._last_error = 0.0
        self._element = self._steady_output(t0)
        # Warm-started at the initial temperature: feed-forward integral for steady state.
        self._integral = self._steady_output(t0) / max(self.params.ki_per_k_s, 1e-12)
        #: Called before every read or write of the state, so that an owner sharing a
        #: clock (the world) can first integrate up to the present.
        self.on_access: Callable[[], None] | None = None
        self._setpoint_c = t0
        self._ramp_rate_c_per_min = 5.0
        self._output_on = True
        self.power_fraction = 0.0

    def _catch_up(self) -> None:
        if self.on_access is not None:
            self.on_access()

    @property
    def setpoint_c(self) -> float:
        """Final setpoint (deg C); the PID chases the ramped :attr:`target_c`."""
        self._catch_up()
        return self._setpoint_c

    @setpoint_c.setter
    def setpoint_c(self, value: float) -> None:
        self._catch_up()
        self._setpoint_c = float(value)

    @property
    def ramp_rate_c_per_min(self) -> float:
        """Ramp rate of the setpoint seen by the PID (deg C / min); <= 0 means a step."""
        self._catch_up()
        return self._ramp_rate_c_per_min

    @ramp_rate_c_per_min.setter
    def ramp_rate_c_per_min(self, value: float) -> None:
        self._catch_up()
        self._ramp_rate_c_per_min = float(value)

    @property
    def output_on(self) -> bool:
        """Heater power enabled; when False the block cools toward ambient."""
        self._catch_up()
        return self._output_on

    @output_on.setter
    def output_on(self, value: bool) -> None:
        self._catch_up()
        self._output_on = bool(value)

    def _steady_output(self, temperature_c: float) -> float:
        return min(1.0, max(0.0, (temperature_c - self.params.ambient_c) / self.params.max_rise_k))

    @property
    def target_c(self) -> float:
        """Current ramped setpoint (deg C) that the PID regulates to."""
        self._catch_up()
        return self._target_c

    @property
    def temperature_c(self) -> float:
        """True sample temperature (deg C)."""
        self._catch_up()
        return self._sample_c

    @property
    def block_temperature_c(self) -> float:
        """True heater-block temperature at the thermocouple (deg C)."""
        self._catch_up()
        return self._block_c

    def thermocouple_c(self) -> float:
        """Noisy thermocouple reading of the block temperature (deg C)."""
        self._catch_up()
        return float(self._block_c + self.params.thermocouple_noise_k * self._rng.standard_normal())

    def advance(self, dt_s: float) -> None:
        """Integrate the thermal model over ``dt_s`` (s) in sub-steps of ``params.step_s``."""
        p = self.params
        n = max(1, math.ceil(float(dt_s) / p.step_s - 1e-9))
        h = float(dt_s) / n
        if dt_s <= 0:
            return
        rate = self._ramp_rate_c_per_min / 60.0
        block, sample, target = self._block_c, self._sample_c, self._target_c
        integral, last_err = self._integral, self._last_error
        setpoint = self._setpoint_c
        on = self._output_on
        kp, ki, kd = p.kp_per_k, p.ki_per_k_s, p.kd_s_per_k
        a_block = h / p.block_tau_s
        a_sample = h / p.sample_lag_s
        rise, amb = p.max_rise_k, p.ambient_c
        a_element = h / p.element_lag_s
        q = self._element
        u = 0.0
        for _ in range(n):
            if rate > 0.0:
                step = rate * h
                if target < setpoint:
                    target = min(setpoint, target + step)
                elif target > setpoint:
                    target = max(setpoint, target - step)
            else:
                target = setpoint
            err = target - block
            if on:
                deriv = (err - last_err) / h
                u_unclamped = kp * err + ki * integral + kd * deriv
                u = min(1.0, max(0.0, u_unclamped))
                # Conditional integration (anti-windup).
                if u == u_unclamped or (u_unclamped > 1.0 and err < 0) or (
                    u_unclamped < 0.0 and err > 0
                ):
                    integral += err * h
            else:
                u = 0.0
                integral = self._steady_output(block) / max(ki, 1e-12)
            last_err = err
            q += a_element * (u - q)
            block += a_block * (rise * q - (block - amb))
            sample += a_sample * (block - sample)
        self._block_c, self._sample_c, self._target_c = block, sample, target
        self._integral, self._last_error = integral, last_err
        self.power_fraction = u
        self._element = q
