"""The sample: particles placed in the field of view, their chemistry, and projections.

Projections are computed on a *model grid* (``model_px`` square, pixel = voxel =
``fov_um / model_px``) and cached for the current chemistry state and rotation angle; the
detector samples them at its own resolution.
"""

from __future__ import annotations

import math

import numpy as np

from thermoxanes.simulators.chemistry import Chemistry, add_chemistry_fields
from thermoxanes.simulators.geometry import ParticleSpec, ParticleVolume, build_particle
from thermoxanes.simulators.presets import SimPreset
from thermoxanes.simulators.projection import N_CHANNELS, footprint, project_particle
from thermoxanes.simulators.spectra import background_scale, basis_spectra


def _place(
    preset: SimPreset, rng: np.random.Generator
) -> list[ParticleSpec]:
    pop = preset.particles
    half = preset.fov_um / 2.0
    specs: list[ParticleSpec] = []
    placed: list[tuple[float, float, float]] = []
    tries = 0
    while len(specs) < pop.count and tries < 2000:
        tries += 1
        d = pop.diameter_um * (1.0 + pop.diameter_spread * rng.standard_normal())
        r = max(0.25 * pop.diameter_um, d / 2.0)
        lim = half - r - 0.5
        if lim <= 0:
            lim = 0.0
        x, y = rng.uniform(-lim, lim, 2)
        z = rng.uniform(-0.3, 0.3) * preset.fov_um
        if any(math.hypot(x - px, y - py) < r + pr + 0.3 for px, py, pr in placed):
            continue
        placed.append((x, y, r))
        specs.append(
            ParticleSpec(
                center_um=(float(x), float(y), float(z)),
                radius_um=float(r),
                hole_radius_um=pop.hole_fraction * r,
                shell_inner_um=pop.shell_fraction * r,
                grain=pop.grain,
                grain_size_um=pop.grain_size_um,
                n_cracks=pop.n_cracks,
                crack_half_width_um=pop.crack_half_width_um,
                protrusion=pop.protrusion,
                n_protrusions=pop.n_protrusions,
                protrusion_size_um=pop.protrusion_size_um,
            )
        )
    return specs


class Sample:
    """Particles, chemistry and the projected path lengths.

    Parameters
    ----------
    preset : SimPreset
    model_px : int
        Model grid size (pixels across the field of view).
    rng : numpy.random.Generator
        Draws geometry and the static chemistry fields.
    """

    def __init__(self, preset: SimPreset, model_px: int, rng: np.random.Generator) -> None:
        self.preset = preset
        self.model_px = int(model_px)
        self.voxel_um = preset.fov_um / self.model_px
        self.chemistry = Chemistry(preset.chemistry)
        self.particles: list[ParticleVolume] = []
        for spec in _place(preset, rng):
            vol = build_particle(spec, self.voxel_um, rng)
            offset = preset.particles.valence_spread * rng.standard_normal()
            add_chemistry_fields(vol, preset.chemistry, rng, mean_offset=offset)
            self.particles.append(vol)
        self.capillary_um = self._capillary()
        self._cache: dict = {}
        self._last_key: tuple | None = None

    def _capillary(self) -> np.ndarray:
        """Path length (um) through the capillary walls, (M, M) float32 (varies along x)."""
        p = self.preset
        m = self.model_px
        x = (np.arange(m) - (m - 1) / 2.0) * self.voxel_um
        ro, ri = p.capillary_radius_um, p.capillary_radius_um - p.capillary_wall_um
        if ro <= 0:
            return np.zeros((m, m), dtype=np.float32)
        outer = 2 * np.sqrt(np.clip(ro * ro - x * x, 0, None))
        inner = 2 * np.sqrt(np.clip(ri * ri - x * x, 0, None))
        return np.broadcast_to((outer - inner).astype(np.float32), (m, m)).copy()

    # -- projections -------------------------------------------------------------------
    def project(self, theta_deg: float = 0.0, scalars: tuple | None = None) -> np.ndarray:
        """Projected path lengths (5, M, M) float32 (um): W2, W3, W4, t_nmc, t_li.

        ``scalars`` defaults to the chemistry's current state.
        """
        sc = self.chemistry.scalars() if scalars is None else scalars
        x, a_cos, a_sin, s, c, p = sc
        theta = math.radians(float(theta_deg))
        m = self.model_px
        out = np.zeros((N_CHANNELS, m, m), dtype=np.float32)
        ct, st = math.cos(theta), math.sin(theta)
        for vol in self.particles:
            cx, cy, cz = vol.spec.center_um
            u = cx * ct - cz * st
            n = vol.n
            foot = footprint(n, theta)
            col0 = int(round(m / 2.0 - 0.5 + u / self.voxel_um - (foot - 1) / 2.0))
            row0 = int(round(m / 2.0 - 0.5 + cy / self.voxel_um - (n - 1) / 2.0))
            f = vol.fields
            project_particle(
                out, row0, col0, vol.density, vol.crack_level, vol.protrusion_level,
                f["vs"], f["ve"], f["f1"], f["f2"], f["sf"],
                float(x), float(a_cos), float(a_sin), float(s), float(c), float(p),
                float(self.voxel_um), float(theta),
            )
        return out

    def cached_projection(self, theta_deg: float, tolerance: float) -> np.ndarray:
        """Projection at ``theta_deg``, recomputed only when the chemistry moved.

        The cached one is reused while the largest possible voxel-valence change since it
        was computed stays below ``tolerance`` (valence units) and cracks/protrusions
        moved by less than 0.005 of their scale.
        """
        sc = self.chemistry.scalars()
        key = round(float(theta_deg), 6)
        hit = self._cache.get(key)
        if hit is not None:
            old, proj = hit
            dv = (
                abs(sc[0] - old[0]) * 2.0
                + abs(sc[1] - old[1]) * 4.0
                + abs(sc[2] - old[2]) * 4.0
                + abs(sc[3] - old[3]) * 2.0
            )
            if dv <= tolerance and abs(sc[4] - old[4]) < 0.005 and abs(sc[5] - old[5]) < 0.005:
                return proj
        proj = self.project(theta_deg, sc)
        if len(self._cache) > 8:
            self._cache.clear()
        self._cache[key] = (sc, proj)
        return proj

    def optical_density(
        self, projection: np.ndarray, energy_ev: float, shift_ev: float
    ) -> np.ndarray:
        """Noise-free optical density (M, M) float32 at ``energy_ev`` (eV)."""
        o = self.preset.optics
        b = basis_spectra(energy_ev, shift_ev, o.resolution_fwhm_ev)[:, 0]
        bg = float(background_scale(energy_ev, o.energy_exponent)[()])
        od = (o.ni_jump_per_um * b[0]) * projection[0]
        od += (o.ni_jump_per_um * b[1]) * projection[1]
        od += (o.ni_jump_per_um * b[2]) * projection[2]
        od += (o.nmc_background_per_um * bg) * projection[3]
        od += (o.li_compound_per_um * bg) * projection[4]
        od += (o.capillary_per_um * bg) * self.capillary_um
        return od

    # -- 3D views ----------------------------------------------------------------------
    def valence_volume(self, index: int) -> np.ndarray:
        """Voxel valence (z, y, x) float32 of particle ``index`` now; NaN where no NMC."""
        vol = self.particles[index]
        x, a_cos, a_sin, s, c, _ = self.chemistry.scalars()
        f = vol.fields
        v = (1 - x) * f["vs"] + x * f["ve"] + a_cos * f["f1"] + a_sin * f["f2"] - s * f["sf"]
        v = np.clip(v, 2.0, 4.0).astype(np.float32)
        return np.where(vol.solid(c), v, np.float32(np.nan))
