"""Bounded connection checks that name the PVs that did not connect."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ophyd import Device
from ophyd.signal import EpicsSignalBase


class PVConnectionError(TimeoutError):
    """Some PVs did not connect in time; the message names them."""


def _epics_signals(obj: Any) -> list[EpicsSignalBase]:
    if isinstance(obj, EpicsSignalBase):
        return [obj]
    if isinstance(obj, Device):
        found = []
        for walk in obj.walk_signals(include_lazy=True):
            if isinstance(walk.item, EpicsSignalBase):
                found.append(walk.item)
        return found
    return []


def pv_names(signal: EpicsSignalBase) -> list[str]:
    """Read and write PV names of an EPICS signal."""
    names = [signal._read_pv.pvname]
    write = getattr(signal, "_write_pv", None)
    if write is not None and write.pvname not in names:
        names.append(write.pvname)
    return names


def wait_for_connection(devices: Iterable[Any], timeout_s: float = 5.0) -> None:
    """Wait up to ``timeout_s`` (s) for every PV of ``devices``.

    Raises
    ------
    PVConnectionError
        Naming the device signals and PVs still unconnected (at most 5 listed).
    """
    signals = [s for d in devices for s in _epics_signals(d)]
    deadline = time.monotonic() + float(timeout_s)
    missing: list[str] = []
    while True:
        missing = []
        for signal in signals:
            pvs = [signal._read_pv] + ([signal._write_pv]
                                       if getattr(signal, "_write_pv", None) is not None else [])
            for pv in pvs:
                if not pv.connected:
                    missing.append(f"{pv.pvname} ({signal.name})")
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if missing:
        missing = sorted(set(missing))
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise PVConnectionError(f"PV not connected after {timeout_s} s: "
                                f"{', '.join(missing[:5])}{more}")
