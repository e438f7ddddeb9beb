"""Bounded Channel Access: connection checks, timeouts and status guards that name PVs.

Every verb of the devices here ends within a bounded time when an IOC goes away, with an
error naming a PV:

- a request on a channel that is not connected fails after the *reconnect* timeout
  (ophyd's ``connection_timeout``), a get after the *read* timeout, a put with completion
  or a ``signal.set`` after the *write* timeout (:class:`CATimeouts`,
  :func:`configure_timeouts`);
- a status in flight (a motor move, the shutter, the clock, the heater, a frame) fails
  within :data:`GUARD_POLL_S` when one of its channels disconnects, and after its own
  timeout when the IOC stays connected but never answers (:func:`guard_status`).

ophyd alone does neither: a move in progress when the IOC dies waits for its timeout and a
pseudo-positioner then reports success, and ophyd's ``DisconnectedError`` names the ophyd
attribute, not the PV.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ophyd import Device
from ophyd.signal import EpicsSignalBase
from ophyd.status import StatusBase
from ophyd.utils import DisconnectedError, InvalidState


class PVConnectionError(TimeoutError, DisconnectedError):
    """Some PVs are not connected (or did not connect in time); the message names them.

    Also an :class:`ophyd.utils.DisconnectedError`, so code written against ophyd's own
    error still catches it.
    """


class PVTimeoutError(TimeoutError):
    """An operation on connected PVs did not finish in time; the message names the PVs."""


@dataclass(frozen=True)
class CATimeouts:
    """Channel Access timeouts (s) of every EPICS signal of a device; None keeps ophyd's.

    Parameters
    ----------
    read_s : float or None
        One get (ophyd ``timeout``, 2 s unless changed process-wide with
        ``EpicsSignalBase.set_defaults``).
    reconnect_s : float or None
        How long a get or put on a channel that is not connected waits for it (ophyd
        ``connection_timeout``, 1 s by default): what an operation on a device whose IOC
        has gone costs before it fails.
    write_s : float or None
        A put with completion, and ``signal.set(value)`` waiting for its readback (ophyd
        ``write_timeout``, which ophyd leaves unbounded).
    """

    read_s: float | None = None
    reconnect_s: float | None = None
    write_s: float | None = 10.0

    def __post_init__(self) -> None:
        for name in ("read_s", "reconnect_s", "write_s"):
            value = getattr(self, name)
            if value is not None and not float(value) > 0:
                raise ValueError(f"CATimeouts.{name} must be > 0 or None, got {value}")


#: What the device classes apply when they are built: ophyd's read and reconnect
#: timeouts, and a bounded write timeout. Profiles set all three (``[epics]``).
DEFAULT_TIMEOUTS = CATimeouts()


def epics_signals(device: Any) -> list[EpicsSignalBase]:
    """The Channel Access signals of ``device`` (itself if it is one); lazy ones not built."""
    if isinstance(device, EpicsSignalBase):
        return [device]
    if not isinstance(device, Device):
        return []
    return [w.item for w in device.walk_signals(include_lazy=False)
            if isinstance(w.item, EpicsSignalBase)]


def configure_timeouts(device: Any, timeouts: CATimeouts = DEFAULT_TIMEOUTS) -> None:
    """Apply ``timeouts`` to every Channel Access signal of ``device``.

    ophyd takes these per signal at construction only (or process-wide through
    ``EpicsSignalBase.set_defaults``); this sets them on signals already built, as the
    read-only properties ``timeout``, ``connection_timeout`` and ``write_timeout`` show.
    """
    for signal in epics_signals(device):
        if timeouts.read_s is not None:
            signal._timeout = float(timeouts.read_s)
        if timeouts.reconnect_s is not None:
            signal._connection_timeout = float(timeouts.reconnect_s)
        if timeouts.write_s is not None:
            signal._write_timeout = float(timeouts.write_s)


def ca_connected(signal: Any) -> bool:
    """Whether ``signal`` is connected as Channel Access has it now (ophyd's own flag, which
    follows through a dispatcher thread, can lag behind); True for soft or fake signals."""
    pvs = [getattr(signal, "_read_pv", None), getattr(signal, "_write_pv", None)]
    return all(pv.connected for pv in pvs if pv is not None) and bool(signal.connected)


def _signal_pvs(signal: EpicsSignalBase, only_unconnected: bool) -> list[str]:
    pvs = [signal._read_pv]
    if getattr(signal, "_write_pv", None) is not None and signal._write_pv is not signal._read_pv:
        pvs.append(signal._write_pv)
    if not only_unconnected:
        return [pv.pvname for pv in pvs]
    return [pv.pvname for pv in pvs if not pv.connected] or [pvs[0].pvname]


def unconnected_pvs(device: Any) -> list[str]:
    """``"PV (ophyd name)"`` for every signal of ``device`` that is not connected."""
    missing = []
    for signal in epics_signals(device):
        if not ca_connected(signal):
            missing += [f"{name} ({signal.name})" for name in _signal_pvs(signal, True)]
    return missing


def _listed(names: list[str], limit: int = 5) -> str:
    names = sorted(set(names))
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def connection_error(device: Any, doing: str = "") -> PVConnectionError:
    """A :class:`PVConnectionError` naming the unconnected PVs of ``device``."""
    missing = unconnected_pvs(device)
    what = _listed(missing) if missing else "its PVs"
    during = f" ({doing})" if doing else ""
    return PVConnectionError(f"{getattr(device, 'name', device)}: not connected{during}: {what}")


def require_connected(device: Any, doing: str = "") -> None:
    """Raise :class:`PVConnectionError` naming the PVs if ``device`` is not connected now."""
    if any(not ca_connected(s) for s in epics_signals(device)):
        raise connection_error(device, doing)


def named_error(exc: BaseException, device: Any, doing: str = "") -> BaseException:
    """``exc``, or an error naming PVs in its place when it names none.

    ophyd's ``DisconnectedError`` names the ophyd attribute only; pyepics'
    ``ChannelAccessGetFailure`` (a get in flight when its channel disconnected) and
    ``CASeverityException`` name nothing. These become :class:`PVConnectionError`
    naming the PV (from the channel id) or the device's unconnected PVs. ophyd's own
    timeouts already name the PV and are returned as they are.
    """
    from epics.ca import CASeverityException, ChannelAccessGetFailure

    if isinstance(exc, PVConnectionError | PVTimeoutError):
        return exc
    if isinstance(exc, ChannelAccessGetFailure):
        try:
            from epics import ca

            pv = ca.name(exc.chid)
            reason = ca.message(exc.status)
        except Exception:  # pragma: no cover - channel already cleared
            return connection_error(device, doing)
        during = f" ({doing})" if doing else ""
        return PVConnectionError(f"{getattr(device, 'name', device)}: get of {pv} failed"
                                 f"{during}: {reason}")
    if isinstance(exc, DisconnectedError | CASeverityException):
        return connection_error(device, doing)
    return exc


def names_pvs(method: Callable) -> Callable:
    """Decorator: errors that name no PV (see :func:`named_error`) are raised again as
    :class:`PVConnectionError` naming the PVs of ``self``."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            named = named_error(exc, self, method.__name__)
            if named is exc:
                raise
            raise named from exc

    return wrapper


def pv_errors_named(*names: str) -> Callable[[type], type]:
    """Class decorator: :func:`names_pvs` on the methods (or properties) ``names``, own or
    inherited."""

    def decorate(cls: type) -> type:
        for name in names:
            attr = getattr(cls, name)
            if isinstance(attr, property):
                setattr(cls, name, property(names_pvs(attr.fget), attr.fset, attr.fdel,
                                            attr.__doc__))
            else:
                setattr(cls, name, names_pvs(attr))
        return cls

    return decorate


def fail_status(status: StatusBase, exc: Exception, positioner: Any = None) -> bool:
    """Fail ``status`` with ``exc`` unless it is already done; True if this call failed it.

    With ``positioner`` (the ophyd positioner that created a ``MoveStatus``), the
    positioner's own completion callback is removed first, so its later "done moving"
    does not try to finish a status that has already failed.
    """
    if status.done:
        return False
    if positioner is not None:
        try:
            positioner.clear_sub(status._finished)
        except Exception:  # pragma: no cover - not subscribed (e.g. a fake positioner)
            pass
    try:
        status.set_exception(exc)
    except InvalidState:
        return False
    return True


def finish_status(status: StatusBase) -> bool:
    """Finish ``status`` successfully unless it is already done (e.g. failed by a guard)."""
    if status.done:
        return False
    try:
        status.set_finished()
    except InvalidState:
        return False
    return True


#: How often (s) a guarded status checks its channels and its deadline.
GUARD_POLL_S = 0.1


def _channels_up(signal: EpicsSignalBase) -> bool:
    """Channel Access's own state of the channels (set in libca's callback thread, so a
    backlog of ophyd callbacks after a mass disconnect does not delay it)."""
    return all(pv.connected for pv in (getattr(signal, "_read_pv", None),
                                       getattr(signal, "_write_pv", None)) if pv is not None)


def guard_status(status: StatusBase, device: Any, *, timeout_s: float | None = None,
                 doing: str = "", signals: Iterable[Any] | None = None,
                 pvs: Callable[[], str] | None = None, positioner: Any = None) -> StatusBase:
    """Make ``status`` fail, naming PVs, on a disconnect or after ``timeout_s``.

    A watchdog thread checks the channels every :data:`GUARD_POLL_S` seconds until the
    status is done: it fails the status with :class:`PVConnectionError` as soon as one of
    the channels is down, and with :class:`PVTimeoutError` after ``timeout_s``.

    Parameters
    ----------
    status : StatusBase
        A status of ``device`` that is not done yet.
    device : ophyd Device or signal
        Whose Channel Access signals are watched (or only ``signals``).
    timeout_s : float, optional
        Wall seconds until ``status`` fails with :class:`PVTimeoutError`; None: no limit
        (disconnects still end it).
    doing : str
        What the status waits for, for the messages ("moving to 8350.0").
    signals : iterable of signals, optional
        The signals to watch (default: every Channel Access signal of ``device``).
    pvs : callable, optional
        Returns the PV names a timeout message lists (default: the watched signals').
    positioner : ophyd positioner, optional
        See :func:`fail_status`.

    Returns
    -------
    StatusBase
        ``status`` itself.
    """
    watched = [s for s in (signals if signals is not None else epics_signals(device))
               if isinstance(s, EpicsSignalBase)]
    if not watched and timeout_s is None:
        return status
    name = getattr(device, "name", str(device))
    start = time.monotonic()
    deadline = None if timeout_s is None else start + float(timeout_s)
    finished = threading.Event()

    def lost(signal: Any) -> None:
        pv_list = ", ".join(_signal_pvs(signal, True))
        fail_status(status, PVConnectionError(
            f"{name}: Channel Access connection lost to {pv_list} ({signal.name}) while "
            f"{doing or 'waiting'}, after {time.monotonic() - start:.1f} s"), positioner)

    def expired() -> None:
        listed = _listed([p for s in watched for p in _signal_pvs(s, False)], limit=3)
        if pvs is not None:
            try:
                listed = pvs()
            except Exception:  # e.g. a get on the very PV that stopped answering
                pass
        fail_status(status, PVTimeoutError(
            f"{name}: not done {doing or 'waiting'} within {timeout_s:.1f} s ({listed})"),
            positioner)

    def watch() -> None:
        while True:
            down = next((s for s in watched if not _channels_up(s)), None)
            if down is not None:
                lost(down)
                return
            if deadline is not None and time.monotonic() > deadline:
                expired()
                return
            if finished.wait(GUARD_POLL_S):
                return

    status.add_callback(lambda _status: finished.set())
    threading.Thread(target=watch, name=f"{name}-guard", daemon=True).start()
    return status


def put_confirmed(signal: Any, value: Any, timeout_s: float | None = None) -> None:
    """Put ``value`` and wait for Channel Access put completion, within ``timeout_s``.

    Raises
    ------
    PVTimeoutError
        Naming the PV, when completion does not come within ``timeout_s`` (default: the
        signal's ``write_timeout``).
    PVConnectionError
        When the channel is (or went) disconnected: Channel Access also "completes" a put
        whose channel disconnected.
    """
    if not isinstance(signal, EpicsSignalBase):   # soft or fake signal: nothing to confirm
        signal.put(value)
        return
    if timeout_s is None:
        timeout_s = signal.write_timeout or CATimeouts.write_s
    done = threading.Event()
    signal.put(value, use_complete=True, callback=lambda *args, **kwargs: done.set())
    pv = getattr(signal, "setpoint_pvname", signal.pvname)
    if not done.wait(float(timeout_s)):
        raise PVTimeoutError(f"{signal.name}: put {value!r} to {pv} not completed within "
                             f"{float(timeout_s):.1f} s")
    if not ca_connected(signal):
        raise connection_error(signal, f"put {value!r} to {pv}")


def wait_for_connection(devices: Iterable[Any], timeout_s: float = 5.0) -> None:
    """Wait up to ``timeout_s`` (s) in all for the PVs of ``devices`` (ophyd's own check).

    Raises
    ------
    PVConnectionError
        Naming the PVs still unconnected (at most 5 listed) and their ophyd signals.
    """
    deadline = time.monotonic() + float(timeout_s)
    missing: list[str] = []
    for device in devices:
        if not hasattr(device, "wait_for_connection"):
            continue
        try:
            device.wait_for_connection(timeout=max(deadline - time.monotonic(), 0.05))
        except TimeoutError:
            missing += unconnected_pvs(device)
    if missing:
        raise PVConnectionError(f"PV not connected after {timeout_s} s: {_listed(missing)}")
