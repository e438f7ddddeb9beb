"""Schema of beamline profiles (TOML), validated by pydantic; unknown keys are errors."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SimulationSection(_Section):
    """The simulated world (``kind = "sim"``, and the simulated IOC of ``sim-epics``)."""

    preset: str = "nmc622-gravel"
    size: int = Field(512, ge=16, le=4096)
    seed: int = 0


class CameraSection(_Section):
    exposure_s: float = Field(0.5, gt=0)
    readout_s: float = Field(0.05, ge=0)


class CalibrationPointSection(_Section):
    """Zone-plate and detector motor positions (mm) found in focus at one energy (eV)."""

    energy_ev: float = Field(gt=0)
    zoneplate_mm: float
    detector_mm: float


class MonoSection(_Section):
    """Energy limits and the zone-plate optics that keep focus on energy moves."""

    magnification: float = Field(50.0, gt=0)
    low_limit_ev: float = 4500.0
    high_limit_ev: float = 12000.0
    zoneplate_diameter_um: float = Field(244.0, gt=0)
    outer_zone_nm: float = Field(30.0, gt=0)
    zoneplate_offset_mm: float = 0.0
    detector_offset_mm: float = 0.0
    calibration: list[CalibrationPointSection] = []


class SampleStageSection(_Section):
    out_offset_um: float = 2000.0
    velocity_um_per_s: float = Field(1000.0, gt=0)


class HeaterSection(_Section):
    """Heater settings and safety limits (checked before anything moves)."""

    max_temperature_c: float = 450.0
    max_ramp_rate_c_per_min: float = Field(20.0, gt=0)
    max_setpoint_step_c: float = Field(250.0, gt=0)
    safe_temperature_c: float = 25.0
    safe_state: Literal["setpoint", "output_off"] = "setpoint"
    tolerance_c: float = Field(1.0, gt=0)
    settle_s: float = Field(30.0, ge=0)


class AcquisitionSection(_Section):
    n_darks: int = Field(5, ge=0)
    n_flats: int = Field(1, ge=1)


class StreamingSection(_Section):
    endpoint: str = "tcp://127.0.0.1:5577"


class EpicsMonoSection(_Section):
    """Motor records of the focusing monochromator."""

    energy: str
    zoneplate_z: str
    detector_z: str
    energy_units: Literal["eV", "keV"] = "eV"


class EpicsStageSection(_Section):
    """Motor records of the sample stage (µm)."""

    x: str
    y: str
    z: str


class EpicsShutterSection(_Section):
    open: str
    close: str
    status: str
    open_value: int = 1
    timeout_s: float = Field(10.0, gt=0)


class EpicsHeaterSection(_Section):
    model: Literal["lakeshore336", "eurotherm2216e", "linkam_t96"]
    prefix: str
    loop: int = Field(1, ge=1, le=4)


class EpicsCameraSection(_Section):
    """areaDetector IOC: prefix, plugin sub-prefixes and where files are written."""

    prefix: str
    cam: str = "cam1:"
    hdf: str = "HDF1:"
    write_dir: str = ""   # directory on the IOC host; "" = the data folder given at run time
    read_dir: str = ""    # the same directory seen from here; "" = write_dir


class EpicsSection(_Section):
    """PV names of a Channel Access beamline."""

    connection_timeout_s: float = Field(5.0, gt=0)   # every PV at start-up, then an error
    # Bounded Channel Access once running (s): a get; how long an operation waits for a
    # channel that is not connected (an IOC gone) before it fails naming the PV; a put
    # with completion or a set waiting for its readback; added to every motor move's
    # expected duration (x5) for its timeout. See docs/epics.md.
    read_timeout_s: float = Field(2.0, gt=0)
    reconnect_timeout_s: float = Field(1.0, gt=0)
    write_timeout_s: float = Field(10.0, gt=0)
    move_timeout_margin_s: float = Field(30.0, gt=0)
    mono: EpicsMonoSection
    sample_stage: EpicsStageSection
    rotation: str
    shutter: EpicsShutterSection
    heater: EpicsHeaterSection
    ring_current: str
    camera: EpicsCameraSection
    clock: str = ""       # clock PV prefix ("" = wall clock); serves {clock}Time-I


class IOCSection(_Section):
    """The simulated IOC of a ``sim-epics`` profile (``thermoxanes ioc``)."""

    speed: float = Field(60.0, gt=0)      # simulated seconds per wall second
    tick_s: float = Field(0.05, gt=0)
    extra_heaters: list[EpicsHeaterSection] = []   # also served, same simulated heater
    motor_velocity: dict[str, float] = {}          # role -> units per simulated second


class Profile(_Section):
    """A beamline profile: what devices exist and their settings. Data, never code.

    ``kind = "sim"``: in-process simulated devices. ``kind = "epics"``: ophyd devices over
    Channel Access (PV names in ``[epics]``); with an ``[ioc]`` section the profile also
    describes the simulated IOC that serves those PVs.
    """

    name: str
    kind: Literal["sim", "epics"]
    description: str = ""
    simulation: SimulationSection = SimulationSection()
    camera: CameraSection = CameraSection()
    mono: MonoSection = MonoSection()
    sample_stage: SampleStageSection = SampleStageSection()
    heater: HeaterSection = HeaterSection()
    acquisition: AcquisitionSection = AcquisitionSection()
    streaming: StreamingSection = StreamingSection()
    epics: EpicsSection | None = None
    ioc: IOCSection | None = None

    @model_validator(mode="after")
    def _kind_sections(self) -> Profile:
        if self.kind == "epics" and self.epics is None:
            raise ValueError("kind 'epics' needs an [epics] section")
        if self.kind == "sim" and (self.epics is not None or self.ioc is not None):
            raise ValueError("kind 'sim' takes no [epics] or [ioc] section")
        return self


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped with the package."""
    root = resources.files("thermoxanes.profiles")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_profile(name_or_path: str | Path) -> Profile:
    """Load and validate a profile by built-in name (``"sim"``) or TOML path.

    Raises
    ------
    ValueError
        One line naming the file and the offending key, for unknown or invalid keys.
    """
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ValueError(f"profile file {path} does not exist")
        text, label = path.read_text(), str(path)
    else:
        if str(name_or_path) not in builtin_profiles():
            raise ValueError(f"unknown profile {name_or_path!r}; built-in: "
                             f"{', '.join(builtin_profiles())}")
        resource = resources.files("thermoxanes.profiles") / f"{name_or_path}.toml"
        text, label = resource.read_text(), f"profile {name_or_path!r}"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{label}: not valid TOML: {exc}") from None
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # A typo shows up twice (unknown key, missing key): name the unknown one.
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        where = ".".join(str(p) for p in first["loc"]) or "profile"
        raise ValueError(f"{label}: {where}: {first['msg']}") from None
