"""Build the devices a profile describes.

:class:`Beamline` is what plans and the CLI need: the devices, by role. Only this package
and the CLI import ``thermoxanes.simulators``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thermoxanes.profiles.schema import Profile


@dataclass
class Beamline:
    """Devices of a beamline by role (all ophyd devices)."""

    profile: Profile
    camera: Any
    mono: Any
    sample_stage: Any
    shutter: Any
    rotation: Any
    heater: Any
    clock: Any
    ring: Any
    world: Any = None  # the simulated world, for simulated profiles only
    mock: bool = False  # EPICS devices built with fake signals (no Channel Access)

    @property
    def devices(self) -> dict[str, Any]:
        """Every device by role."""
        return {"camera": self.camera, "mono": self.mono, "sample_stage": self.sample_stage,
                "shutter": self.shutter, "rotation": self.rotation, "heater": self.heater,
                "clock": self.clock, "ring": self.ring}

    def wait_for_connection(self, timeout_s: float | None = None) -> None:
        """Wait for every PV (EPICS profiles), then apply the profile's settings.

        Raises
        ------
        thermoxanes.devices.PVConnectionError
            Within ``timeout_s`` (default: the profile's ``connection_timeout_s``), naming
            the PVs that did not connect. Simulated and mock beamlines return at once.
        """
        if self.profile.kind != "epics" or self.mock:
            return
        from thermoxanes.devices.connection import wait_for_connection

        if timeout_s is None:
            timeout_s = self.profile.epics.connection_timeout_s
        wait_for_connection(self.devices.values(), timeout_s)
        self.camera.exposure_s.set(self.profile.camera.exposure_s).wait(timeout_s)
        if self.profile.ioc is not None and self.profile.epics.clock:
            # A simulated IOC: its clock speed (it may differ from the profile's, --speed)
            # sets how long the heater's settle time is on the wall clock.
            import epics

            pv = self.profile.epics.clock + "Speed-RB"
            speed = epics.caget(pv, timeout=timeout_s)
            if speed is None or not float(speed) > 0:
                from thermoxanes.devices.connection import PVConnectionError

                raise PVConnectionError(f"PV not connected or invalid: {pv} ({speed!r})")
            self.heater.time_scale = 1.0 / float(speed)
            self.clock._min_speed = max(float(speed) / 4.0, 1e-3)

    @property
    def sample_x(self) -> Any:
        """The axis moved to take the sample out of the beam for flats."""
        return self.sample_stage.x

    @property
    def frame_readables(self) -> list[Any]:
        """Devices read with every frame besides camera and mono."""
        return [self.heater, self.clock, self.rotation, self.ring]

    @property
    def header_keys(self) -> dict[str, str]:
        """Event data keys that fill the frame header fields of the wire protocol."""
        return {
            "energy_ev": f"{self.mono.name}_energy_ev",
            "temperature_c": f"{self.heater.name}_temperature_c",
            "theta_deg": self.rotation.name,
        }


def build_beamline(
    profile: Profile,
    data_dir: str | Path,
    *,
    size: int | None = None,
    seed: int | None = None,
    preset: str | None = None,
    mock: bool = False,
) -> Beamline:
    """Instantiate the devices of ``profile``; frames are written under ``data_dir``.

    ``size``, ``seed`` and ``preset`` override the profile's simulation section (``sim``
    profiles; for ``sim-epics`` they belong to the IOC). For ``epics`` profiles see
    :func:`build_epics_beamline` (``mock=True``: fake signals, no Channel Access).
    """
    if profile.kind == "epics":
        return build_epics_beamline(profile, data_dir, mock=mock)
    if profile.kind != "sim":  # pragma: no cover - the schema allows no other kind
        raise ValueError(f"profile {profile.name!r}: kind {profile.kind!r} not supported")
    from thermoxanes.simulators import devices as sim
    from thermoxanes.simulators.world import SimWorld

    section = profile.simulation
    preset = preset or section.preset
    if preset not in SimWorld.presets():
        raise ValueError(f"unknown simulator preset {preset!r}; known: "
                         f"{', '.join(SimWorld.presets())}")
    world = SimWorld.from_preset(preset, size=size or section.size,
                                 seed=section.seed if seed is None else seed)
    advance = world.advance
    mono = sim.SimMonochromator(
        name="mono", advance=advance,
        limits_ev=(profile.mono.low_limit_ev, profile.mono.high_limit_ev))
    mono.magnification.put(profile.mono.magnification)
    stage = sim.SimSampleStage(name="sample", advance=advance)
    for axis in (stage.x, stage.y, stage.z):
        axis.velocity.put(profile.sample_stage.velocity_um_per_s)
    shutter = sim.SimShutter(name="shutter", advance=advance)
    rotation = sim.SimRotation(name="rotation", advance=advance, limits=(-180.0, 180.0))
    heater = sim.SimHeater(name="heater", world=world)
    _apply_heater_settings(heater, profile.heater)
    clock = sim.SimClockDevice(name="clock", world=world)
    ring = sim.SimRingCurrent(name="ring", world=world)
    camera = sim.SimCamera(name="camera", world=world, mono=mono, sample_stage=stage,
                           shutter=shutter, rotation=rotation, data_dir=data_dir)
    camera.exposure_s.put(profile.camera.exposure_s)
    camera.readout_s.put(profile.camera.readout_s)
    return Beamline(profile=profile, camera=camera, mono=mono, sample_stage=stage,
                    shutter=shutter, rotation=rotation, heater=heater, clock=clock,
                    ring=ring, world=world)


# -- EPICS profiles -------------------------------------------------------------------------
#: Default motor velocities (units per second) and limits by role for the simulated IOC.
_SIM_MOTORS: dict[str, tuple[float, tuple[float, float], str]] = {
    "zoneplate": (20.0, (0.0, 500.0), "mm"),
    "detector": (200.0, (0.0, 10000.0), "mm"),
    "x": (1000.0, (-25000.0, 25000.0), "um"),
    "y": (1000.0, (-25000.0, 25000.0), "um"),
    "z": (1000.0, (-25000.0, 25000.0), "um"),
    "rotation": (30.0, (-180.0, 180.0), "deg"),
}


def focus_calibration(profile: Profile) -> Any:
    """The :class:`~thermoxanes.devices.focus.FocusCalibration` of ``profile``'s mono."""
    from thermoxanes.devices.focus import CalibrationPoint, FocusCalibration

    mono = profile.mono
    return FocusCalibration(
        magnification=mono.magnification, diameter_um=mono.zoneplate_diameter_um,
        outer_zone_nm=mono.outer_zone_nm, zoneplate_offset_mm=mono.zoneplate_offset_mm,
        detector_offset_mm=mono.detector_offset_mm,
        points=tuple(CalibrationPoint(**p.model_dump()) for p in mono.calibration))


def sim_ioc_config(profile: Profile) -> Any:
    """What the simulated IOC serves for an ``epics`` profile with an ``[ioc]`` section."""
    from thermoxanes.simulators.ioc import MotorSpec, SimIOCConfig

    if profile.kind != "epics" or profile.epics is None or profile.ioc is None:
        raise ValueError(f"profile {profile.name!r} describes no simulated IOC "
                         "(needs kind = 'epics' and an [ioc] section)")
    ep, ioc = profile.epics, profile.ioc
    if (ep.camera.cam, ep.camera.hdf) != ("cam1:", "HDF1:"):
        raise ValueError(f"profile {profile.name!r}: the simulated IOC serves the camera "
                         "under cam1: and HDF1: only (epics.camera.cam / .hdf)")
    ev_per_unit = 1.0 if ep.mono.energy_units == "eV" else 1000.0
    calibration = focus_calibration(profile)
    zp0, det0 = calibration.positions_mm(8333.0)
    initial = {"dcm": 8333.0 / ev_per_unit, "zoneplate": zp0, "detector": det0}
    pvs = {"dcm": ep.mono.energy, "zoneplate": ep.mono.zoneplate_z,
           "detector": ep.mono.detector_z, "x": ep.sample_stage.x, "y": ep.sample_stage.y,
           "z": ep.sample_stage.z, "rotation": ep.rotation}
    specs = dict(_SIM_MOTORS)
    specs["dcm"] = (100.0 / ev_per_unit,
                    (profile.mono.low_limit_ev / ev_per_unit,
                     profile.mono.high_limit_ev / ev_per_unit), ep.mono.energy_units)
    stage_velocity = profile.sample_stage.velocity_um_per_s
    motors = {}
    for role, pv in pvs.items():
        velocity, limits, egu = specs[role]
        if role in ("x", "y", "z"):
            velocity = stage_velocity
        velocity = ioc.motor_velocity.get(role, velocity)
        motors[role] = MotorSpec(pv=pv, velocity=velocity, limits=limits, egu=egu,
                                 initial=float(initial.get(role, 0.0)))
    heaters = [(ep.heater.model, ep.heater.prefix, ep.heater.loop)]
    heaters += [(h.model, h.prefix, h.loop) for h in ioc.extra_heaters]
    return SimIOCConfig(
        motors=motors, ev_per_mono_unit=ev_per_unit,
        shutter={"open_pv": ep.shutter.open, "close_pv": ep.shutter.close,
                 "status_pv": ep.shutter.status, "open_value": ep.shutter.open_value},
        heaters=heaters, ring_pv=ep.ring_current, clock_prefix=ep.clock or "TXS:CLOCK:",
        camera_prefix=ep.camera.prefix, speed=ioc.speed, tick_s=ioc.tick_s)


def build_sim_ioc(profile: Profile, *, size: int | None = None, seed: int | None = None,
                  preset: str | None = None, speed: float | None = None) -> Any:
    """The simulated IOC of ``profile`` over a new :class:`SimWorld` (not started)."""
    from thermoxanes.simulators.ioc import SimBeamlineIOC
    from thermoxanes.simulators.world import SimWorld

    config = sim_ioc_config(profile)
    if speed is not None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        config.speed = float(speed)
    section = profile.simulation
    preset = preset or section.preset
    if preset not in SimWorld.presets():
        raise ValueError(f"unknown simulator preset {preset!r}; known: "
                         f"{', '.join(SimWorld.presets())}")
    world = SimWorld.from_preset(preset, size=size or section.size,
                                 seed=section.seed if seed is None else seed)
    return SimBeamlineIOC(world, config)


#: Heater settings of the profile's ``[heater]`` section copied onto the heater device.
_HEATER_SETTINGS = ("max_temperature_c", "max_ramp_rate_c_per_min", "max_setpoint_step_c",
                    "safe_temperature_c", "safe_state", "tolerance_c", "settle_s")


def _apply_heater_settings(heater: Any, section: Any) -> None:
    """Copy the profile's heater limits, safe state and settling onto ``heater``."""
    for name in _HEATER_SETTINGS:
        getattr(heater, name).put(getattr(section, name))


def _epics_classes(mock: bool) -> dict[str, type]:
    from thermoxanes import devices as dev
    from thermoxanes.devices.motion import LimitedEpicsMotor
    from thermoxanes.devices.temperature import CONTROLLER_CLASSES

    classes: dict[str, type] = {
        "mono": dev.FocusingMonochromator, "stage": dev.SampleStage,
        "shutter": dev.EpicsShutter, "ring": dev.RingCurrent, "clock": dev.EpicsClock,
        "camera": dev.ADHDF5Camera, "rotation": LimitedEpicsMotor,
        **{f"heater:{k}": v for k, v in CONTROLLER_CLASSES.items()},
    }
    if mock:
        from ophyd.sim import make_fake_device

        classes = {k: make_fake_device(v) for k, v in classes.items()}
    classes["wallclock"] = dev.WallClock
    return classes


def _apply_ca_timeouts(ep: Any, devices: tuple[Any, ...]) -> None:
    """The profile's Channel Access timeouts on every signal, its move margin on every motor."""
    from ophyd import Device

    from thermoxanes.devices.connection import CATimeouts, configure_timeouts
    from thermoxanes.devices.motion import LimitedEpicsMotor

    timeouts = CATimeouts(read_s=ep.read_timeout_s, reconnect_s=ep.reconnect_timeout_s,
                          write_s=ep.write_timeout_s)
    def motors(device: Any) -> list[Any]:
        if isinstance(device, LimitedEpicsMotor):
            return [device]
        names = getattr(device, "component_names", ())   # sub-devices only: no lazy signal
        subs = [getattr(device, n) for n in names if issubclass(getattr(type(device), n).cls,
                                                                 Device)]
        return [m for sub in subs for m in motors(sub)]

    for device in devices:
        configure_timeouts(device, timeouts)
        for motor in motors(device):
            motor.move_timeout_margin_s = float(ep.move_timeout_margin_s)


def build_epics_beamline(profile: Profile, data_dir: str | Path, *, mock: bool = False,
                         speed: float | None = None) -> Beamline:
    """ophyd devices over Channel Access for an ``epics`` profile.

    Nothing connects here (pyepics connects in the background); call
    :meth:`Beamline.wait_for_connection` before use. ``mock=True`` builds the same classes
    with ophyd's fake signals: no Channel Access at all (for checks without an IOC).
    ``speed`` (simulated over wall seconds) scales heater settle times; it defaults to the
    profile's ``[ioc] speed`` when there is one, else 1.
    """
    ep = profile.epics
    if ep is None:
        raise ValueError(f"profile {profile.name!r} has no [epics] section")
    cls = _epics_classes(mock)
    if speed is None:
        speed = profile.ioc.speed if profile.ioc is not None else 1.0
    mono = cls["mono"](
        name="mono", mono_pv=ep.mono.energy, zoneplate_pv=ep.mono.zoneplate_z,
        detector_pv=ep.mono.detector_z, energy_units=ep.mono.energy_units,
        calibration=focus_calibration(profile),
        limits_ev=(profile.mono.low_limit_ev, profile.mono.high_limit_ev))
    stage = cls["stage"](name="sample", x_pv=ep.sample_stage.x, y_pv=ep.sample_stage.y,
                         z_pv=ep.sample_stage.z)
    rotation = cls["rotation"](ep.rotation, name="rotation")
    shutter = cls["shutter"](name="shutter", open_pv=ep.shutter.open,
                             close_pv=ep.shutter.close, status_pv=ep.shutter.status,
                             open_value=ep.shutter.open_value, timeout_s=ep.shutter.timeout_s)
    heater = cls[f"heater:{ep.heater.model}"](ep.heater.prefix, name="heater",
                                              loop=ep.heater.loop, time_scale=1.0 / speed)
    _apply_heater_settings(heater, profile.heater)
    ring = cls["ring"](name="ring", current_pv=ep.ring_current)
    if ep.clock:
        clock = cls["clock"](name="clock", time_pv=ep.clock + "Time-I",
                             min_speed=max(speed / 4.0, 1e-3))
    else:
        clock = cls["wallclock"](name="clock")
    write_dir = ep.camera.write_dir or str(Path(data_dir).resolve())
    read_dir = ep.camera.read_dir or (write_dir if ep.camera.write_dir
                                      else str(Path(data_dir).resolve()))
    camera = cls["camera"](ep.camera.prefix, name="camera", cam=ep.camera.cam,
                           hdf=ep.camera.hdf, write_dir=write_dir, read_dir=read_dir)
    camera.readout_s.put(profile.camera.readout_s)
    _apply_ca_timeouts(ep, (mono, stage, rotation, shutter, heater, ring, clock, camera))
    beamline = Beamline(profile=profile, camera=camera, mono=mono, sample_stage=stage,
                        shutter=shutter, rotation=rotation, heater=heater, clock=clock,
                        ring=ring, world=None, mock=mock)
    return beamline
