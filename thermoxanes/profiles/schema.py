"""Schema of beamline profiles (TOML), validated by pydantic; unknown keys are errors."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SimulationSection(_Section):
    """The simulated world (``kind = "sim"`` only)."""

    preset: str = "nmc622-gravel"
    size: int = Field(512, ge=16, le=4096)
    seed: int = 0


class CameraSection(_Section):
    exposure_s: float = Field(0.5, gt=0)
    readout_s: float = Field(0.05, ge=0)


class MonoSection(_Section):
    magnification: float = Field(50.0, gt=0)
    low_limit_ev: float = 4500.0
    high_limit_ev: float = 12000.0


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


class Profile(_Section):
    """A beamline profile: what devices exist and their settings. Data, never code."""

    name: str
    kind: Literal["sim"]
    description: str = ""
    simulation: SimulationSection = SimulationSection()
    camera: CameraSection = CameraSection()
    mono: MonoSection = MonoSection()
    sample_stage: SampleStageSection = SampleStageSection()
    heater: HeaterSection = HeaterSection()
    acquisition: AcquisitionSection = AcquisitionSection()
    streaming: StreamingSection = StreamingSection()


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
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{label}: {where}: {first['msg']}") from None
