"""Motion over EPICS: sample stage, focusing monochromator (pseudo-positioner), shutter."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ophyd import Component as Cpt
from ophyd import (
    Device,
    EpicsMotor,
    EpicsSignal,
    EpicsSignalRO,
    PseudoPositioner,
    PseudoSingle,
    Signal,
)
from ophyd import FormattedComponent as FCpt
from ophyd.pseudopos import pseudo_position_argument, real_position_argument
from ophyd.status import StatusBase, SubscriptionStatus
from ophyd.utils import LimitError

from thermoxanes.devices.connection import (
    PVTimeoutError,
    configure_timeouts,
    fail_status,
    guard_status,
    names_pvs,
    pv_errors_named,
    require_connected,
)
from thermoxanes.devices.focus import FocusCalibration


@pv_errors_named("read", "describe", "read_configuration")
class LimitedEpicsMotor(EpicsMotor):
    """``EpicsMotor`` that also checks ``.LLM``/``.HLM`` and never waits forever.

    ophyd checks the control limits of ``.VAL``; IOCs that leave those unset (e.g.
    caproto's fake motor record) would otherwise accept any target. Equal limits mean none.

    A move fails, with an error naming the record's PVs, as soon as one of them
    disconnects (an IOC gone mid-move), or when it takes longer than its timeout: the
    ``timeout`` given, else ``move_timeout_factor`` times the expected duration (distance
    over ``.VELO``) plus ``move_timeout_margin_s`` (a stalled motor on a live IOC).
    Verbs on a disconnected motor raise
    :class:`~thermoxanes.devices.connection.PVConnectionError` naming its PVs (ophyd's
    own ``DisconnectedError`` names only the ophyd attribute).
    """

    move_timeout_factor = 5.0
    move_timeout_margin_s = 30.0

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        configure_timeouts(self)

    def move_timeout_s(self, position: float) -> float:
        """Longest wait (wall s) for a move to ``position`` from here."""
        try:
            velocity = abs(float(self.velocity.get()))
            distance = abs(float(position) - float(self.position))
            expected_s = distance / velocity if velocity > 0 else 0.0
        except (TypeError, ValueError):
            expected_s = 0.0
        return self.move_timeout_factor * expected_s + self.move_timeout_margin_s

    @names_pvs
    def move(self, position: float, wait: bool = True, **kwargs: Any) -> StatusBase:
        require_connected(self, f"move to {position}")
        timeout = kwargs.pop("timeout", None)
        if timeout is None:
            timeout = self.move_timeout_s(position)
        status = super().move(position, wait=False, **kwargs)   # no ophyd timeout: ours
        guard_status(status, self, timeout_s=timeout, doing=f"moving to {position}",
                     signals=[self.user_setpoint, self.user_readback, self.motor_done_move],
                     pvs=lambda: f"{self.motor_done_move.pvname} still 0, "
                                 f"{self.user_readback.pvname} = {self._position}",
                     positioner=self)
        if wait:
            try:
                status.wait()
            except KeyboardInterrupt:
                self.stop()
                raise
        return status

    @names_pvs
    def check_value(self, pos: float) -> None:
        super().check_value(pos)
        low = float(self.low_limit_travel.get())
        high = float(self.high_limit_travel.get())
        if low < high and not low <= float(pos) <= high:
            raise LimitError(f"{self.name}: position {pos} outside [{low}, {high}] "
                             f"({self.prefix}.LLM/.HLM)")

    @names_pvs
    def stop(self, *, success: bool = False) -> None:
        super().stop(success=success)

    @property
    @names_pvs
    def position(self) -> Any:
        """Readback position (engineering units); raises naming the PVs if disconnected."""
        return super().position


class SampleStage(Device):
    """Sample stage: three motor records, x (horizontal), y (vertical), z (along the beam).

    Parameters
    ----------
    x_pv, y_pv, z_pv : str
        Motor record names (units as configured in the records; µm in the profiles here).
    """

    x = FCpt(LimitedEpicsMotor, "{_x_pv}", kind="normal")
    y = FCpt(LimitedEpicsMotor, "{_y_pv}", kind="normal")
    z = FCpt(LimitedEpicsMotor, "{_z_pv}", kind="normal")

    def __init__(self, prefix: str = "", *, x_pv: str, y_pv: str, z_pv: str, **kwargs: Any):
        self._x_pv, self._y_pv, self._z_pv = x_pv, y_pv, z_pv
        super().__init__(prefix, **kwargs)


@pv_errors_named("read", "set", "stop")
class FocusingMonochromator(PseudoPositioner):
    """Photon energy (eV) that moves monochromator, zone plate and detector together.

    ``set(energy_ev)`` moves the three motors at once to the energy and to the zone-plate and
    detector positions of :class:`~thermoxanes.devices.focus.FocusCalibration` (lens
    equations at constant magnification, corrected by calibration points), so the image
    stays in focus and keeps its pixel size. Energies outside ``limits_ev`` and motor
    targets outside their record limits are refused before anything moves.

    Parameters
    ----------
    mono_pv, zoneplate_pv, detector_pv : str
        Motor records: monochromator energy (in ``energy_units``), zone plate and detector
        position along the beam (mm).
    energy_units : {"eV", "keV"}
        Engineering units of the monochromator energy record.
    calibration : FocusCalibration
        Optics and calibration points.
    limits_ev : (float, float)
        Allowed energies (eV).
    """

    energy_ev = Cpt(PseudoSingle, kind="hinted")
    dcm_energy = FCpt(LimitedEpicsMotor, "{_mono_pv}", kind="normal")
    zoneplate_z_mm = FCpt(LimitedEpicsMotor, "{_zoneplate_pv}", kind="normal")
    detector_z_mm = FCpt(LimitedEpicsMotor, "{_detector_pv}", kind="normal")
    magnification = Cpt(Signal, value=50.0, kind="config", doc="Kept constant on energy moves")

    def __init__(
        self,
        prefix: str = "",
        *,
        mono_pv: str,
        zoneplate_pv: str,
        detector_pv: str,
        energy_units: str = "eV",
        calibration: FocusCalibration | None = None,
        limits_ev: tuple[float, float] = (4500.0, 12000.0),
        **kwargs: Any,
    ):
        if energy_units not in ("eV", "keV"):
            raise ValueError(f"energy_units must be 'eV' or 'keV', got {energy_units!r}")
        self._mono_pv, self._zoneplate_pv, self._detector_pv = mono_pv, zoneplate_pv, detector_pv
        self._ev_per_unit = 1.0 if energy_units == "eV" else 1000.0
        self._calibration = calibration or FocusCalibration()
        self._limits_ev = (float(limits_ev[0]), float(limits_ev[1]))
        super().__init__(prefix, **kwargs)
        self.magnification.put(self._calibration.magnification)
        self.energy_ev._limits = self._limits_ev

    @property
    def calibration(self) -> FocusCalibration:
        """Focus calibration at the present magnification."""
        magnification = float(self.magnification.get())
        if magnification != self._calibration.magnification:
            self._calibration = dataclasses.replace(self._calibration,
                                                    magnification=magnification)
        return self._calibration

    @property
    def limits_ev(self) -> tuple[float, float]:
        """Allowed energies (eV)."""
        return self._limits_ev

    def check_value(self, value: Any) -> None:
        """Refuse energies outside :attr:`limits_ev` or motor targets outside their limits."""
        energy = float(value[0] if isinstance(value, tuple | list) else
                       getattr(value, "energy_ev", value))
        low, high = self._limits_ev
        if not (math.isfinite(energy) and low <= energy <= high):
            raise LimitError(f"{self.name}: energy {energy} eV outside [{low}, {high}] eV")
        super().check_value(value)

    def _setup_move(self, position: Any, status: StatusBase) -> None:
        self._move_status = status
        super()._setup_move(position, status)

    def _real_finished(self, status: StatusBase | None = None, *, obj: Any = None) -> None:
        """A real move has ended: if it failed, the energy move fails, with its error.

        ophyd's pseudo-positioner finishes its move when every real move has ended,
        successfully or not: a motor whose IOC died mid-move timed out, and the energy move
        then reported success. Here the first real failure fails the energy move, with that
        motor's error (which names its PVs), before ophyd's bookkeeping runs.
        """
        move = getattr(self, "_move_status", None)
        if status is not None and not status.success and move is not None and not move.done:
            exc = status.exception()
            if not isinstance(exc, Exception):
                exc = PVTimeoutError(f"{self.name}: {getattr(obj, 'name', obj)} move failed")
            fail_status(move, exc, positioner=self)
        super()._real_finished(status, obj=obj)

    @names_pvs
    def move(self, position: Any, wait: bool = True, timeout: float | None = None,
             moved_cb: Any = None) -> StatusBase:
        return super().move(position, wait=wait, timeout=timeout, moved_cb=moved_cb)

    @pseudo_position_argument
    def forward(self, pseudo_pos):
        """Motor targets (mono units, mm, mm) for an energy (eV)."""
        energy_ev = float(pseudo_pos.energy_ev)
        zp_mm, det_mm = self.calibration.positions_mm(energy_ev)
        return self.RealPosition(dcm_energy=energy_ev / self._ev_per_unit,
                                 zoneplate_z_mm=zp_mm, detector_z_mm=det_mm)

    @real_position_argument
    def inverse(self, real_pos):
        """Energy (eV) from the monochromator position."""
        return self.PseudoPosition(energy_ev=float(real_pos.dcm_energy) * self._ev_per_unit)


@pv_errors_named("read", "set", "is_open")
class EpicsShutter(Device):
    """Shutter with open and close command PVs and a status PV.

    ``set("open")``/``set("close")`` writes 1 to the command PV and finishes when the
    status PV reports the new state, or fails after ``timeout_s``.

    Parameters
    ----------
    open_pv, close_pv, status_pv : str
        Command and status PVs (full names).
    open_value : int
        Status value meaning open (NSLS-II PPS shutters report 0 for open).
    timeout_s : float
        Longest wait for the status (s).
    """

    open_cmd = FCpt(EpicsSignal, "{_open_pv}", kind="omitted")
    close_cmd = FCpt(EpicsSignal, "{_close_pv}", kind="omitted")
    status = FCpt(EpicsSignalRO, "{_status_pv}", kind="normal")

    def __init__(self, prefix: str = "", *, open_pv: str, close_pv: str, status_pv: str,
                 open_value: int = 1, timeout_s: float = 10.0, **kwargs: Any):
        self._open_pv, self._close_pv, self._status_pv = open_pv, close_pv, status_pv
        self._open_value = int(open_value)
        self._timeout_s = float(timeout_s)
        super().__init__(prefix, **kwargs)
        configure_timeouts(self)

    @property
    def is_open(self) -> bool:
        """True when the status PV reports open."""
        return int(self.status.get()) == self._open_value

    def set(self, value: str) -> StatusBase:
        """Open or close (``"open"`` or ``"close"``); finishes when the status agrees.

        Fails naming the PVs when they are (or go) disconnected, or when the status PV
        has not agreed within ``timeout_s``.
        """
        if value not in ("open", "close"):
            raise ValueError(f"{self.name}: expected 'open' or 'close', got {value!r}")
        want_open = value == "open"
        command = self.open_cmd if want_open else self.close_cmd
        require_connected(self, value)

        def arrived(*, value: Any, **kwargs: Any) -> bool:
            return (int(value) == self._open_value) == want_open

        status = SubscriptionStatus(self.status, arrived, run=True)
        guard_status(status, self, timeout_s=self._timeout_s, doing=f"going {value}",
                     pvs=lambda: f"{self._status_pv} did not report {value}; wrote 1 to "
                                 f"{self._open_pv if want_open else self._close_pv}")
        try:
            command.put(1, wait=False)
        except Exception as exc:
            fail_status(status, exc)
            raise
        return status

    def stop(self, *, success: bool = False) -> None:
        """Nothing to stop."""
