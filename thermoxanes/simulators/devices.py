"""Simulated ophyd devices on a :class:`~thermoxanes.simulators.world.SimWorld`.

The physics (sample, heater, beam, detector) lives in the world; these devices only map
bluesky verbs onto it. Every motion and exposure advances the world's simulated clock by
the time it would take at a beamline, so that hours of beamtime run in seconds and every
timestamp is consistent. Statuses finish before ``set``/``trigger`` return.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import shutil
import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import Status

from thermoxanes.optics import focus_positions_mm

logger = logging.getLogger(__name__)


def _done(obj: Any) -> Status:
    status = Status(obj=obj)
    status.set_finished()
    return status


def _failed(obj: Any, exc: Exception) -> Status:
    status = Status(obj=obj)
    status.set_exception(exc)
    return status


class SimAxis(Device):
    """A simulated motor axis; a move advances the simulated clock by its duration."""

    readback = Cpt(Signal, value=0.0, kind="hinted", doc="Position (axis units)")
    setpoint = Cpt(Signal, value=0.0, kind="normal", doc="Last requested position")
    velocity = Cpt(Signal, value=1000.0, kind="config", doc="Speed (axis units per second)")

    def __init__(
        self,
        prefix: str = "",
        *,
        advance: Callable[[float], None],
        limits: tuple[float, float] = (-math.inf, math.inf),
        settle_s: float = 0.05,
        **kwargs,
    ):
        super().__init__(prefix, **kwargs)
        self._advance = advance
        self._limits = (float(limits[0]), float(limits[1]))
        self._settle_s = settle_s
        self.readback.name = self.name

    @property
    def position(self) -> float:
        """Current position (axis units)."""
        return float(self.readback.get())

    @property
    def limits(self) -> tuple[float, float]:
        """Soft limits (low, high)."""
        return self._limits

    def set(self, value: float) -> Status:
        value = float(value)
        low, high = self._limits
        if not (low <= value <= high) or not math.isfinite(value):
            return _failed(self, ValueError(
                f"{self.name}: setpoint {value} outside limits [{low}, {high}]"))
        distance = abs(value - self.position)
        self.setpoint.put(value)
        self._advance(distance / float(self.velocity.get()) + self._settle_s)
        self.readback.put(value)
        return _done(self)

    def stop(self, *, success: bool = False) -> None:
        """Nothing to stop: simulated moves finish before ``set`` returns."""


class SimSampleStage(Device):
    """Sample stage with x, y, z axes (µm)."""

    x = Cpt(SimAxis, advance=None, limits=(-25000.0, 25000.0), doc="Horizontal (µm)")
    y = Cpt(SimAxis, advance=None, limits=(-25000.0, 25000.0), doc="Vertical (µm)")
    z = Cpt(SimAxis, advance=None, limits=(-25000.0, 25000.0), doc="Along the beam (µm)")

    def __init__(self, prefix: str = "", *, advance: Callable[[float], None], **kwargs):
        self._advance_fn = advance
        super().__init__(prefix, **kwargs)
        for axis in (self.x, self.y, self.z):
            axis._advance = advance


class SimRotation(SimAxis):
    """Rotation stage (degrees)."""


class SimShutter(Device):
    """Fast shutter: ``set("open")`` or ``set("close")``."""

    state = Cpt(Signal, value="open", kind="normal", doc="'open' or 'close'")

    def __init__(self, prefix: str = "", *, advance: Callable[[float], None], **kwargs):
        super().__init__(prefix, **kwargs)
        self._advance = advance
        self.state.name = self.name

    @property
    def is_open(self) -> bool:
        """True when the shutter lets the beam through."""
        return self.state.get() == "open"

    def set(self, value: str) -> Status:
        if value not in ("open", "close"):
            return _failed(self, ValueError(
                f"{self.name}: expected 'open' or 'close', got {value!r}"))
        self._advance(0.05)
        self.state.put(value)
        return _done(self)


class SimMonochromator(Device):
    """Energy (eV) that also moves zone plate and detector to keep focus and magnification."""

    energy_ev = Cpt(Signal, value=8333.0, kind="hinted", doc="Photon energy (eV)")
    zoneplate_z_mm = Cpt(Signal, value=0.0, kind="normal", doc="Sample to zone plate (mm)")
    detector_z_mm = Cpt(Signal, value=0.0, kind="normal", doc="Zone plate to detector (mm)")
    magnification = Cpt(Signal, value=50.0, kind="config", doc="Kept constant on energy moves")

    def __init__(
        self,
        prefix: str = "",
        *,
        advance: Callable[[float], None],
        limits_ev: tuple[float, float] = (4500.0, 12000.0),
        move_s: float = 0.3,
        **kwargs,
    ):
        super().__init__(prefix, **kwargs)
        self._advance = advance
        self._limits = limits_ev
        self._move_s = move_s
        self._update_focus(float(self.energy_ev.get()))

    def _update_focus(self, energy_ev: float) -> None:
        p_mm, q_mm = focus_positions_mm(energy_ev, float(self.magnification.get()))
        self.zoneplate_z_mm.put(float(p_mm))
        self.detector_z_mm.put(float(q_mm))

    @property
    def position(self) -> float:
        """Current energy (eV)."""
        return float(self.energy_ev.get())

    def set(self, energy_ev: float) -> Status:
        energy_ev = float(energy_ev)
        low, high = self._limits
        if not low <= energy_ev <= high:
            return _failed(self, ValueError(
                f"{self.name}: energy {energy_ev} eV outside [{low}, {high}] eV"))
        self._advance(self._move_s)
        self.energy_ev.put(energy_ev)
        self._update_focus(energy_ev)
        return _done(self)

    def stop(self, *, success: bool = False) -> None:
        """Nothing to stop."""


class SimHeater(Device):
    """Temperature controller: ``set(temperature_c)`` finishes when the sample has settled.

    Reading gives the thermocouple (noisy, lagging the heater as a real one does).

    Safety behaviour (``docs/safety.md``):

    - ``stop()`` (the RunEngine calls it on pause, suspension and every exit) never lets
      the heater heat further: a ramp heading up is frozen at its present target; a
      cool-down, a hold and the safe state are left alone.
    - ``unstage()`` puts the heater in its safe state (:meth:`go_safe`). A heating program
      stages the heater, so ``RE.halt()``, which skips plan cleanup but still unstages
      what is left staged, ends with the heater safe.
    - ``set()`` refuses setpoints outside ``[-50, max_temperature_c]`` and ramp rates
      above ``max_ramp_rate_c_per_min``.

    Fault injection (wall time, for suspender tests; the simulated clock does not advance
    while a RunEngine is suspended): :meth:`inject_temperature_offset` offsets the reading.
    """

    temperature_c = Cpt(Signal, value=25.0, kind="hinted", doc="Thermocouple reading (°C)")
    setpoint_c = Cpt(Signal, value=25.0, kind="normal", doc="Final setpoint (°C)")
    target_c = Cpt(Signal, value=25.0, kind="normal", doc="Ramped setpoint now (°C)")
    output_on = Cpt(Signal, value=True, kind="normal", doc="Heater power enabled")
    ramp_rate_c_per_min = Cpt(Signal, value=5.0, kind="config", doc="Ramp rate (°C/min)")
    tolerance_c = Cpt(Signal, value=1.0, kind="config", doc="Done when within (°C)")
    settle_s = Cpt(Signal, value=30.0, kind="config", doc="... for this long (s)")
    max_temperature_c = Cpt(Signal, value=450.0, kind="config", doc="Highest setpoint (°C)")
    max_ramp_rate_c_per_min = Cpt(Signal, value=20.0, kind="config",
                                  doc="Fastest ramp (°C/min)")
    max_setpoint_step_c = Cpt(Signal, value=250.0, kind="config",
                              doc="Largest setpoint change of a program (°C)")
    safe_temperature_c = Cpt(Signal, value=25.0, kind="config", doc="Safe setpoint (°C)")
    safe_state = Cpt(Signal, value="setpoint", kind="config",
                     doc="'setpoint' (go to safe_temperature_c) or 'output_off'")
    last_safe_action = Cpt(Signal, value="", kind="normal",
                           doc="Why and when the heater last went safe on its own")

    def __init__(self, prefix: str = "", *, world: Any, step_s: float = 5.0,
                 timeout_s: float = 6 * 3600.0, **kwargs):
        super().__init__(prefix, **kwargs)
        self._world = world
        self._step_s = step_s
        self._timeout_s = timeout_s
        self._offset_c = 0.0
        self._last_reading_c = 25.0
        self._fault_lock = threading.Lock()
        self._fault_timer: threading.Timer | None = None
        self.ramp_rate_c_per_min.subscribe(self._on_rate, run=False)
        self.output_on.subscribe(self._on_output, run=False)

    def _on_rate(self, value: float, **kwargs) -> None:
        self._world.heater.ramp_rate_c_per_min = float(value)

    def _on_output(self, value: Any, **kwargs) -> None:
        self._world.heater.output_on = bool(value)

    def _refresh(self) -> None:
        heater = self._world.heater
        reading = float(heater.thermocouple_c())
        with self._fault_lock:
            self._last_reading_c = reading
            offset = self._offset_c
        self.temperature_c.put(reading + offset)
        self.target_c.put(float(heater.target_c))

    def read(self) -> dict[str, dict[str, Any]]:
        self._refresh()
        return super().read()

    @property
    def position(self) -> float:
        """Sample temperature as read by the thermocouple (°C)."""
        self._refresh()
        return float(self.temperature_c.get())

    def set(self, temperature_c: float) -> Status:
        temperature_c = float(temperature_c)
        ceiling = float(self.max_temperature_c.get())
        if not -50.0 <= temperature_c <= ceiling:
            return _failed(self, ValueError(
                f"{self.name}: setpoint {temperature_c} C outside [-50, {ceiling}] C"))
        rate = float(self.ramp_rate_c_per_min.get())
        max_rate = float(self.max_ramp_rate_c_per_min.get())
        if rate > max_rate:
            return _failed(self, ValueError(
                f"{self.name}: ramp rate {rate} C/min above the maximum of {max_rate} C/min"))
        heater = self._world.heater
        heater.output_on = True
        if not self.output_on.get():
            self.output_on.put(True)
        heater.ramp_rate_c_per_min = rate
        heater.setpoint_c = temperature_c
        self.setpoint_c.put(temperature_c)
        tolerance = float(self.tolerance_c.get())
        settle_s = float(self.settle_s.get())
        elapsed = settled = 0.0
        while settled < settle_s:
            self._world.advance(self._step_s)
            elapsed += self._step_s
            near = abs(heater.temperature_c - temperature_c) <= tolerance
            settled = settled + self._step_s if near else 0.0
            if elapsed > self._timeout_s:
                return _failed(self, TimeoutError(
                    f"{self.name}: did not settle at {temperature_c} C within {self._timeout_s} s"))
            if int(elapsed / self._step_s) % 12 == 0:
                self._refresh()  # the reading moves during a ramp (watched by suspenders)
        self._refresh()
        return _done(self)

    def stop(self, *, success: bool = False) -> None:
        """Never heat further: freeze a ramp heading up at its present target.

        A cool-down (including the move to the safe state), a hold and the output-off
        state are left as they are.
        """
        heater = self._world.heater
        target = float(heater.target_c)
        if heater.output_on and heater.setpoint_c > target:
            heater.setpoint_c = target
            self.setpoint_c.put(target)

    def go_safe(self, reason: str = "") -> None:
        """Put the heater in its safe state now (``safe_state``, ``safe_temperature_c``).

        Does not wait for the cool-down; the simulated clock is not advanced.
        """
        heater = self._world.heater
        if self.safe_state.get() == "output_off":
            heater.output_on = False
            self.output_on.put(False)
            action = "output off"
        else:
            safe_c = float(self.safe_temperature_c.get())
            heater.setpoint_c = safe_c
            self.setpoint_c.put(safe_c)
            action = f"setpoint {safe_c} C"
        self.last_safe_action.put(
            f"{action} at t={self._world.clock.now():.1f} s ({reason or 'go_safe'})")

    def unstage(self) -> list[Any]:
        """Go safe (see the class notes: this is what ``RE.halt()`` still reaches)."""
        try:
            self.go_safe("unstage")
        finally:
            result = super().unstage()
        return result

    # -- fault injection ------------------------------------------------------------------
    def inject_temperature_offset(self, offset_c: float, duration_s: float | None) -> None:
        """Offset the thermocouple reading by ``offset_c`` (°C) for ``duration_s`` wall
        seconds (``None``: until :meth:`clear_faults`); the new reading is put at once, so
        suspenders watching :attr:`temperature_c` react without a device action."""
        with self._fault_lock:
            if self._fault_timer is not None:
                self._fault_timer.cancel()
            self._offset_c = float(offset_c)
            reading = self._last_reading_c + self._offset_c
            if duration_s is not None:
                self._fault_timer = threading.Timer(float(duration_s), self.clear_faults)
                self._fault_timer.daemon = True
                self._fault_timer.start()
        self.temperature_c.put(reading)

    def clear_faults(self) -> None:
        """End an injected fault; the last true reading is put at once."""
        with self._fault_lock:
            if self._fault_timer is not None:
                self._fault_timer.cancel()
                self._fault_timer = None
            self._offset_c = 0.0
            reading = self._last_reading_c
        self.temperature_c.put(reading)


class SimClockDevice(Device):
    """The simulated beamline clock: read the time (s); ``set(duration_s)`` waits that long."""

    time_s = Cpt(Signal, value=0.0, kind="hinted", doc="Simulated time since start (s)")

    def __init__(self, prefix: str = "", *, world: Any, **kwargs):
        super().__init__(prefix, **kwargs)
        self._world = world
        self.time_s.name = self.name + "_time_s"

    def read(self) -> dict[str, dict[str, Any]]:
        self.time_s.put(float(self._world.clock.now()))
        return super().read()

    @property
    def position(self) -> float:
        return float(self._world.clock.now())

    def set(self, duration_s: float) -> Status:
        duration_s = float(duration_s)
        if duration_s < 0:
            return _failed(self, ValueError(f"{self.name}: cannot wait {duration_s} s"))
        self._world.advance(duration_s)
        return _done(self)


class SimRingCurrent(Device):
    """Storage-ring current (mA).

    Fault injection: :meth:`inject_beam_dump` drops the current for a time measured in
    wall seconds. The new value is put at once and the recovery is put by a timer thread,
    because a suspended RunEngine makes no device actions (so the simulated clock stands
    still during a suspension); a suspender watching :attr:`current_ma` sees both edges.
    The dump only changes this signal: frames rendered before the suspension lands are
    not darkened (the world's ring model does not know about the dump).
    """

    current_ma = Cpt(Signal, value=400.0, kind="hinted", doc="Ring current (mA)")

    def __init__(self, prefix: str = "", *, world: Any, **kwargs):
        super().__init__(prefix, **kwargs)
        self._world = world
        self._lock = threading.Lock()
        self._dump_ma: float | None = None
        self._timer: threading.Timer | None = None
        self._last_ma = 400.0

    def read(self) -> dict[str, dict[str, Any]]:
        value = float(self._world.ring_current_ma())
        with self._lock:
            self._last_ma = value
            if self._dump_ma is not None:
                value = self._dump_ma
        self.current_ma.put(value)
        return super().read()

    @property
    def beam_dumped(self) -> bool:
        """True while an injected beam dump lasts."""
        with self._lock:
            return self._dump_ma is not None

    def inject_beam_dump(self, duration_s: float | None, current_ma: float = 0.0) -> None:
        """Drop the ring current to ``current_ma`` (mA) for ``duration_s`` wall seconds
        (``None``: until :meth:`clear_faults`)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._dump_ma = float(current_ma)
            if duration_s is not None:
                self._timer = threading.Timer(float(duration_s), self.clear_faults)
                self._timer.daemon = True
                self._timer.start()
        self.current_ma.put(float(current_ma))

    def clear_faults(self) -> None:
        """End an injected beam dump; the last simulated current is put at once."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._dump_ma = None
            value = self._last_ma
        self.current_ma.put(value)


class SimCamera(Device):
    """Area detector rendering frames from the world; frames go to HDF5 files.

    One file per staging (normally one run); datasets ``/entry/data/dark``,
    ``/entry/data/flat`` and ``/entry/data/data`` keep the frame types apart, each with its
    own Resource document, so every stream of a run maps onto one contiguous dataset.
    Recent frames are also kept in memory for :meth:`frame_lookup` (the live publisher).
    """

    image = Cpt(Signal, value="", kind="normal", doc="Datum id of the last frame")
    exposure_s = Cpt(Signal, value=0.5, kind="config", doc="Exposure time (s)")
    readout_s = Cpt(Signal, value=0.05, kind="config", doc="Readout dead time (s)")
    frame_type = Cpt(Signal, value="data", kind="config", doc="'dark', 'flat' or 'data'")

    FRAME_TYPES = ("dark", "flat", "data")
    #: A frame is refused (``OSError`` ENOSPC) unless this much room is left (bytes,
    #: frames): a full disk under HDF5 can leave the file unreadable.
    min_free_bytes = 256 * 1024
    min_free_frames = 4

    def __init__(
        self,
        prefix: str = "",
        *,
        world: Any,
        mono: SimMonochromator,
        sample_stage: SimSampleStage,
        shutter: SimShutter,
        rotation: SimRotation,
        data_dir: str | os.PathLike,
        sample_in_tolerance_um: float = 500.0,
        cache_frames: int = 512,
        **kwargs,
    ):
        super().__init__(prefix, **kwargs)
        self._world = world
        self._mono, self._stage = mono, sample_stage
        self._shutter, self._rotation = shutter, rotation
        self._data_dir = Path(data_dir)
        self._tolerance_um = sample_in_tolerance_um
        self._sample_home_um = (0.0, 0.0)
        self._file: h5py.File | None = None
        self._resources: dict[str, dict[str, Any]] = {}
        self._counts: dict[str, int] = {}
        self._asset_docs: deque[tuple[str, dict[str, Any]]] = deque()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_frames = cache_frames
        self._lock = threading.Lock()
        self._corrupt: deque[tuple[str, str]] = deque()
        self.image.name = self.name + "_image"

    # -- staging: one HDF5 file per stage --------------------------------------------------
    def stage(self) -> list[Any]:
        self._data_dir.mkdir(parents=True, exist_ok=True)
        path = self._data_dir / f"{self.name}_{uuid.uuid4().hex}.h5"
        height, width = self._world.frame_shape
        self._file = h5py.File(path, "w", libver="latest")
        for kind in self.FRAME_TYPES:
            self._file.create_dataset(
                f"/entry/data/{kind}", shape=(0, height, width), maxshape=(None, height, width),
                dtype="<u2", chunks=(1, height, width),
            )
        self._file.swmr_mode = True
        self._resources, self._counts = {}, dict.fromkeys(self.FRAME_TYPES, 0)
        self._sample_home_um = (self._stage.x.position, self._stage.y.position)
        return super().stage()

    def unstage(self) -> list[Any]:
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except (OSError, RuntimeError) as exc:  # e.g. a full disk: already reported
                logger.warning("%s: closing %s failed: %s", self.name, file.filename, exc)
        return super().unstage()

    def _check_free_space(self, nbytes: int) -> None:
        """Refuse a frame before HDF5 hits a full disk (which can corrupt the file)."""
        assert self._file is not None
        free = shutil.disk_usage(self._data_dir).free
        needed = self.min_free_frames * nbytes + self.min_free_bytes
        if free < needed:
            raise OSError(errno.ENOSPC,
                          f"{self.name}: disk full: {free} bytes free under {self._data_dir}, "
                          f"{needed} needed for the next frame; acquisition stopped, the "
                          f"frames so far are intact in {self._file.filename}")

    def _resource_for(self, kind: str) -> dict[str, Any]:
        if kind not in self._resources:
            assert self._file is not None
            resource = {
                "uid": str(uuid.uuid4()),
                "spec": "AD_HDF5",
                "root": "/",
                "resource_path": str(Path(self._file.filename).resolve()),
                "resource_kwargs": {"dataset": f"/entry/data/{kind}"},
                "path_semantics": "posix",
            }
            self._resources[kind] = resource
            self._asset_docs.append(("resource", resource))
        return self._resources[kind]

    # -- fault injection --------------------------------------------------------------------
    def inject_corrupt_frames(self, count: int = 1, kind: str = "rows",
                              frame_type: str = "data") -> None:
        """Corrupt the next ``count`` frames of ``frame_type`` as a readout glitch would.

        ``kind``: ``"rows"`` (a band of a quarter of the rows reads zero), ``"zeros"`` (the
        whole frame reads zero) or ``"saturated"`` (a band of rows stuck at 65535). The
        corrupt frame is what the camera delivers: it is written to the file and published.
        """
        if kind not in ("rows", "zeros", "saturated"):
            raise ValueError(f"unknown corruption {kind!r}")
        if frame_type not in self.FRAME_TYPES:
            raise ValueError(f"unknown frame_type {frame_type!r}")
        with self._lock:
            self._corrupt.extend([(frame_type, kind)] * int(count))

    def _maybe_corrupt(self, kind: str, frame: np.ndarray) -> np.ndarray:
        with self._lock:
            if not self._corrupt or self._corrupt[0][0] != kind:
                return frame
            _, corruption = self._corrupt.popleft()
        height = frame.shape[0]
        band = slice(height // 3, height // 3 + max(1, height // 4))
        if corruption == "zeros":
            frame[...] = 0
        elif corruption == "rows":
            frame[band] = 0
        else:
            frame[band] = np.iinfo(frame.dtype).max
        return frame

    # -- acquisition ----------------------------------------------------------------------
    def _render(self, exposure_s: float) -> np.ndarray:
        dx = self._stage.x.position - self._sample_home_um[0]
        dy = self._stage.y.position - self._sample_home_um[1]
        sample_in = abs(dx) < self._tolerance_um and abs(dy) < self._tolerance_um
        return self._world.render_frame(
            self._mono.position,
            exposure_s=exposure_s,
            sample_in=sample_in,
            shutter_open=self._shutter.is_open,
            theta_deg=self._rotation.position,
            sample_xy_um=(dx, dy) if sample_in else (0.0, 0.0),
        )

    def trigger(self) -> Status:
        kind = self.frame_type.get()
        if kind not in self.FRAME_TYPES:
            return _failed(self, ValueError(f"{self.name}: unknown frame_type {kind!r}"))
        exposure_s = float(self.exposure_s.get())
        self._world.advance(exposure_s)
        frame = self._maybe_corrupt(kind, self._render(exposure_s))
        self._world.advance(float(self.readout_s.get()))
        if self._file is None:
            # Not staged: keep the frame in memory only.
            datum_id = f"unstaged/{uuid.uuid4().hex}"
        else:
            self._check_free_space(frame.nbytes)
            resource = self._resource_for(kind)
            dataset = self._file[f"/entry/data/{kind}"]
            index = self._counts[kind]
            try:
                dataset.resize(index + 1, axis=0)
                dataset[index] = frame
                dataset.flush()
            except (OSError, RuntimeError) as exc:
                raise OSError(f"{self.name}: writing frame {index} ({kind}) to "
                              f"{self._file.filename} failed: {exc}") from exc
            self._counts[kind] = index + 1
            datum_id = f"{resource['uid']}/{index}"
            self._asset_docs.append(("datum", {
                "datum_id": datum_id, "resource": resource["uid"],
                "datum_kwargs": {"point_number": index},
            }))
        with self._lock:
            self._cache[datum_id] = frame
            while len(self._cache) > self._cache_frames:
                self._cache.popitem(last=False)
        self.image.put(datum_id)
        return _done(self)

    def describe(self) -> dict[str, dict[str, Any]]:
        description = super().describe()
        height, width = self._world.frame_shape
        description[self.image.name].update(
            shape=[height, width], dtype="array", dtype_numpy="<u2", external="FILESTORE:",
        )
        return description

    def collect_asset_docs(self) -> Iterator[tuple[str, dict[str, Any]]]:
        while self._asset_docs:
            yield self._asset_docs.popleft()

    def frame_lookup(self, datum_id: str) -> np.ndarray | None:
        """The frame behind ``datum_id`` if it is still in the in-memory cache."""
        with self._lock:
            return self._cache.get(datum_id)
