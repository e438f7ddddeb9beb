"""Small plan stubs shared by the XANES and heating plans."""

from __future__ import annotations

import bluesky.plan_stubs as bps
from bluesky.protocols import Movable, Readable


def set_frame_type(camera: Readable, frame_type: str):
    """Set ``camera.frame_type`` (``"dark"``, ``"flat"``, ``"data"``) if the camera has one."""
    signal = getattr(camera, "frame_type", None)
    if signal is not None:
        yield from bps.mv(signal, frame_type)


def move_sample_out(sample_x: Movable, offset_um: float):
    """Move ``sample_x`` out of the beam by ``offset_um``; return the in-beam position (µm)."""
    position = yield from bps.rd(sample_x)
    yield from bps.mv(sample_x, position + offset_um)
    return position
