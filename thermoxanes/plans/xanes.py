"""XANES sweep: darks, then per energy a flat (sample out) and a sample image.

One bluesky run per sweep with streams ``dark``, ``flat`` and ``primary``. Devices arrive
as arguments typed by ``bluesky.protocols``; nothing concrete is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from bluesky.protocols import Movable, Readable, Triggerable

from thermoxanes.plans.stubs import move_sample_out, set_frame_type

#: Stream names of a sweep run.
DARK_STREAM, FLAT_STREAM, SAMPLE_STREAM = "dark", "flat", "primary"


def _check_energies(energies_ev: Sequence[float]) -> list[float]:
    energies = np.asarray(energies_ev, dtype=np.float64)
    if energies.ndim != 1 or energies.size < 2:
        raise ValueError(
            f"energies_ev must be a 1-D list of at least 2 energies, got {energies_ev!r}")
    if not np.all(np.isfinite(energies)):
        raise ValueError("energies_ev contains NaN or infinite values")
    if np.any(np.diff(energies) == 0):
        raise ValueError("energies_ev contains duplicate energies")
    return [float(e) for e in energies]


def xanes_sweep(
    camera: Readable,
    mono: Movable,
    sample_x: Movable,
    shutter: Movable,
    energies_ev: Sequence[float],
    *,
    readables: Sequence[Readable] = (),
    n_darks: int = 5,
    n_flats: int = 1,
    sample_out_offset_um: float = 2000.0,
    md: dict[str, Any] | None = None,
):
    """Acquire one XANES sweep (one run): darks, then per energy flats and a sample frame.

    Parameters
    ----------
    camera : Readable and Triggerable
        Area detector; if it has a ``frame_type`` signal it is set to ``"dark"``, ``"flat"``
        or ``"data"`` before each kind of frame so that files keep them apart.
    mono : Movable
        Monochromator energy (eV); a focus-keeping pseudo-positioner at a TXM.
    sample_x : Movable
        Sample stage axis (µm) moved by ``sample_out_offset_um`` for flats.
    shutter : Movable
        Takes ``"close"`` for darks and ``"open"`` otherwise.
    energies_ev : sequence of float
        Energies (eV), in acquisition order, without duplicates.
    readables : sequence of Readable
        Read with every frame (heater temperature, rotation angle, ring current, clock).
    n_darks, n_flats : int
        Dark frames taken once per sweep; flats per energy.
    sample_out_offset_um : float
        Move of ``sample_x`` (µm) that takes the sample out of the field of view.
    md : dict, optional
        Extra metadata for the start document (e.g. ``series_uid``, ``sweep_index``).
    """
    energies = _check_energies(energies_ev)
    if n_darks < 0 or n_flats < 1:
        raise ValueError(f"need n_darks >= 0 and n_flats >= 1, got {n_darks}, {n_flats}")
    if not isinstance(camera, Triggerable):
        raise TypeError(f"camera {getattr(camera, 'name', camera)!r} is not Triggerable")
    readables = list(readables)
    names = [getattr(obj, "name", str(obj)) for obj in (camera, mono, sample_x, shutter)]
    _md = {
        "plan_name": "xanes_sweep",
        "plan_args": {
            "camera": repr(camera),
            "mono": repr(mono),
            "sample_x": repr(sample_x),
            "shutter": repr(shutter),
            "energies_ev": energies,
            "readables": [repr(r) for r in readables],
            "n_darks": n_darks,
            "n_flats": n_flats,
            "sample_out_offset_um": sample_out_offset_um,
        },
        "plan_pattern": "array",
        "energies_ev": energies,
        "num_points": len(energies),
        "num_intervals": len(energies) - 1,
        "n_darks": n_darks,
        "n_flats": n_flats,
        "detectors": [names[0]],
        "motors": [names[1]],
        "hints": {"dimensions": [([f"{names[1]}_energy_ev"], SAMPLE_STREAM)]},
    }
    _md.update(md or {})
    frame_readables = [camera, mono, *readables]

    @bpp.stage_decorator([camera])
    @bpp.run_decorator(md=_md)
    def inner():
        if n_darks:
            yield from bps.mv(shutter, "close")
            yield from set_frame_type(camera, "dark")
            for _ in range(n_darks):
                yield from bps.trigger_and_read([camera, *readables], name=DARK_STREAM)
        yield from bps.mv(shutter, "open")
        for energy_ev in energies:
            yield from bps.checkpoint()
            yield from bps.mv(mono, energy_ev)
            sample_in_um = yield from move_sample_out(sample_x, sample_out_offset_um)
            yield from set_frame_type(camera, "flat")
            for _ in range(n_flats):
                yield from bps.trigger_and_read(frame_readables, name=FLAT_STREAM)
            yield from bps.mv(sample_x, sample_in_um)
            yield from set_frame_type(camera, "data")
            yield from bps.trigger_and_read(frame_readables, name=SAMPLE_STREAM)

    return (yield from inner())
