"""Ni valence chemistry driven by the temperature history.

The per-voxel Ni valence is fixed by static fields and five scalar states, so advancing
time costs a handful of scalar updates and the voxel field is only evaluated when a
projection is needed::

    v = (1 - x) v_start + x v_end + a (cos(phi) F1 + sin(phi) F2) - s S

- ``v_start``: charged state with spatially correlated state-of-charge domains (per-grain
  offsets plus a smooth Gaussian field); ``v_end``: the reduced (spinel/rock-salt-like)
  state, nearly uniform. As ``x`` grows the distribution both shifts and narrows (seed 002).
- ``x``: reduction extent by oxygen release. Thermally activated (Arrhenius) relaxation
  toward a temperature-dependent extent ``x_eq(T)`` (the layered->spinel conversion seen by
  in situ diffraction); irreversible on cooling.
- ``phi``: progress of Li redistribution inside the particle (Arrhenius rate). ``F1, F2``
  are independent zero-mean correlated fields, so differences between two times are
  zero-mean and symmetric: local oxidation beside local reduction (seed 000, Fig. 1i).
- ``s``: surface-driven reduction by charge transfer to the outside, ``S = exp(-depth /
  lambda)`` with patchy strength; it starts after an Arrhenius-weighted induction age and
  makes later differential histograms asymmetric (negative tail).
- ``c``, ``p``: crack opening and Li-compound protrusion growth (see geometry).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from thermoxanes.simulators.geometry import ParticleVolume, correlated_field

#: Boltzmann constant (eV/K).
K_B_EV = 8.617333262e-5


def arrhenius(rate_ref_per_s: float, ea_ev: float, temperature_c: float, ref_c: float) -> float:
    """Rate (1/s) at ``temperature_c`` given ``rate_ref_per_s`` at ``ref_c`` and ``ea_ev``."""
    t = temperature_c + 273.15
    tr = ref_c + 273.15
    return rate_ref_per_s * math.exp(-ea_ev / K_B_EV * (1.0 / t - 1.0 / tr))


@dataclass(frozen=True)
class ChemistryParams:
    """Chemistry of a preset; valences in Ni oxidation-state units, rates in 1/s."""

    v_start_mean: float = 3.40
    v_start_sigma: float = 0.35
    #: Share of the start heterogeneity carried by whole grains (rest: smooth domains).
    grain_share: float = 0.3
    domain_length_um: float = 2.0
    v_end_mean: float = 2.0
    v_end_sigma: float = 0.02
    #: Equilibrium reduction extent x_eq(T): (temperature_c, extent) knots, interpolated.
    extent_table: tuple[tuple[float, float], ...] = (
        (25.0, 0.0),
        (100.0, 0.0),
        (150.0, 0.3),
        (200.0, 0.75),
        (250.0, 0.92),
        (400.0, 1.0),
    )
    reduction_rate_ref_per_s: float = 1.0 / 240.0
    reduction_ref_c: float = 150.0
    reduction_ea_ev: float = 0.7
    #: Li redistribution: amplitude (valence) and phase rate at 380 C (rad/s).
    li_amplitude: float = 0.05
    li_rate_ref_per_s: float = 2.0 * math.pi / (3.0 * 3600.0)
    li_ea_ev: float = 0.9
    #: Surface reduction: induction age (s at 380 C), rate at 380 C (1/s), depth (um).
    surface_onset_s: float = 1.5 * 3600.0
    surface_rate_ref_per_s: float = 0.35 / 3600.0
    surface_ea_ev: float = 1.0
    surface_depth_um: float = 0.8
    surface_max: float = 0.8
    #: Surface reduction acts in patches where a correlated field exceeds this many
    #: standard deviations (strength normalized to a mean of 1).
    surface_patch_threshold: float = 0.0
    #: Correlation length of the surface-reduction patches (um).
    surface_patch_length_um: float = 2.0
    #: Crack opening: initial state and rate at 380 C (1/s); state 2 doubles porosity.
    crack_initial: float = 1.0
    crack_rate_ref_per_s: float = 1.0 / (4.0 * 3600.0)
    crack_ea_ev: float = 0.9
    #: Protrusion growth rate at 380 C (1/s); state 1 is the full protrusion size.
    protrusion_rate_ref_per_s: float = 1.0 / (5.0 * 3600.0)
    protrusion_ea_ev: float = 1.1
    high_ref_c: float = 380.0

    def with_(self, **changes: object) -> ChemistryParams:
        """Copy with fields replaced."""
        return replace(self, **changes)


@dataclass
class ChemistryState:
    """Scalar state of the chemistry (see module docstring)."""

    x: float = 0.0
    phi: float = 0.0
    age_s: float = 0.0
    s: float = 0.0
    c: float = 1.0
    p: float = 0.0


class Chemistry:
    """Integrates the scalar chemistry states along a temperature history.

    Parameters
    ----------
    params : ChemistryParams
    """

    def __init__(self, params: ChemistryParams) -> None:
        self.params = params
        self.state = ChemistryState(c=params.crack_initial)
        temps = np.array([k[0] for k in params.extent_table], dtype=np.float64)
        ext = np.array([k[1] for k in params.extent_table], dtype=np.float64)
        self._t_knots, self._x_knots = temps, ext

    def equilibrium_extent(self, temperature_c: float) -> float:
        """Reduction extent x_eq reached at ``temperature_c`` (deg C) given time."""
        return float(np.interp(temperature_c, self._t_knots, self._x_knots))

    def advance(self, dt_s: float, temperature_c: float) -> None:
        """Advance all states by ``dt_s`` (s) at constant ``temperature_c`` (deg C)."""
        p, st = self.params, self.state
        if dt_s <= 0:
            return
        x_eq = self.equilibrium_extent(temperature_c)
        if x_eq > st.x:
            k = arrhenius(p.reduction_rate_ref_per_s, p.reduction_ea_ev, temperature_c,
                          p.reduction_ref_c)
            st.x = x_eq - (x_eq - st.x) * math.exp(-k * dt_s)
        hi = p.high_ref_c
        st.phi += arrhenius(p.li_rate_ref_per_s, p.li_ea_ev, temperature_c, hi) * dt_s
        ageing = arrhenius(1.0, p.surface_ea_ev, temperature_c, hi) * dt_s
        st.age_s += ageing
        if st.age_s > p.surface_onset_s:
            k = p.surface_rate_ref_per_s / max(p.surface_max, 1e-9)
            active = min(ageing, st.age_s - p.surface_onset_s)
            st.s = p.surface_max - (p.surface_max - st.s) * math.exp(-k * active)
        st.c += arrhenius(p.crack_rate_ref_per_s, p.crack_ea_ev, temperature_c, hi) * dt_s
        st.p += arrhenius(p.protrusion_rate_ref_per_s, p.protrusion_ea_ev, temperature_c,
                          hi) * dt_s

    def scalars(self) -> tuple[float, float, float, float, float, float]:
        """``(x, a cos(phi), a sin(phi), s, c, p)`` for the projection kernel."""
        st, a = self.state, self.params.li_amplitude
        return st.x, a * math.cos(st.phi), a * math.sin(st.phi), st.s, st.c, st.p


def add_chemistry_fields(
    volume: ParticleVolume, params: ChemistryParams, rng: np.random.Generator,
    mean_offset: float = 0.0,
) -> None:
    """Attach ``vs, ve, f1, f2, sf`` (float32 voxel fields) to ``volume.fields``.

    ``mean_offset`` shifts this particle's start valence (particle-to-particle spread).
    """
    shape = volume.density.shape
    vox = volume.voxel_um
    length = params.domain_length_um / vox
    smooth = correlated_field(shape, length, rng)
    n_grains = int(volume.grain_id.max()) + 1
    per_grain = rng.standard_normal(max(n_grains, 1)).astype(np.float32)
    grain = np.where(volume.grain_id >= 0, per_grain[np.maximum(volume.grain_id, 0)], 0.0)
    g = math.sqrt(params.grain_share)
    h = math.sqrt(1.0 - params.grain_share)
    inside = volume.density > 0
    weights = volume.density[inside]

    def standardized(field: np.ndarray) -> np.ndarray:
        # Zero Ni-weighted mean and unit spread inside this particle: the particle's
        # mean valence is exactly the preset's, and Li redistribution conserves charge.
        vals = field[inside]
        mean = float(np.average(vals, weights=weights))
        sd = float(np.sqrt(np.average((vals - mean) ** 2, weights=weights)))
        return ((field - mean) / (sd if sd > 0 else 1.0)).astype(np.float32)

    soc = standardized(g * grain + h * smooth)
    vs = params.v_start_mean + mean_offset + params.v_start_sigma * soc
    ve = params.v_end_mean + params.v_end_sigma * standardized(
        correlated_field(shape, length, rng)
    )
    f1 = standardized(correlated_field(shape, length, rng))
    f2 = standardized(correlated_field(shape, length, rng))
    thr = params.surface_patch_threshold
    # E[max(0, F - thr)] for a standard normal F.
    mean_excess = math.exp(-0.5 * thr * thr) / math.sqrt(2 * math.pi) - thr * 0.5 * math.erfc(
        thr / math.sqrt(2)
    )
    patch_field = correlated_field(shape, params.surface_patch_length_um / vox, rng)
    patch = np.maximum(patch_field - thr, 0.0) / mean_excess
    sf = np.exp(-volume.depth_um / params.surface_depth_um) * patch
    for name, arr in (("vs", vs), ("ve", ve), ("f1", f1), ("f2", f2), ("sf", sf)):
        volume.fields[name] = np.where(inside, arr, 0.0).astype(np.float32)
