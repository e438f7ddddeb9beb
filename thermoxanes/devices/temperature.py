"""Temperature controllers over EPICS: Lakeshore 336, Eurotherm 2216e, Linkam T96.

All three present the same face to plans (that of the simulated heater): ``set(T)``
finishes when the readback has stayed within ``tolerance_c`` of ``T`` for ``settle_s``;
``ramp_rate_c_per_min`` is a movable signal; ``setpoint_c`` and ``max_temperature_c`` are
readable. Setpoints outside ``[min_temperature_c, max_temperature_c]`` and ramp rates above
``max_ramp_rate_c_per_min`` are refused (:class:`ophyd.utils.LimitError`) before any PV is
written.

PV names follow the EPICS support the APS ``apstools`` classes were written for
(``LakeShore336_LoopControl``, ``Eurotherm2216e``, ``Linkam_T96_Device``); see
:data:`HEATER_MODELS`, which the simulated IOC serves too.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ophyd import Component as Cpt
from ophyd import DerivedSignal, Device, EpicsSignal, EpicsSignalRO, Signal
from ophyd import FormattedComponent as FCpt
from ophyd.sim import FakeEpicsSignal, fake_device_cache
from ophyd.status import DeviceStatus, StatusBase
from ophyd.utils import LimitError

from thermoxanes.devices.connection import (
    configure_timeouts,
    epics_signals,
    fail_status,
    finish_status,
    guard_status,
    named_error,
    pv_errors_named,
    require_connected,
)

#: PV suffixes (after the controller prefix) by model and role; ``{loop}`` is the loop
#: number. ``readback_scale`` converts the readback PV to °C (the 2216e reads tenths).
#: ``enable`` (if any) must be written ``enable_value`` for the output to heat.
HEATER_MODELS: dict[str, dict[str, Any]] = {
    "lakeshore336": {
        "readback": "IN{loop}", "readback_scale": 1.0,
        "setpoint": "OUT{loop}:SP", "setpoint_rbv": "OUT{loop}:SP_RBV",
        "ramp": "RampR{loop}", "ramp_rbv": "RampR{loop}_RBV",
        "ramp_on": "OnRamp{loop}", "ramp_on_rbv": "OnRamp{loop}_RBV",
        "output": "HTR{loop}",
        "enable": "HTR{loop}:Range", "enable_rbv": "HTR{loop}:Range_RBV", "enable_value": 3,
    },
    "eurotherm2216e": {
        "readback": "SetPointSensor", "readback_scale": 0.1,
        "setpoint": "SetPointTempWrite", "setpoint_rbv": "SetPointTemp",
        "ramp": "SetPointRateWrite", "ramp_rbv": "SetPointRate",
        "output": "SetPointPower",
    },
    "linkam_t96": {
        "readback": "temperature_RBV", "readback_scale": 1.0,
        "setpoint": "rampLimit", "setpoint_rbv": "rampLimit_RBV",
        "ramp": "rampRate", "ramp_rbv": "rampRate_RBV",
        "output": "heaterPower_RBV",
        "enable": "heating", "enable_rbv": "heating_RBV", "enable_value": 1,
    },
}


class _RampLimit:
    """Refuse ramp rates outside ``(0, parent.max_ramp_rate_c_per_min]`` (°C/min)."""

    def check_value(self, value: Any) -> None:
        super().check_value(value)
        ceiling = float(self.parent.max_ramp_rate_c_per_min.get())
        if not 0.0 < float(value) <= ceiling:
            raise LimitError(f"{self.parent.name}: ramp rate {value} C/min outside "
                             f"(0, {ceiling}] C/min")

    def set(self, value: Any, **kwargs: Any) -> StatusBase:
        """Check the limits here, so a bad rate raises before the status exists."""
        self.check_value(value)
        return super().set(value, **kwargs)


class LimitedRampSignal(_RampLimit, EpicsSignal):
    """Ramp-rate signal (°C/min) that refuses rates outside ``(0, max_ramp_rate_c_per_min]``."""


class FakeLimitedRampSignal(_RampLimit, FakeEpicsSignal):
    """What ``ophyd.sim.make_fake_device`` substitutes for :class:`LimitedRampSignal`:
    the same limit check, no Channel Access (a real channel opened in mock mode would sit
    in CA's search back-off and delay the real IOC's connection later in the process)."""


fake_device_cache[LimitedRampSignal] = FakeLimitedRampSignal


@pv_errors_named("read", "set", "stop", "unstage", "go_safe", "position")
class TemperatureController(Device):
    """Common behaviour of the controllers; subclasses only name the PVs.

    Parameters
    ----------
    prefix : str
        Controller PV prefix (e.g. ``"XF:18IDB-ES{LS:336}"``).
    loop : int
        Control loop (Lakeshore 336: 1 or 2; ignored by the others).
    time_scale : float
        Wall seconds per controller second, for ``settle_s`` and ``timeout_s``: 1 at a
        beamline; ``1 / speed`` against a simulated IOC whose clock runs ``speed`` times
        faster than the wall clock.
    """

    temperature_c: Any
    setpoint_c: Any
    ramp_rate_c_per_min: Any
    tolerance_c = Cpt(Signal, value=1.0, kind="config", doc="Done when within (°C)")
    settle_s = Cpt(Signal, value=30.0, kind="config", doc="... for this long (s)")
    timeout_s = Cpt(Signal, value=6 * 3600.0, kind="config", doc="Longest wait for a set (s)")
    max_temperature_c = Cpt(Signal, value=450.0, kind="config", doc="Highest setpoint (°C)")
    min_temperature_c = Cpt(Signal, value=-50.0, kind="config", doc="Lowest setpoint (°C)")
    max_ramp_rate_c_per_min = Cpt(Signal, value=20.0, kind="config",
                                  doc="Fastest ramp allowed (°C/min)")
    max_setpoint_step_c = Cpt(Signal, value=250.0, kind="config",
                              doc="Largest single setpoint change (°C)")
    safe_temperature_c = Cpt(Signal, value=25.0, kind="config", doc="Safe setpoint (°C)")
    safe_state = Cpt(Signal, value="setpoint", kind="config",
                     doc="'setpoint' or 'output_off': what unstage() (halt) leaves")

    model = ""
    integer_setpoint = False

    def __init__(self, prefix: str = "", *, loop: int = 1, time_scale: float = 1.0,
                 poll_s: float = 0.05, **kwargs: Any):
        self.loop = int(loop)
        self._time_scale = float(time_scale)
        self._poll_s = float(poll_s)
        self._pending: DeviceStatus | None = None
        self._lock = threading.Lock()
        super().__init__(prefix, **kwargs)
        configure_timeouts(self)

    @property
    def time_scale(self) -> float:
        """Wall seconds per controller second (``settle_s``, ``timeout_s``)."""
        return self._time_scale

    @time_scale.setter
    def time_scale(self, value: float) -> None:
        if not float(value) > 0:
            raise ValueError(f"{self.name}: time_scale must be > 0, got {value}")
        self._time_scale = float(value)

    # -- hooks --------------------------------------------------------------------------
    def _enable_output(self) -> None:
        """Switch the output on if the model needs it (default: nothing)."""

    # -- bluesky verbs ------------------------------------------------------------------
    @property
    def position(self) -> float:
        """Readback temperature (°C)."""
        return float(self.temperature_c.get())

    def check_value(self, value: Any) -> None:
        """Raise :class:`~ophyd.utils.LimitError` for a setpoint outside the limits."""
        value = float(value)
        low, high = float(self.min_temperature_c.get()), float(self.max_temperature_c.get())
        if not low <= value <= high:
            raise LimitError(f"{self.name}: setpoint {value} C outside [{low}, {high}] C")

    def set(self, temperature_c: float) -> StatusBase:
        """Go to ``temperature_c`` (°C); the status finishes once settled there.

        It fails after ``timeout_s`` (controller seconds), and at once, naming the PV, if
        a PV of the controller disconnects.
        """
        temperature_c = float(temperature_c)
        self.check_value(temperature_c)
        require_connected(self, f"set {temperature_c} C")
        with self._lock:
            if self._pending is not None and not self._pending.done:
                fail_status(self._pending, RuntimeError(
                    f"{self.name}: superseded by a new setpoint {temperature_c} C"))
            status = DeviceStatus(self)
            self._pending = status
        guard_status(status, self, doing=f"settling at {temperature_c} C")
        value = float(round(temperature_c)) if self.integer_setpoint else temperature_c
        try:
            self._enable_output()
            self.setpoint_c.put(value, wait=False)
        except Exception as exc:
            fail_status(status, exc)
            raise
        thread = threading.Thread(target=self._watch, args=(status, value),
                                  name=f"{self.name}-settle", daemon=True)
        thread.start()
        return status

    def _readback_pvs(self) -> str:
        signal = getattr(self.temperature_c, "derived_from", self.temperature_c)
        return ", ".join(s.pvname for s in epics_signals(signal)) or self.temperature_c.name

    def _watch(self, status: DeviceStatus, target_c: float) -> None:
        tolerance = float(self.tolerance_c.get())
        settle_wall_s = float(self.settle_s.get()) * self._time_scale
        deadline = time.monotonic() + float(self.timeout_s.get()) * self._time_scale
        since: float | None = None
        while not status.done:
            now = time.monotonic()
            try:
                near = abs(float(self.temperature_c.get()) - target_c) <= tolerance
            except Exception as exc:  # lost connection: fail, never hang
                fail_status(status, named_error(exc, self, f"settling at {target_c} C"))
                return
            since = (since if since is not None else now) if near else None
            if since is not None and now - since >= settle_wall_s:
                finish_status(status)
                return
            if now > deadline:
                fail_status(status, TimeoutError(
                    f"{self.name}: did not settle at {target_c} C within "
                    f"{self.timeout_s.get()} s ({self._readback_pvs()})"))
                return
            time.sleep(self._poll_s)

    def stop(self, *, success: bool = False) -> None:
        """Stop waiting; unless ``success``, hold at the present temperature.

        With ``success`` (a plan that ended normally) the setpoint stands, e.g. the safe
        setpoint a plan has just sent, and a pending ``set`` is released as finished.
        """
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None and not pending.done:
            if success:
                finish_status(pending)
            else:
                fail_status(pending, RuntimeError(f"{self.name}: stopped"))
        if not success:
            try:
                self.setpoint_c.put(self.position, wait=False)
            except Exception:  # pragma: no cover - best effort on a lost connection
                pass


    def go_safe(self) -> None:
        """Apply the armed safe state (``safe_state``): safe setpoint, or output off."""
        if self.safe_state.get() == "output_off" and hasattr(self, "output_on"):
            self.output_on.put(False)
        else:
            self.setpoint_c.put(float(self.safe_temperature_c.get()), wait=False)

    def unstage(self) -> list[Any]:
        """Go safe, then unstage (what ``RE.halt()`` still reaches)."""
        try:
            self.go_safe()
        finally:
            result = super().unstage()
        return result


class _OutputOn(DerivedSignal):
    """Heater output on/off (bool) over an enable PV (off = 0, on = ``on_value``)."""

    def __init__(self, *args: Any, on_value: int = 1, **kwargs: Any):
        self._on_value = int(on_value)
        super().__init__(*args, **kwargs)

    def inverse(self, value: Any) -> bool:
        return bool(int(value))

    def forward(self, value: Any) -> int:
        return self._on_value if bool(value) else 0


class Lakeshore336(TemperatureController):
    """Lakeshore 336 loop (``loop`` 1 or 2), readback input ``IN{loop}`` in °C.

    PVs (apstools ``LakeShore336_LoopControl``): ``IN{loop}``, ``OUT{loop}:SP``,
    ``RampR{loop}``, ``OnRamp{loop}``, ``HTR{loop}``, ``HTR{loop}:Range`` (with ``_RBV``).
    ``set`` turns the ramp on and, if the heater range is Off, sets it to High (3).
    """

    model = "lakeshore336"
    temperature_c = FCpt(EpicsSignalRO, "{prefix}IN{loop}", kind="hinted")
    setpoint_c = FCpt(EpicsSignal, "{prefix}OUT{loop}:SP_RBV",
                      write_pv="{prefix}OUT{loop}:SP", kind="normal")
    ramp_rate_c_per_min = FCpt(LimitedRampSignal, "{prefix}RampR{loop}_RBV",
                               write_pv="{prefix}RampR{loop}", kind="config", tolerance=1e-3)
    ramp_on = FCpt(EpicsSignal, "{prefix}OnRamp{loop}_RBV", write_pv="{prefix}OnRamp{loop}",
                   kind="config")
    heater_output_pct = FCpt(EpicsSignalRO, "{prefix}HTR{loop}", kind="normal")
    heater_range = FCpt(EpicsSignal, "{prefix}HTR{loop}:Range_RBV",
                        write_pv="{prefix}HTR{loop}:Range", kind="config")
    output_on = Cpt(_OutputOn, derived_from="heater_range", on_value=3, kind="normal")

    def _enable_output(self) -> None:
        self.ramp_on.put(1, wait=False)
        if int(self.heater_range.get()) == 0:
            self.heater_range.put(3, wait=False)


class _DeciCelsius(DerivedSignal):
    """°C from a PV in tenths of °C."""

    def inverse(self, value: Any) -> float:
        return 0.1 * float(value)

    def forward(self, value: Any) -> float:
        return 10.0 * float(value)


class Eurotherm2216e(TemperatureController):
    """Eurotherm 2216e: integer setpoint (°C), readback in tenths of °C.

    PVs (apstools ``Eurotherm2216e``): ``SetPointSensor`` (0.1 °C), ``SetPointTemp`` /
    ``SetPointTempWrite``, ``SetPointPower``. The ramp-rate PVs ``SetPointRate`` /
    ``SetPointRateWrite`` (the 2216e's setpoint rate limit, °C/min) are not in apstools:
    they follow the same naming and may need renaming at a given beamline.
    """

    model = "eurotherm2216e"
    integer_setpoint = True
    sensor_dc = Cpt(EpicsSignalRO, "SetPointSensor", kind="omitted")
    temperature_c = Cpt(_DeciCelsius, derived_from="sensor_dc", kind="hinted")
    setpoint_c = Cpt(EpicsSignal, "SetPointTemp", write_pv="SetPointTempWrite", kind="normal")
    ramp_rate_c_per_min = Cpt(LimitedRampSignal, "SetPointRate", write_pv="SetPointRateWrite",
                              kind="config", tolerance=1e-3)
    heater_output_pct = Cpt(EpicsSignalRO, "SetPointPower", kind="normal")


class LinkamT96(TemperatureController):
    """Linkam T96 (areaDetector-style ``_RBV`` PVs): heating switched on by ``set``.

    PVs (apstools ``Linkam_T96_Device``): ``temperature_RBV``, ``rampLimit``, ``rampRate``,
    ``heating`` (with ``_RBV``), ``heaterPower_RBV``.
    """

    model = "linkam_t96"
    temperature_c = Cpt(EpicsSignalRO, "temperature_RBV", kind="hinted")
    setpoint_c = Cpt(EpicsSignal, "rampLimit_RBV", write_pv="rampLimit", kind="normal")
    ramp_rate_c_per_min = Cpt(LimitedRampSignal, "rampRate_RBV", write_pv="rampRate",
                              kind="config", tolerance=1e-3)
    heating = Cpt(EpicsSignal, "heating_RBV", write_pv="heating", kind="config")
    output_on = Cpt(_OutputOn, derived_from="heating", on_value=1, kind="normal")
    heater_output_pct = Cpt(EpicsSignalRO, "heaterPower_RBV", kind="normal")

    def _enable_output(self) -> None:
        self.heating.put(1, wait=False)


#: ophyd class by model name (the ``heater.model`` key of a profile).
CONTROLLER_CLASSES: dict[str, type[TemperatureController]] = {
    cls.model: cls for cls in (Lakeshore336, Eurotherm2216e, LinkamT96)
}
