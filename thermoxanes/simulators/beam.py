"""Beam and stage: storage-ring current with top-up, sample and beam drift.

Everything here is a deterministic function of virtual time (and temperature), drawn once
from the seed, so that rendering a frame never advances time; the per-frame jitter is
drawn by the detector from the world's generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RingParams:
    """Storage ring (NSLS-II-like top-up)."""

    nominal_ma: float = 400.0
    lifetime_s: float = 10.0 * 3600.0
    #: Top-up period (s); <= 0 for a decay-mode fill without top-up.
    topup_period_s: float = 120.0
    #: Injection scatter of the topped-up current (mA, rms).
    topup_scatter_ma: float = 0.3


class Ring:
    """Ring current versus virtual time: exponential decay, restored at each top-up.

    Parameters
    ----------
    params : RingParams
    rng : numpy.random.Generator
        Draws the phase of the top-up cycle and the injection scatter table.
    """

    def __init__(self, params: RingParams, rng: np.random.Generator) -> None:
        self.params = params
        self._phase_s = float(rng.uniform(0, max(params.topup_period_s, 1.0)))
        self._scatter = rng.standard_normal(4096) * params.topup_scatter_ma

    def current_ma(self, time_s: float) -> float:
        """Ring current (mA) at ``time_s`` (s)."""
        p = self.params
        if p.topup_period_s <= 0:
            return p.nominal_ma * math.exp(-time_s / p.lifetime_s)
        t = time_s + self._phase_s
        cycle = int(t // p.topup_period_s)
        since = t - cycle * p.topup_period_s
        start = p.nominal_ma + self._scatter[cycle % self._scatter.size]
        return start * math.exp(-since / p.lifetime_s)


@dataclass(frozen=True)
class DriftParams:
    """Sample and beam drift (lengths in um on the sample, beam in detector pixels)."""

    #: Slow wander of the sample (um, amplitude per axis) with periods 5-60 min.
    sample_wander_um: float = 0.15
    #: Thermal expansion of the holder: sample shift per K above 25 C (um/K), (x, y).
    thermal_um_per_k: tuple[float, float] = (0.0015, -0.0025)
    #: Random frame-to-frame jitter of the sample (um, rms).
    sample_jitter_um: float = 0.02
    #: Beam (flat-field pattern) wander (detector px, amplitude) and jitter (px, rms).
    beam_wander_px: float = 1.5
    beam_jitter_px: float = 0.08
    #: Image shift with energy from zone-plate/mono motion (um per keV from 8.33 keV).
    energy_shift_um_per_kev: tuple[float, float] = (0.12, -0.08)
    #: Residual magnification change with energy (relative, per keV).
    magnification_per_kev: float = 0.004


class Drift:
    """Deterministic sample and beam drift versus time and temperature."""

    def __init__(self, params: DriftParams, rng: np.random.Generator) -> None:
        self.params = params
        self._periods = rng.uniform(300.0, 3600.0, (2, 2, 3))
        self._phases = rng.uniform(0, 2 * math.pi, (2, 2, 3))
        self._weights = rng.uniform(0.3, 1.0, (2, 2, 3))
        self._weights /= self._weights.sum(axis=2, keepdims=True)

    def _wander(self, which: int, time_s: float) -> np.ndarray:
        arg = 2 * math.pi * time_s / self._periods[which] + self._phases[which]
        return (self._weights[which] * np.sin(arg)).sum(axis=1)

    def sample_um(self, time_s: float, temperature_c: float) -> np.ndarray:
        """Sample drift (x, y) in um at ``time_s`` and ``temperature_c``."""
        p = self.params
        thermal = np.asarray(p.thermal_um_per_k) * (temperature_c - 25.0)
        return p.sample_wander_um * self._wander(0, time_s) + thermal

    def beam_px(self, time_s: float) -> np.ndarray:
        """Beam (flat pattern) drift (x, y) in detector pixels at ``time_s``."""
        return self.params.beam_wander_px * self._wander(1, time_s)

    def energy_shift_um(self, energy_ev: float) -> np.ndarray:
        """Image shift (x, y) in um from optics motion at ``energy_ev``."""
        de_kev = (energy_ev - 8333.0) / 1000.0
        return np.asarray(self.params.energy_shift_um_per_kev) * de_kev

    def magnification(self, energy_ev: float) -> float:
        """Relative magnification (1 at 8333 eV) at ``energy_ev``."""
        return 1.0 + self.params.magnification_per_kev * (energy_ev - 8333.0) / 1000.0
