"""Zone-plate and detector positions versus energy: lens equations plus calibration points.

Pure numpy, shared by :class:`~thermoxanes.devices.motion.FocusingMonochromator` and tests.
The lens equations (``thermoxanes.optics``) give the sample-to-zone-plate distance ``p`` and
the zone-plate-to-detector distance ``q`` for a constant magnification; motor positions
differ from them by mechanical offsets, and real optics deviate a little from the ideal
lens. Calibration points (energy, zone-plate position, detector position) measured at the
beamline fix that: the residual (measured minus lens equation) is taken constant through
one point and linear in energy through two or more (least squares), as the FXI beamline
interpolates between two calibration points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from thermoxanes.optics import focus_positions_mm


@dataclass(frozen=True)
class CalibrationPoint:
    """Motor positions found in focus at one energy."""

    energy_ev: float
    zoneplate_mm: float
    detector_mm: float


@dataclass(frozen=True)
class FocusCalibration:
    """Zone-plate and detector motor positions (mm) as a function of energy (eV).

    Parameters
    ----------
    magnification : float
        Magnification kept constant on energy moves.
    diameter_um : float
        Zone-plate diameter (µm).
    outer_zone_nm : float
        Outermost zone width (nm).
    zoneplate_offset_mm, detector_offset_mm : float
        Motor position minus ideal distance (mm) when there are no calibration points.
    points : sequence of CalibrationPoint
        Measured in-focus positions; they override the offsets (see module docstring).
    """

    magnification: float = 50.0
    diameter_um: float = 244.0
    outer_zone_nm: float = 30.0
    zoneplate_offset_mm: float = 0.0
    detector_offset_mm: float = 0.0
    points: tuple[CalibrationPoint, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.magnification <= 0:
            raise ValueError(f"magnification must be positive, got {self.magnification}")
        energies = [p.energy_ev for p in self.points]
        if len(set(energies)) != len(energies):
            raise ValueError(f"calibration points repeat an energy: {energies}")

    @classmethod
    def from_points(cls, points: Sequence[dict | CalibrationPoint], **kwargs) -> FocusCalibration:
        """Build from dicts with ``energy_ev``, ``zoneplate_mm`` and ``detector_mm``."""
        pts = tuple(p if isinstance(p, CalibrationPoint) else CalibrationPoint(**p)
                    for p in points)
        return cls(points=pts, **kwargs)

    def ideal_mm(self, energy_ev: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lens-equation distances ``p`` and ``q`` (mm) at ``energy_ev`` (eV)."""
        p, q = focus_positions_mm(energy_ev, self.magnification, self.diameter_um,
                                  self.outer_zone_nm)
        return np.asarray(p, dtype=float), np.asarray(q, dtype=float)

    def _residual(self, energy_ev: np.ndarray, which: int) -> np.ndarray:
        if not self.points:
            offset = self.zoneplate_offset_mm if which == 0 else self.detector_offset_mm
            return np.full_like(energy_ev, offset, dtype=float)
        e = np.array([p.energy_ev for p in self.points], dtype=float)
        measured = np.array([(p.zoneplate_mm, p.detector_mm)[which] for p in self.points])
        residual = measured - self.ideal_mm(e)[which]
        if len(self.points) == 1:
            return np.full_like(energy_ev, residual[0], dtype=float)
        slope, intercept = np.polyfit(e, residual, 1)
        return intercept + slope * energy_ev

    def positions_mm(self, energy_ev: float | np.ndarray) -> tuple[float, float]:
        """Zone-plate and detector motor positions (mm) that keep focus at ``energy_ev``."""
        e = np.asarray(energy_ev, dtype=float)
        p, q = self.ideal_mm(e)
        zp = p + self._residual(e, 0)
        det = q + self._residual(e, 1)
        if zp.ndim == 0:
            return float(zp), float(det)
        return zp, det
