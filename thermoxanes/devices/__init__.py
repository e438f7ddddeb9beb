"""ophyd device classes for real EPICS hardware (pyepics underneath).

Every class here talks Channel Access only; nothing imports the simulators. Names carry
units (``energy_ev``, ``temperature_c``, ``exposure_s``). See ``docs/epics.md``.
"""

from thermoxanes.devices.beam import EpicsClock, RingCurrent, WallClock
from thermoxanes.devices.camera import ADHDF5Camera
from thermoxanes.devices.connection import PVConnectionError, wait_for_connection
from thermoxanes.devices.focus import FocusCalibration
from thermoxanes.devices.motion import EpicsShutter, FocusingMonochromator, SampleStage
from thermoxanes.devices.temperature import (
    HEATER_MODELS,
    Eurotherm2216e,
    Lakeshore336,
    LinkamT96,
    TemperatureController,
)

__all__ = [
    "ADHDF5Camera", "EpicsClock", "EpicsShutter", "Eurotherm2216e", "FocusCalibration",
    "FocusingMonochromator", "HEATER_MODELS", "Lakeshore336", "LinkamT96", "PVConnectionError",
    "RingCurrent", "SampleStage", "TemperatureController", "WallClock", "wait_for_connection",
]
