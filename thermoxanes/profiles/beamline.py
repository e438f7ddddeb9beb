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
) -> Beamline:
    """Instantiate the devices of ``profile``; frames are written under ``data_dir``.

    ``size``, ``seed`` and ``preset`` override the profile's simulation section.
    """
    if profile.kind != "sim":  # pragma: no cover - only "sim" profiles exist so far
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
    heater.max_temperature_c.put(profile.heater.max_temperature_c)
    heater.tolerance_c.put(profile.heater.tolerance_c)
    heater.settle_s.put(profile.heater.settle_s)
    clock = sim.SimClockDevice(name="clock", world=world)
    ring = sim.SimRingCurrent(name="ring", world=world)
    camera = sim.SimCamera(name="camera", world=world, mono=mono, sample_stage=stage,
                           shutter=shutter, rotation=rotation, data_dir=data_dir)
    camera.exposure_s.put(profile.camera.exposure_s)
    camera.readout_s.put(profile.camera.readout_s)
    return Beamline(profile=profile, camera=camera, mono=mono, sample_stage=stage,
                    shutter=shutter, rotation=rotation, heater=heater, clock=clock,
                    ring=ring, world=world)
