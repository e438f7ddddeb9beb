"""Simulated EPICS IOCs (caproto) serving the TXM's PVs with the physics of a SimWorld.

One process serves every device of a ``sim-epics`` profile: motor records (the fields
ophyd's ``EpicsMotor`` uses), the focusing monochromator's three motors, a shutter, the
ring current, heater controllers with the PV names of a Lakeshore 336, a Eurotherm 2216e
and a Linkam T96 (all three drive the same simulated heater), the camera (driver and
HDF5 plugin PVs; the IOC writes the HDF5 files itself, like an areaDetector plugin) and a
clock. The groups hold no physics: they read and drive an injected
:class:`~thermoxanes.simulators.world.SimWorld`.

Time: the IOC owns the world and its clock. A loop advances the world every ``tick_s``
wall seconds by the wall time elapsed times ``speed`` (simulated seconds per wall
second). Everything timed inside the IOC runs in simulated time too: motors move at their
``VELO`` (units per simulated second), an exposure of ``AcquireTime`` simulated seconds
takes ``AcquireTime / speed`` wall seconds. The clock PV (``CLOCK:Time-I``) gives the
simulated time, ``CLOCK:Speed-RB`` the speed.

Frames are rendered in a worker thread while the world is held (no tick advances it
meanwhile), so the IOC keeps answering Channel Access during a render; the numba kernels
are compiled (or loaded from numba's cache) by a warm-up render on a copy of the world
before any PV is served, not at the first frame a client asks for.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np
from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from thermoxanes.devices.temperature import HEATER_MODELS

log = logging.getLogger(__name__)


@dataclass
class MotorSpec:
    """One simulated motor record."""

    pv: str
    velocity: float
    limits: tuple[float, float]
    egu: str
    initial: float = 0.0


class SimMotorRecord(PVGroup):
    """A motor record (``record='motor'``) moving at ``VELO`` in simulated time.

    A put to ``.VAL`` completes (CA put-callback) when the move ends, as with a real motor
    record; ``.DMOV``/``.MOVN`` follow the move; ``.STOP`` ends it where it is; a new put
    while moving retargets (the earlier put completes at once).
    """

    motor = pvproperty(value=0.0, name="", record="motor", precision=4)

    def __init__(self, *args: Any, spec: MotorSpec, speed: float, tick_s: float = 0.02,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.spec, self.speed, self.tick_s = spec, float(speed), float(tick_s)
        self._move_id = 0

    @property
    def position(self) -> float:
        """User readback (record units)."""
        return float(self.motor.field_inst.user_readback_value.value)

    @motor.startup
    async def motor(self, instance: Any, async_lib: Any) -> None:
        fields = instance.field_inst
        spec = self.spec
        low, high = spec.limits
        await instance.write_metadata(lower_ctrl_limit=low, upper_ctrl_limit=high,
                                      units=spec.egu)
        await fields.velocity.write(spec.velocity)
        await fields.max_velocity.write(spec.velocity * 10)
        await fields.seconds_to_velocity.write(0.1)
        await fields.motor_step_size.write(1e-6)
        await fields.user_low_limit.write(low)
        await fields.user_high_limit.write(high)
        await fields.dial_low_limit.write(low)
        await fields.dial_high_limit.write(high)
        await fields.engineering_units.write(spec.egu)
        await fields.user_readback_value.write(spec.initial)
        await fields.dial_readback_value.write(spec.initial)
        await fields.done_moving_to_value.write(1)
        await fields.motor_is_moving.write(0)
        self._move_id += 1
        await instance.write(spec.initial)

    @motor.putter
    async def motor(self, instance: Any, value: float) -> float:
        fields = instance.field_inst
        self._move_id += 1
        move_id = self._move_id
        target = float(value)
        low, high = self.spec.limits
        if low < high and not low <= target <= high:
            raise ValueError(f"{self.prefix}: {target} outside [{low}, {high}]")
        await fields.done_moving_to_value.write(0)
        await fields.motor_is_moving.write(1)
        if fields.stop.value:
            await fields.stop.write(0)
        readback = float(fields.user_readback_value.value)
        while move_id == self._move_id:
            step = max(float(fields.velocity.value), 1e-9) * self.speed * self.tick_s
            if fields.stop.value:
                await fields.stop.write(0)
                target = readback
                break
            if abs(target - readback) <= step:
                readback = target
            else:
                readback += step if target > readback else -step
            await fields.user_readback_value.write(readback)
            await fields.dial_readback_value.write(readback)
            if readback == target:
                break
            await asyncio.sleep(self.tick_s)
        if move_id == self._move_id:
            await fields.motor_is_moving.write(0)
            await fields.done_moving_to_value.write(1)
        return target


class ShutterGroup(PVGroup):
    """Shutter: open and close commands, status (``open_value`` when open)."""

    def __init__(self, *args: Any, open_value: int, move_s: float, speed: float,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.open_value, self.move_s, self.speed = int(open_value), float(move_s), float(speed)

    @property
    def is_open(self) -> bool:
        """True when the status reports open."""
        return int(self.status.value) == self.open_value

    async def _move(self, want_open: bool) -> None:
        await asyncio.sleep(self.move_s / self.speed)
        value = self.open_value if want_open else 1 - self.open_value
        await self.status.write(value)


def _shutter_group(open_pv: str, close_pv: str, status_pv: str) -> type[ShutterGroup]:
    status = pvproperty(name=status_pv, value=0, read_only=True, doc="Shutter status")
    open_cmd = pvproperty(name=open_pv, value=0, doc="Write 1 to open")
    close_cmd = pvproperty(name=close_pv, value=0, doc="Write 1 to close")

    @open_cmd.putter
    async def open_cmd(self, instance, value):
        if int(value):
            await self._move(True)
        return 0

    @close_cmd.putter
    async def close_cmd(self, instance, value):
        if int(value):
            await self._move(False)
        return 0

    return type("SimShutterGroup", (ShutterGroup,),
                {"status": status, "open_cmd": open_cmd, "close_cmd": close_cmd})


class HeaterGroup(PVGroup):
    """Base of the heater-controller groups; :func:`heater_group` names the PVs."""

    model = ""

    def __init__(self, *args: Any, world: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.world = world

    async def refresh(self) -> None:
        """Publish the thermocouple reading and heater output."""
        pvs = HEATER_MODELS[self.model]
        temperature_c = float(self.world.heater.thermocouple_c())
        if pvs["readback_scale"] != 1.0:
            await self.readback.write(int(round(temperature_c / pvs["readback_scale"])))
        else:
            await self.readback.write(temperature_c)
        await self.output.write(100.0 * float(self.world.heater.power_fraction))


def heater_group(model: str, loop: int = 1) -> type[HeaterGroup]:
    """A PVGroup class serving the PVs of controller ``model`` (see ``HEATER_MODELS``)."""
    pvs = {k: (v.format(loop=loop) if isinstance(v, str) else v)
           for k, v in HEATER_MODELS[model].items()}
    integer = pvs["readback_scale"] != 1.0
    ns: dict[str, Any] = {"model": model}
    ns["readback"] = pvproperty(name=pvs["readback"], value=250 if integer else 25.0,
                                read_only=True, doc="Temperature readback")
    ns["output"] = pvproperty(name=pvs["output"], value=0.0, read_only=True,
                              doc="Heater output (%)")
    setpoint = pvproperty(name=pvs["setpoint"], value=25 if integer else 25.0)
    ns["setpoint_rbv"] = pvproperty(name=pvs["setpoint_rbv"], value=25 if integer else 25.0,
                                    read_only=True)
    ramp = pvproperty(name=pvs["ramp"], value=5.0, doc="Ramp rate (C/min)")
    ns["ramp_rbv"] = pvproperty(name=pvs["ramp_rbv"], value=5.0, read_only=True)

    @setpoint.putter
    async def setpoint(self, instance, value):
        self.world.heater.setpoint_c = float(value)
        await self.setpoint_rbv.write(value)
        return value

    @ramp.putter
    async def ramp(self, instance, value):
        if float(value) <= 0:
            raise ValueError("ramp rate must be > 0")
        self.world.heater.ramp_rate_c_per_min = float(value)
        await self.ramp_rbv.write(value)
        return value

    ns["setpoint"], ns["ramp"] = setpoint, ramp
    if "enable" in pvs:
        enable = pvproperty(name=pvs["enable"], value=0, doc="Output on (non-zero)")
        ns["enable_rbv"] = pvproperty(name=pvs["enable_rbv"], value=0, read_only=True)

        @enable.putter
        async def enable(self, instance, value):
            self.world.heater.output_on = bool(int(value))
            await self.enable_rbv.write(int(value))
            return value

        ns["enable"] = enable
    if "ramp_on" in pvs:
        ns["ramp_on"] = pvproperty(name=pvs["ramp_on"], value=1)
        ns["ramp_on_rbv"] = pvproperty(name=pvs["ramp_on_rbv"], value=1, read_only=True)
    return type(f"SimHeater_{model}", (HeaterGroup,), ns)


class ScalarGroup(PVGroup):
    """Ring current and clock PVs, refreshed by the world loop."""

    def __init__(self, *args: Any, world: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.world = world


def _scalar_group(ring_pv: str, time_pv: str, speed_pv: str) -> type[ScalarGroup]:
    ns = {
        "ring_ma": pvproperty(name=ring_pv, value=400.0, read_only=True, precision=3,
                              doc="Ring current (mA)"),
        "time_s": pvproperty(name=time_pv, value=0.0, read_only=True, precision=3,
                             doc="Simulated time (s)"),
        "speed_x": pvproperty(name=speed_pv, value=1.0, read_only=True,
                            doc="Simulated seconds per wall second"),
    }
    return type("SimScalars", (ScalarGroup,), ns)


def _char(name: str, value: str = "", read_only: bool = False) -> pvproperty:
    return pvproperty(name=name, value=value, dtype=ChannelType.CHAR, max_length=512,
                      string_encoding="latin-1", read_only=read_only)


@dataclass
class FrameSource:
    """What the camera needs from the other groups to render a frame."""

    energy_ev: Callable[[], float]
    sample_xy_um: Callable[[], tuple[float, float]]
    theta_deg: Callable[[], float]
    shutter_open: Callable[[], bool]
    sample_in_tolerance_um: float = 500.0
    home_xy_um: tuple[float, float] = field(default=(0.0, 0.0))


class CameraGroup(PVGroup):
    """areaDetector driver (``cam1:``), HDF5 plugin (``HDF1:``) and image plugin
    (``image1:ArrayData``, the last frame; needs ``EPICS_CA_MAX_ARRAY_BYTES`` raised on both
    sides) PVs; writes HDF5 files.

    Stream mode: ``Capture=1`` arms the plugin, the file opens at the first frame (path
    ``FileTemplate % (FilePath, FileName, FileNumber)``, dataset ``/entry/data/data``, SWMR),
    every frame is appended and flushed, ``Capture=0`` closes it.
    """

    acquire = pvproperty(name="cam1:Acquire", value=0, doc="1: take one frame")
    acquire_time = pvproperty(name="cam1:AcquireTime", value=0.5, precision=4)
    acquire_time_rbv = pvproperty(name="cam1:AcquireTime_RBV", value=0.5, read_only=True,
                                  precision=4)
    image_mode = pvproperty(name="cam1:ImageMode", value=0)
    num_images = pvproperty(name="cam1:NumImages", value=1)
    array_counter = pvproperty(name="cam1:ArrayCounter_RBV", value=0, read_only=True)
    size_x = pvproperty(name="cam1:ArraySizeX_RBV", value=0, read_only=True)
    size_y = pvproperty(name="cam1:ArraySizeY_RBV", value=0, read_only=True)
    detector_state = pvproperty(name="cam1:DetectorState_RBV", value=0, read_only=True)
    file_path = _char("HDF1:FilePath")
    file_path_rbv = _char("HDF1:FilePath_RBV", read_only=True)
    file_name = _char("HDF1:FileName")
    file_template = _char("HDF1:FileTemplate", "%s%s_%6.6d.h5")
    full_file_name = _char("HDF1:FullFileName_RBV", read_only=True)
    file_number = pvproperty(name="HDF1:FileNumber", value=0)
    auto_increment = pvproperty(name="HDF1:AutoIncrement", value=0)
    file_write_mode = pvproperty(name="HDF1:FileWriteMode", value=2)
    num_capture = pvproperty(name="HDF1:NumCapture", value=0)
    capture = pvproperty(name="HDF1:Capture", value=0)
    capture_rbv = pvproperty(name="HDF1:Capture_RBV", value=0, read_only=True)
    num_captured = pvproperty(name="HDF1:NumCaptured_RBV", value=0, read_only=True)
    array_data = pvproperty(name="image1:ArrayData", value=[0], dtype=ChannelType.LONG,
                            max_length=2048 * 2048, read_only=True,
                            doc="Last frame, flattened (NDStdArrays plugin; int32 over CA)")
    array_size0 = pvproperty(name="image1:ArraySize0_RBV", value=0, read_only=True)
    array_size1 = pvproperty(name="image1:ArraySize1_RBV", value=0, read_only=True)

    def __init__(self, *args: Any, world: Any, source: FrameSource, speed: float,
                 world_lock: asyncio.Lock | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.world, self.source, self.speed = world, source, float(speed)
        self.world_lock = world_lock or asyncio.Lock()
        self._file: h5py.File | None = None
        self._capturing = False

    @size_x.startup
    async def size_x(self, instance: Any, async_lib: Any) -> None:
        height, width = self.world.frame_shape
        await self.size_x.write(width)
        await self.size_y.write(height)
        await self.array_size0.write(width)
        await self.array_size1.write(height)

    @acquire_time.putter
    async def acquire_time(self, instance: Any, value: float) -> float:
        if float(value) <= 0:
            raise ValueError("AcquireTime must be > 0")
        await self.acquire_time_rbv.write(value)
        return value

    @file_path.putter
    async def file_path(self, instance: Any, value: str) -> str:
        await self.file_path_rbv.write(value)
        return value

    @capture.putter
    async def capture(self, instance: Any, value: int) -> int:
        if int(value):
            self._close()
            self._capturing = True
            await self.num_captured.write(0)
        else:
            self._capturing = False
            if self._close() and self.auto_increment.value:
                await self.file_number.write(int(self.file_number.value) + 1)
        await self.capture_rbv.write(int(value))
        return int(value)

    def _close(self) -> bool:
        if self._file is None:
            return False
        self._file.close()
        self._file = None
        return True

    async def _render(self, exposure_s: float) -> np.ndarray:
        """One frame for the present motor, shutter and rotation positions.

        The positions are read here, in the event loop; the render runs in a worker thread
        with the world held, so Channel Access is served meanwhile.
        """
        src = self.source
        x, y = src.sample_xy_um()
        dx, dy = x - src.home_xy_um[0], y - src.home_xy_um[1]
        sample_in = abs(dx) < src.sample_in_tolerance_um and abs(dy) < src.sample_in_tolerance_um
        energy_ev, shutter_open, theta_deg = src.energy_ev(), src.shutter_open(), src.theta_deg()
        async with self.world_lock:
            return await asyncio.to_thread(
                self.world.render_frame, energy_ev, exposure_s=exposure_s,
                sample_in=sample_in, shutter_open=shutter_open, theta_deg=theta_deg,
                sample_xy_um=(dx, dy) if sample_in else (0.0, 0.0))

    async def _store(self, frame: np.ndarray) -> None:
        if self._file is None:
            path = str(self.file_template.value) % (
                str(self.file_path.value), str(self.file_name.value), int(self.file_number.value))
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            self._file = h5py.File(path, "w", libver="latest")
            self._file.create_dataset("/entry/data/data", shape=(0, *frame.shape),
                                      maxshape=(None, *frame.shape), dtype="<u2",
                                      chunks=(1, *frame.shape))
            self._file.swmr_mode = True
            await self.full_file_name.write(path)
        dataset = self._file["/entry/data/data"]
        n = dataset.shape[0]
        dataset.resize(n + 1, axis=0)
        dataset[n] = frame
        dataset.flush()
        await self.num_captured.write(n + 1)

    @acquire.putter
    async def acquire(self, instance: Any, value: int) -> int:
        if not int(value):
            return 0
        await self.detector_state.write(1)
        try:
            exposure_s = float(self.acquire_time.value)
            await asyncio.sleep(exposure_s / self.speed)
            frame = await self._render(exposure_s)
            await self.array_counter.write(int(self.array_counter.value) + 1)
            await self.array_data.write(frame.ravel().astype(np.int32))
            if self._capturing:
                await self._store(frame)
        finally:
            await self.detector_state.write(0)
        return 0


@dataclass
class SimIOCConfig:
    """Everything the simulated IOC serves (built from a profile by ``profiles``)."""

    motors: dict[str, MotorSpec]        # role -> spec: dcm, zoneplate, detector, x, y, z, rotation
    ev_per_mono_unit: float
    shutter: dict[str, Any]             # open_pv, close_pv, status_pv, open_value
    heaters: list[tuple[str, str, int]]  # (model, prefix, loop)
    ring_pv: str
    clock_prefix: str
    camera_prefix: str
    speed: float = 60.0
    tick_s: float = 0.05


class SimBeamlineIOC:
    """All groups of one simulated beamline over one :class:`SimWorld`.

    Parameters
    ----------
    world : SimWorld
        The physics; the IOC advances its clock (see the module docstring).
    config : SimIOCConfig
        PV names and motor settings.
    """

    def __init__(self, world: Any, config: SimIOCConfig):
        self.world, self.config = world, config
        speed = float(config.speed)
        self.motors = {role: SimMotorRecord(prefix=spec.pv, spec=spec, speed=speed)
                       for role, spec in config.motors.items()}
        sh = config.shutter
        self.shutter = _shutter_group(sh["open_pv"], sh["close_pv"], sh["status_pv"])(
            prefix="", open_value=sh["open_value"], move_s=0.05, speed=speed)
        self.heaters = [heater_group(model, loop)(prefix=prefix, world=world)
                        for model, prefix, loop in config.heaters]
        self.scalars = _scalar_group(config.ring_pv, config.clock_prefix + "Time-I",
                                     config.clock_prefix + "Speed-RB")(
            prefix="", world=world)
        source = FrameSource(
            energy_ev=lambda: self.motors["dcm"].position * config.ev_per_mono_unit,
            sample_xy_um=lambda: (self.motors["x"].position, self.motors["y"].position),
            theta_deg=lambda: self.motors["rotation"].position,
            shutter_open=lambda: self.shutter.is_open,
            home_xy_um=(config.motors["x"].initial, config.motors["y"].initial),
        )
        self.world_lock = asyncio.Lock()
        self.camera = CameraGroup(prefix=config.camera_prefix, world=world, source=source,
                                  speed=speed, world_lock=self.world_lock)
        self.pvdb: dict[str, Any] = {}
        for group in [*self.motors.values(), self.shutter, *self.heaters, self.scalars,
                      self.camera]:
            overlap = set(self.pvdb) & set(group.pvdb)
            if overlap:
                raise ValueError(f"simulated IOC: PV served twice: {sorted(overlap)[0]}")
            self.pvdb.update(group.pvdb)

    async def world_loop(self, async_lib: Any = None) -> None:
        """Advance the world with the wall clock times ``speed``; publish the readings."""
        speed, tick = float(self.config.speed), float(self.config.tick_s)
        await self.scalars.speed_x.write(speed)
        await self.shutter.status.write(self.shutter.open_value)
        last = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            try:
                async with self.world_lock:     # never while a frame is being rendered
                    now = time.monotonic()
                    self.world.advance((now - last) * speed)
                    last = now
                    await self.scalars.time_s.write(float(self.world.time_s))
                    await self.scalars.ring_ma.write(float(self.world.ring_current_ma()))
                    for heater in self.heaters:
                        await heater.refresh()
            except Exception:  # keep serving; a broken tick must not kill the IOC
                log.exception("simulated IOC: world loop tick failed")

    def warm_up(self) -> None:
        """Render one frame on a copy of the world (the world itself is left as it was).

        numba compiles the render kernels, or loads them from its cache, here, before any
        PV is served: on a fresh checkout that takes seconds to tens of seconds, which at the
        first frame would leave the IOC unable to answer in time.
        """
        config = self.config
        energy_ev = config.motors["dcm"].initial * config.ev_per_mono_unit
        copy.deepcopy(self.world).render_frame(energy_ev, exposure_s=0.1)

    def run(self, interfaces: list[str] | None = None) -> None:
        """Serve until interrupted (blocks)."""
        from caproto.asyncio.server import run

        self.warm_up()

        async def hook(async_lib: Any) -> None:
            asyncio.get_running_loop().create_task(self.world_loop())

        run(self.pvdb, interfaces=interfaces or ["127.0.0.1"], startup_hook=hook)
