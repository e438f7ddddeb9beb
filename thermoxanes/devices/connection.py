"""Bounded connection checks that name the PVs that did not connect."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ophyd import Device
from ophyd.signal import EpicsSignalBase


class PVConnectionError(TimeoutError):
    """Some PVs did not connect in time; the message names them."""


def _unconnected_pvs(device: Any) -> list[str]:
    signals = [device] if isinstance(device, EpicsSignalBase) else (
        [w.item for w in device.walk_signals()] if isinstance(device, Device) else [])
    missing = []
    for signal in signals:
        if isinstance(signal, EpicsSignalBase) and not signal.connected:
            pvs = [signal._read_pv]
            if getattr(signal, "_write_pv", None) is not None:
                pvs.append(signal._write_pv)
            names = [pv.pvname for pv in pvs if not pv.connected] or [pvs[0].pvname]
            missing += [f"{name} ({signal.name})" for name in names]
    return missing


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
            missing += _unconnected_pvs(device)
    if missing:
        missing = sorted(set(missing))
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise PVConnectionError(f"PV not connected after {timeout_s} s: "
                                f"{', '.join(missing[:5])}{more}")
