"""Fit settings for the per-pixel XANES analysis, with Ni K-edge defaults.

All energies are in eV. Windows are closed intervals ``(low_ev, high_ev)`` on the
energy axis of the stack.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

WHITELINE_METHODS = ("quadratic", "gaussian", "trig_poly")
#: Smallest pre-edge noise ``sigma_pre`` of the edge-jump mask, relative to the pre-edge
#: line at ``norm_e0_ev``: float32 sums resolve the jump to about 1e-7 of the
#: absorbance, so a flat, noise-free spectrum (a jump of rounding size, no scatter) is
#: not kept. Counting noise is always far above it.
SIGMA_PRE_FLOOR = 1e-6


@dataclass(frozen=True)
class FitConfig:
    """Settings of :func:`thermoxanes.analysis.fit.fit_stack`.

    Attributes
    ----------
    pre_edge_ev : tuple of float
        Window (eV) of the pre-edge line fit.
    post_edge_ev : tuple of float
        Window (eV) of the post-edge line fit.
    edge_window_ev : tuple of float
        Window (eV) searched for the first rise of the normalized spectrum through 0.5.
    whiteline_window_ev : tuple of float
        Window (eV) searched for the white-line maximum.
    norm_e0_ev : float
        Nominal edge energy E0 (eV) at which the edge jump
        ``post(E0) - pre(E0)`` is evaluated (fixed, so that it is linear in mu).
    whiteline_method : {"quadratic", "gaussian", "trig_poly"}
        Peak model of the white line: parabola (or Gaussian, a parabola in log) fitted
        around the maximum with biweight weights of radius ``whiteline_halfwidth_ev``,
        re-centred on its vertex until it stays; or a second-order polynomial plus one
        sine/cosine period fitted over the whole white-line window.
    whiteline_halfwidth_ev : float
        Radius (eV) of the weights of the quadratic / Gaussian peak fit: points closer
        to the centre than this count, with weight ``(1 - (dE/radius)^2)^2``.
    jump_k_sigma : float
        Mask: ``edge_jump > jump_k_sigma * sigma_pre`` (pre-edge residual noise).
    lcf_window_ev : tuple of float
        Window (eV) of the linear combination fit (valence), with a free linear
        background.
    calibration_shift_ev : float
        Energy-calibration offset (eV) of the sample's energy axis, added to the reference
        spectra of the linear combination fit (see
        :func:`thermoxanes.analysis.calibration.calibrate_from_foil`).
    register : bool
        Register frames across energies (sub-pixel phase correlation) before fitting.
    upsample : int
        Sub-pixel upsampling factor of the phase correlation (1/upsample pixel).
    gain_adu_per_photon : float
        Detector gain (ADU per detected photon) for the Poisson variance of raw counts.
    max_valence_sigma : float
        Mask: pixels whose valence uncertainty exceeds this (valence units) are left out
        of every map. Where the Ni edge is barely above the noise the linear combination
        fit's valence is a ratio of two noisy numbers and can run to any value; such a
        pixel says nothing about the chemistry. ``inf`` keeps them.
    """

    pre_edge_ev: tuple[float, float] = (8200.0, 8320.0)
    post_edge_ev: tuple[float, float] = (8370.0, 8630.0)
    edge_window_ev: tuple[float, float] = (8330.0, 8350.0)
    whiteline_window_ev: tuple[float, float] = (8340.0, 8360.0)
    norm_e0_ev: float = 8341.0
    whiteline_method: str = "quadratic"
    whiteline_halfwidth_ev: float = 4.0
    jump_k_sigma: float = 3.0
    lcf_window_ev: tuple[float, float] = (8300.0, 8420.0)
    calibration_shift_ev: float = 0.0
    register: bool = True
    upsample: int = 20
    gain_adu_per_photon: float = 1.0
    max_valence_sigma: float = 0.5

    def __post_init__(self) -> None:
        for name in ("pre_edge_ev", "post_edge_ev", "edge_window_ev", "whiteline_window_ev",
                     "lcf_window_ev"):
            lo, hi = (float(v) for v in getattr(self, name))
            if not lo < hi:
                raise ValueError(f"FitConfig.{name}: low {lo} must be below high {hi}")
            object.__setattr__(self, name, (lo, hi))
        if self.whiteline_method not in WHITELINE_METHODS:
            raise ValueError(
                f"FitConfig.whiteline_method: {self.whiteline_method!r} is not one of "
                f"{', '.join(WHITELINE_METHODS)}"
            )
        if self.pre_edge_ev[1] >= min(self.edge_window_ev[0], self.whiteline_window_ev[0]):
            raise ValueError("FitConfig.pre_edge_ev must end below the edge and white-line windows")
        if self.post_edge_ev[0] <= max(self.edge_window_ev[1], self.whiteline_window_ev[1]):
            raise ValueError("FitConfig.post_edge_ev must start above the edge and white-line "
                             "windows")
        if self.upsample < 1:
            raise ValueError(f"FitConfig.upsample: {self.upsample} must be >= 1")
        if self.gain_adu_per_photon <= 0:
            raise ValueError(
                f"FitConfig.gain_adu_per_photon: {self.gain_adu_per_photon} must be > 0"
            )
        if not self.max_valence_sigma > 0:
            raise ValueError(
                f"FitConfig.max_valence_sigma: {self.max_valence_sigma} must be > 0")
        if self.whiteline_halfwidth_ev <= 0:
            raise ValueError("FitConfig.whiteline_halfwidth_ev must be > 0")

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-serializable dict (tuples become lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitConfig:
        """Build a config from :meth:`to_dict` output; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"FitConfig: unknown settings {sorted(unknown)}")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})
