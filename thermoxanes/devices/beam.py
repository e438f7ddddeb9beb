"""Ring current and beamline clocks."""

from __future__ import annotations

import threading
import time
from typing import Any

from ophyd import Component as Cpt
from ophyd import Device, EpicsSignalRO, Signal
from ophyd import FormattedComponent as FCpt
from ophyd.status import Status, StatusBase, SubscriptionStatus

from thermoxanes.devices.connection import (
    configure_timeouts,
    guard_status,
    pv_errors_named,
    require_connected,
)


@pv_errors_named("read")
class RingCurrent(Device):
    """Storage-ring current (mA) from one PV.

    Parameters
    ----------
    current_pv : str
        PV of the current in mA (NSLS-II ``SR:OPS-BI{DCCT:1}I:Real-I``, SPEAR
        ``SPEAR:BeamCurrAvg``).
    """

    current_ma = FCpt(EpicsSignalRO, "{_current_pv}", kind="hinted")

    def __init__(self, prefix: str = "", *, current_pv: str, **kwargs: Any):
        self._current_pv = current_pv
        super().__init__(prefix, **kwargs)
        configure_timeouts(self)


@pv_errors_named("read", "set", "position")
class EpicsClock(Device):
    """A clock served as a PV (the simulated IOC's clock, in simulated seconds).

    Reading gives the time (s); ``set(duration_s)`` finishes once the PV has advanced by
    ``duration_s``; it fails, naming the PV, after ``duration_s / min_speed + 10`` wall
    seconds or as soon as the PV disconnects.

    Parameters
    ----------
    time_pv : str
        PV of the time (s).
    min_speed : float
        Slowest expected ratio of clock seconds to wall seconds (for the timeout).
    """

    time_s = FCpt(EpicsSignalRO, "{_time_pv}", kind="hinted")

    def __init__(self, prefix: str = "", *, time_pv: str, min_speed: float = 1.0,
                 **kwargs: Any):
        self._time_pv = time_pv
        self._min_speed = float(min_speed)
        super().__init__(prefix, **kwargs)
        self.time_s.name = self.name + "_time_s"
        configure_timeouts(self)

    @property
    def position(self) -> float:
        """Time now (s)."""
        return float(self.time_s.get())

    def set(self, duration_s: float) -> StatusBase:
        """Wait ``duration_s`` clock seconds."""
        duration_s = float(duration_s)
        if duration_s < 0:
            raise ValueError(f"{self.name}: cannot wait {duration_s} s")
        require_connected(self, f"wait {duration_s} s")
        end_s = self.position + duration_s

        def done(*, value: Any, **kwargs: Any) -> bool:
            return float(value) >= end_s

        status = SubscriptionStatus(self.time_s, done, run=True)
        return guard_status(status, self, timeout_s=duration_s / self._min_speed + 10.0,
                            doing=f"waiting for {self.time_s.pvname} to reach {end_s:.1f} s")


class WallClock(Device):
    """The wall clock (for beamlines without a clock PV): time is Unix time (s)."""

    time_s = Cpt(Signal, value=0.0, kind="hinted", doc="Unix time (s)")

    def __init__(self, prefix: str = "", **kwargs: Any):
        super().__init__(prefix, **kwargs)
        self.time_s.name = self.name + "_time_s"

    def read(self) -> dict[str, dict[str, Any]]:
        self.time_s.put(time.time())
        return super().read()

    @property
    def position(self) -> float:
        """Time now (s)."""
        return time.time()

    def set(self, duration_s: float) -> StatusBase:
        """Finish after ``duration_s`` wall seconds."""
        duration_s = float(duration_s)
        if duration_s < 0:
            raise ValueError(f"{self.name}: cannot wait {duration_s} s")
        status = Status(obj=self)
        timer = threading.Timer(duration_s, status.set_finished)
        timer.daemon = True
        timer.start()
        return status
