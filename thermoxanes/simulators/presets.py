"""Named sample presets: particle geometry, chemistry and optics.

``nmc622-gravel`` and ``nmc622-rod`` reproduce the in situ XANES-3D heating of seed 002
(charged Ni-rich NMC, 25 -> 150 -> 200 -> 250 C): white-line histogram means fall
0.9 / 1.3 eV (gravel) and 1.9 / 0.4 eV (rod) over 25->150 / 150->200 C, both end near
8347.8 eV at 250 C, and the histograms narrow. ``nmc622-380c`` is the seed-000 particle
(central hole, cracks that double, Li-compound lumps, Li redistribution at 380 C) and
``nmc442-hollow`` the spray-pyrolysed hollow spheres of seed 000 Fig. 6 (whiskers).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from thermoxanes.simulators.chemistry import ChemistryParams
from thermoxanes.simulators.spectra import OpticalConstants


@dataclass(frozen=True)
class ParticlePopulation:
    """How the particles of a preset are drawn (lengths in um)."""

    count: int = 3
    diameter_um: float = 8.0
    diameter_spread: float = 0.12
    #: Central hole radius as a fraction of the particle radius (0: none).
    hole_fraction: float = 0.0
    #: Inner radius of hollow shells as a fraction of the radius (0: dense).
    shell_fraction: float = 0.0
    grain: str = "gravel"
    grain_size_um: float = 0.6
    n_cracks: int = 8
    crack_half_width_um: float = 0.07
    protrusion: str = "lump"
    n_protrusions: int = 6
    protrusion_size_um: float = 1.0
    #: Particle-to-particle spread of the start valence (rms).
    valence_spread: float = 0.02


@dataclass(frozen=True)
class SimPreset:
    """Everything that defines a simulated sample."""

    name: str
    description: str
    particles: ParticlePopulation = field(default_factory=ParticlePopulation)
    chemistry: ChemistryParams = field(default_factory=ChemistryParams)
    optics: OpticalConstants = field(default_factory=OpticalConstants)
    #: Field of view (um) across the frame.
    fov_um: float = 40.0
    #: Quartz capillary: outer radius and wall thickness (um); 0 for none.
    capillary_radius_um: float = 60.0
    capillary_wall_um: float = 8.0
    #: Energy-calibration offset of the beamline (eV): recorded spectra sit this much higher.
    calibration_shift_ev: float = 0.0

    def with_(self, **changes: object) -> SimPreset:
        """Copy with fields replaced."""
        return replace(self, **changes)


_GRAVEL_CHEM = ChemistryParams(
    v_start_mean=3.40,
    extent_table=(
        (25.0, 0.0),
        (110.0, 0.0),
        (150.0, 0.362),
        (200.0, 0.768),
        (250.0, 1.0),
        (400.0, 1.0),
    ),
)

_ROD_CHEM = ChemistryParams(
    v_start_mean=3.40,
    extent_table=(
        (25.0, 0.0),
        (125.0, 0.0),
        (150.0, 0.672),
        (200.0, 0.791),
        (250.0, 1.0),
        (400.0, 1.0),
    ),
)

PRESETS: dict[str, SimPreset] = {
    "nmc622-gravel": SimPreset(
        name="nmc622-gravel",
        description="charged NMC622-type particles, randomly packed gravel-shaped grains "
        "(seed 002)",
        particles=ParticlePopulation(grain="gravel", grain_size_um=0.6, hole_fraction=0.0),
        chemistry=_GRAVEL_CHEM,
    ),
    "nmc622-rod": SimPreset(
        name="nmc622-rod",
        description="charged NMC622-type particles, radially packed rod-shaped grains "
        "(seed 002)",
        particles=ParticlePopulation(grain="rod", grain_size_um=0.45, n_cracks=10),
        chemistry=_ROD_CHEM,
    ),
    "nmc622-380c": SimPreset(
        name="nmc622-380c",
        description="charged Li0.5Ni0.6Mn0.2Co0.2O2 with a central hole, cracks and "
        "Li-compound lumps, for 380 C thermal abuse (seed 000)",
        particles=ParticlePopulation(
            count=3, hole_fraction=0.15, n_cracks=10, protrusion="lump", n_protrusions=8
        ),
        chemistry=_GRAVEL_CHEM.with_(
            li_amplitude=0.11,
            # Kinetically limited bulk reduction: creeps over hours at 380 C.
            reduction_rate_ref_per_s=8e-8,
            extent_table=((25.0, 0.0), (100.0, 0.0), (250.0, 0.6), (400.0, 0.8)),
            # Charge transfer to the outside sets in after ~4.3 h (380 C equivalent).
            surface_onset_s=4.3 * 3600.0,
            surface_rate_ref_per_s=2.0 / 3600.0,
            surface_max=2.0,
            surface_patch_threshold=1.3,
            surface_patch_length_um=3.5,
            surface_depth_um=3.0,
        ),
    ),
    "nmc442-hollow": SimPreset(
        name="nmc442-hollow",
        description="hollow spray-pyrolysed LiNi0.4Mn0.4Co0.2O2 spheres growing Li-compound "
        "whiskers (seed 000, Fig. 6)",
        particles=ParticlePopulation(
            count=4,
            diameter_um=6.0,
            shell_fraction=0.55,
            grain_size_um=0.4,
            n_cracks=4,
            protrusion="whisker",
            n_protrusions=40,
            protrusion_size_um=1.5,
        ),
        chemistry=ChemistryParams(v_start_mean=3.1, v_start_sigma=0.08),
        optics=OpticalConstants(ni_jump_per_um=0.022, nmc_background_per_um=0.05),
        calibration_shift_ev=0.6,
    ),
}


def get_preset(name: str) -> SimPreset:
    """Preset by name; raises ``KeyError`` listing the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
