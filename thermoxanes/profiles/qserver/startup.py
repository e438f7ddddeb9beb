"""Queue-server startup module: devices of a profile and the thermoxanes plans.

Start the manager with ``start-re-manager --startup-module
thermoxanes.profiles.qserver.startup ...``. Environment variables:

``THERMOXANES_PROFILE``
    Profile name or TOML path (default ``sim``).
``THERMOXANES_DATA_DIR``
    Where frames are written (default ``./qserver_data/raw``).
``THERMOXANES_SIZE``
    Frame side for ``sim`` profiles (default: the profile's).

Devices are top-level names (``camera``, ``mono``, ``sample_x``, ...); for EPICS profiles
every PV must connect (within the profile's ``connection_timeout_s``) or the environment
fails to open with an error naming the PVs. ``RE`` is a plain RunEngine: subscribe a
TiledWriter (``thermoxanes.storage``) here or in a further startup module to store runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from bluesky import RunEngine
from bluesky_queueserver import parameter_annotation_decorator

from thermoxanes.plans import xanes as _xanes
from thermoxanes.plans.heating import HeaterLimits, HeatingProgram, heating_series
from thermoxanes.profiles.beamline import build_beamline
from thermoxanes.profiles.schema import load_profile

profile = load_profile(os.environ.get("THERMOXANES_PROFILE", "sim"))
_size = os.environ.get("THERMOXANES_SIZE")
_beamline = build_beamline(profile, os.environ.get("THERMOXANES_DATA_DIR", "qserver_data/raw"),
                           size=int(_size) if _size else None)
_beamline.wait_for_connection()

RE = RunEngine({})
RE.md["profile"] = profile.name

camera = _beamline.camera
mono = _beamline.mono
sample_stage = _beamline.sample_stage
sample_x = _beamline.sample_x
shutter = _beamline.shutter
rotation = _beamline.rotation
heater = _beamline.heater
clock = _beamline.clock
ring = _beamline.ring


@parameter_annotation_decorator({
    "description": _xanes.xanes_sweep.__doc__.split("\n\n")[0],
    "parameters": {
        "camera": {"annotation": "__READABLE__"},
        "mono": {"annotation": "__MOVABLE__"},
        "sample_x": {"annotation": "__MOVABLE__"},
        "shutter": {"annotation": "__MOVABLE__"},
        "energies_ev": {"annotation": "typing.List[float]"},
        "readables": {"annotation": "typing.List[__READABLE__]"},
        "n_darks": {"annotation": "int", "min": 0},
        "n_flats": {"annotation": "int", "min": 1},
        "sample_out_offset_um": {"annotation": "float"},
        "md": {"annotation": "typing.Dict[str, typing.Any]"},
    },
})
def xanes_sweep(camera, mono, sample_x, shutter, energies_ev, readables=(), n_darks=5,
                n_flats=1, sample_out_offset_um=2000.0, md=None):
    """:func:`thermoxanes.plans.xanes.xanes_sweep`, unchanged; the decorator only gives
    the queue server parameter types it can check (device names, lists of numbers)."""
    return (yield from _xanes.xanes_sweep(
        camera, mono, sample_x, shutter, energies_ev, readables=readables, n_darks=n_darks,
        n_flats=n_flats, sample_out_offset_um=sample_out_offset_um, md=md))


@parameter_annotation_decorator({
    "parameters": {
        "segments": {"annotation": "typing.List[typing.Dict[str, typing.Any]]"},
        "energies_ev": {"annotation": "typing.List[float]"},
        "n_darks": {"annotation": "int", "min": 0},
        "n_flats": {"annotation": "int", "min": 1},
        "md": {"annotation": "typing.Dict[str, typing.Any]"},
    },
})
def heating_program(
    segments: list[dict[str, Any]],
    energies_ev: Sequence[float],
    n_darks: int = 5,
    n_flats: int = 1,
    md: dict[str, Any] | None = None,
):
    """Run a heating program (``segments`` as in ``HeatingProgram.from_list``) on this
    beamline with sweeps during its holds; limits and safe state from the profile.

    Parameters
    ----------
    segments : list of dict
        ``{"kind": "ramp", "target_c": ..., "rate_c_per_min": ...}`` and
        ``{"kind": "hold", "duration_s": ..., "sweeps": ...}`` (°C, °C/min, s).
    energies_ev : sequence of float
        Energy grid of every sweep (eV).
    """
    from thermoxanes.plans.heating import heating_series

    program = HeatingProgram.from_list(segments)
    return (yield from heating_series(
        camera, mono, sample_x, shutter, heater, clock, program, energies_ev,
        readables=[rotation, ring], n_darks=n_darks, n_flats=n_flats,
        sample_out_offset_um=profile.sample_stage.out_offset_um,
        safe_temperature_c=profile.heater.safe_temperature_c,
        safe_state=profile.heater.safe_state,
        limits=HeaterLimits.from_profile(profile.heater), md=md))


del heating_series  # needs a HeatingProgram object: use heating_program from the queue

__all__ = ["xanes_sweep", "heating_program", "camera", "mono",
           "sample_stage", "sample_x", "shutter", "rotation", "heater", "clock", "ring"]
