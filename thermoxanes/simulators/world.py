"""The simulated beamline world: sample, heater, ring, drift and detector on one clock.

``SimWorld`` is what simulated devices talk to. Virtual time only moves through
:meth:`SimWorld.advance` (or the shared :class:`SimClock`; the world catches up with the
clock whenever it is asked anything). Rendering never advances time.

Geometry conventions: frames are (rows, cols) = (y, x); ``shift_px`` and every (2,) pixel
vector are (row, col); ``sample_xy_um`` is (x, y) of the sample stage in um.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thermoxanes.analysis.references import reference_on_grid
from thermoxanes.simulators.beam import Drift, DriftParams, Ring, RingParams
from thermoxanes.simulators.clock import SimClock
from thermoxanes.simulators.detector import (
    _NORMAL_TABLE,
    DetectorParams,
    make_dark_rate,
    make_flat_field,
    render_kernel,
    resample_kernel,
)
from thermoxanes.simulators.heater import Heater, HeaterParams
from thermoxanes.simulators.presets import PRESETS, SimPreset, get_preset
from thermoxanes.simulators.sample import Sample
from thermoxanes.simulators.spectra import FeatureTable

#: Ni path length (um of dense NMC) below which a pixel counts as "no Ni" in the truth.
MIN_NI_PATH_UM = 0.05


@dataclass(frozen=True)
class FrameInfo:
    """What was applied to the last rendered frame (the per-frame ground truth)."""

    time_s: float
    energy_ev: float
    exposure_s: float
    ring_current_ma: float
    temperature_c: float
    #: Sample image shift (row, col) in detector px, drift + jitter + stage + optics.
    shift_px: tuple[float, float]
    #: Flat-field (beam) shift (row, col) in detector px.
    beam_shift_px: tuple[float, float]
    magnification: float
    theta_deg: float
    sample_in: bool
    shutter_open: bool


class SimWorld:
    """A heated sample in a TXM, with ground truth.

    Parameters
    ----------
    preset : SimPreset
    size : int
        Detector frame side (pixels); frames are ``size x size``.
    rng : numpy.random.Generator, optional
        Parent generator; independent child streams drive geometry, flat field, noise and
        the thermocouple. Defaults to ``np.random.default_rng(seed)``.
    seed : int
        Used when ``rng`` is omitted.
    clock : SimClock, optional
        Shared virtual clock; a new one starting at 0 s when omitted.
    model_px : int, optional
        Model grid (voxels across the field of view); ``min(size, 256)`` by default.
    dose : float
        Photon dose relative to the default (scales counts and so the shot noise).
    temperature_c : float
        Initial sample temperature (deg C).
    refresh_tolerance : float
        Largest voxel-valence change (valence units) before a cached projection is
        recomputed; 0 recomputes whenever the chemistry moved.
    """

    def __init__(
        self,
        preset: SimPreset,
        size: int = 512,
        *,
        rng: np.random.Generator | None = None,
        seed: int = 0,
        clock: SimClock | None = None,
        model_px: int | None = None,
        dose: float = 1.0,
        temperature_c: float = 25.0,
        detector: DetectorParams | None = None,
        ring: RingParams | None = None,
        drift: DriftParams | None = None,
        heater: HeaterParams | None = None,
        refresh_tolerance: float = 0.002,
    ) -> None:
        parent = rng if rng is not None else np.random.default_rng(seed)
        g_geom, g_flat, g_noise, g_heat, g_beam = parent.spawn(5)
        self.preset = preset
        self.size = int(size)
        self.clock = clock if clock is not None else SimClock()
        self._time_s = self.clock.now()
        self.dose = float(dose)
        self.refresh_tolerance = float(refresh_tolerance)
        self.detector = detector or DetectorParams()
        mp = int(model_px) if model_px else min(self.size, 256)
        self.sample = Sample(preset, mp, g_geom)
        self.heater = Heater(g_heat, heater, temperature_c=temperature_c)
        self._syncing = False
        self.heater.on_access = self._sync
        self.ring = Ring(ring or RingParams(), g_beam)
        self.drift = Drift(drift or DriftParams(), g_beam)
        shape = (self.size, self.size)
        self.flat_adu = make_flat_field(shape, self.detector, g_flat)
        self.dark_rate_adu_per_s = make_dark_rate(shape, self.detector, g_flat)
        self._noise_rng = g_noise
        self._features: FeatureTable | None = None
        self._od_cache: tuple | None = None
        self.last_frame: FrameInfo | None = None

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_preset(
        cls,
        name: str,
        size: int = 512,
        seed: int = 0,
        clock: SimClock | None = None,
        **kwargs: object,
    ) -> SimWorld:
        """World for the named preset (see :meth:`presets`)."""
        return cls(get_preset(name), size, seed=seed, clock=clock, **kwargs)

    @staticmethod
    def presets() -> list[str]:
        """Names of the available presets."""
        return list(PRESETS)

    # -- geometry ----------------------------------------------------------------------
    @property
    def frame_shape(self) -> tuple[int, int]:
        """Detector frame shape (H, W)."""
        return (self.size, self.size)

    @property
    def pixel_size_um(self) -> float:
        """Detector pixel size on the sample (um) at the reference magnification."""
        return self.preset.fov_um / self.size

    @property
    def energy_calibration_shift_ev(self) -> float:
        """Offset (eV) of the recorded energy scale: spectra sit this much higher."""
        return float(self.preset.calibration_shift_ev)

    # -- time --------------------------------------------------------------------------
    def _sync(self) -> None:
        """Integrate heater and chemistry up to the clock's present."""
        if self._syncing:
            return
        now = self.clock.now()
        remaining = now - self._time_s
        if remaining <= 1e-9:
            return
        self._syncing = True
        try:
            chunk = 10.0
            heater = self.heater
            while remaining > 1e-9:
                dt = min(chunk, remaining)
                heater.advance(dt)
                self.sample.chemistry.advance(dt, heater._sample_c)
                remaining -= dt
            self._time_s = now
        finally:
            self._syncing = False

    def advance(self, dt_s: float) -> None:
        """Advance virtual time by ``dt_s`` (s): heater, chemistry, cracks, protrusions."""
        self.clock.advance(dt_s)
        self._sync()

    @property
    def time_s(self) -> float:
        """Current virtual time (s)."""
        return self.clock.now()

    def ring_current_ma(self) -> float:
        """Storage-ring current (mA) now."""
        return self.ring.current_ma(self.clock.now())

    # -- rendering ---------------------------------------------------------------------
    def _scales(self, magnification: float, shift_um: np.ndarray) -> tuple[float, ...]:
        m = self.sample.model_px
        px = self.pixel_size_um
        vox = self.sample.voxel_um
        k = px / (magnification * vox)
        half = self.size / 2.0
        # Detector pixel centre (i + 0.5 - H/2) px -> sample plane, minus the shift.
        off_r = (0.5 - half) * k - shift_um[1] / vox + m / 2.0 - 0.5
        off_c = (0.5 - half) * k - shift_um[0] / vox + m / 2.0 - 0.5
        return k, k, off_r, off_c

    def _transmission(self, theta_deg: float, energy_ev: float) -> np.ndarray:
        proj = self.sample.cached_projection(theta_deg, self.refresh_tolerance)
        key = (id(proj), round(float(energy_ev), 6))
        if self._od_cache is not None and self._od_cache[0] == key:
            return self._od_cache[1]
        od = self.sample.optical_density(proj, energy_ev, self.energy_calibration_shift_ev)
        tr = np.exp(-od).astype(np.float32)
        self._od_cache = (key, tr, proj)
        return tr

    def render_frame(
        self,
        energy_ev: float,
        *,
        exposure_s: float,
        sample_in: bool = True,
        shutter_open: bool = True,
        theta_deg: float = 0.0,
        sample_xy_um: tuple[float, float] = (0.0, 0.0),
    ) -> np.ndarray:
        """One raw camera frame (H, W) uint16 at the current virtual time.

        Parameters
        ----------
        energy_ev : float
            Monochromator energy (eV).
        exposure_s : float
            Exposure time (s); counts scale with it and with the ring current.
        sample_in : bool
            False: the sample is moved out of the beam (a flat-field frame).
        shutter_open : bool
            False: a dark frame (offset, dark current, hot pixels, read noise).
        theta_deg : float
            Rotation-stage angle (deg) about the vertical axis.
        sample_xy_um : (float, float)
            Sample-stage (x, y) offset (um); moves the image.
        """
        self._sync()
        d = self.detector
        t = self.clock.now()
        temp = self.heater.temperature_c
        ring_ma = self.ring.current_ma(t)
        dp = self.drift.params
        mag = self.drift.magnification(energy_ev)
        jitter_um = self._noise_rng.normal(0.0, dp.sample_jitter_um, 2)
        beam_px = self.drift.beam_px(t) + self._noise_rng.normal(0.0, dp.beam_jitter_px, 2)
        shift_um = (
            self.drift.sample_um(t, temp)
            + self.drift.energy_shift_um(energy_ev)
            + jitter_um
            + np.asarray(sample_xy_um, dtype=np.float64)
        )
        if sample_in and shutter_open:
            tr = self._transmission(theta_deg, energy_ev)
        else:
            tr = np.ones((2, 2), dtype=np.float32)
        sr, sc, orr, oc = self._scales(mag, shift_um)
        scale = (
            exposure_s / d.reference_exposure_s * ring_ma / self.ring.params.nominal_ma
        ) * self.dose
        out = np.empty(self.frame_shape, dtype=np.uint16)
        seed = int(self._noise_rng.integers(0, 2**63 - 1))
        render_kernel(
            out, tr, self.flat_adu, self.dark_rate_adu_per_s, _NORMAL_TABLE, seed,
            sr, sc, orr, oc, float(beam_px[1]), float(beam_px[0]),
            float(scale), d.photons_per_adu, float(exposure_s),
            d.dark_offset_adu, d.read_noise_adu, float(d.saturation_adu),
            bool(sample_in), bool(shutter_open),
        )
        px = self.pixel_size_um
        self.last_frame = FrameInfo(
            time_s=t,
            energy_ev=float(energy_ev),
            exposure_s=float(exposure_s),
            ring_current_ma=ring_ma,
            temperature_c=temp,
            shift_px=(float(shift_um[1] / px * mag), float(shift_um[0] / px * mag)),
            beam_shift_px=(float(beam_px[1]), float(beam_px[0])),
            magnification=mag,
            theta_deg=float(theta_deg),
            sample_in=bool(sample_in),
            shutter_open=bool(shutter_open),
        )
        return out

    def foil_absorbance(
        self, energies_ev: np.ndarray, *, noise_od: float = 0.002
    ) -> np.ndarray:
        """Ni metal foil absorbance (transmission, arbitrary offset) on the beamline axis.

        The calibration standard of the beamline: the tabulated foil spectrum (edge
        8333.0 eV) shifted by :attr:`energy_calibration_shift_ev`, with Gaussian noise of
        ``noise_od`` (OD, rms) from the world's generator. Does not advance time.
        """
        e = np.asarray(energies_ev, dtype=np.float64)
        mu = reference_on_grid("Ni_foil", e, self.energy_calibration_shift_ev)
        return mu + noise_od * self._noise_rng.standard_normal(e.shape)

    # -- ground truth ------------------------------------------------------------------
    def feature_table(self) -> FeatureTable:
        """Edge / white-line table for this world's calibration shift (built once)."""
        if self._features is None:
            self._features = FeatureTable(
                self.energy_calibration_shift_ev, self.preset.optics.resolution_fwhm_ev
            )
        return self._features

    def drift_um(self) -> np.ndarray:
        """Current slow sample drift (x, y) in um (no frame jitter, no optics term)."""
        self._sync()
        return self.drift.sample_um(self.clock.now(), self.heater.temperature_c)

    def truth(
        self,
        energies_ev: np.ndarray | None = None,
        *,
        theta_deg: float = 0.0,
        sample_xy_um: tuple[float, float] = (0.0, 0.0),
    ) -> dict[str, np.ndarray]:
        """Ground truth in detector pixels now, for the current slow drift.

        Returns
        -------
        dict
            ``valence`` (H, W) float32: Ni-weighted mean valence along the ray (what
            linear-combination fitting of the projected absorbance returns), NaN where the
            Ni path is below 0.05 um. ``edge_energy`` and ``whiteline_energy`` (eV): the
            half-step crossing and the white-line peak of the noise-free normalized
            spectrum (monochromator resolution and calibration shift included), NaN
            outside. ``thickness_um``: dense-NMC path length; ``li_thickness_um``: Li
            compound path; ``ni_edge_jump_od``; ``mask`` (bool); ``shift_px`` (2,) (row,
            col) slow drift in detector pixels; ``calibration_shift_ev``;
            ``temperature_c``; ``time_s``. With ``energies_ev``: ``absorbance`` (E, H, W)
            noise-free optical density, same geometry.
        """
        self._sync()
        proj = self.sample.cached_projection(theta_deg, self.refresh_tolerance)
        shift_um = self.drift_um() + np.asarray(sample_xy_um, dtype=np.float64)
        sr, sc, orr, oc = self._scales(1.0, shift_um)
        maps = np.empty((proj.shape[0],) + self.frame_shape, dtype=np.float32)
        resample_kernel(maps, proj, sr, sc, orr, oc)
        w = maps[:3]
        ni_path = w[0] + w[1] + w[2]
        mask = ni_path >= MIN_NI_PATH_UM
        masked = np.where(mask[None], w, np.float32(0.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            valence = ((2.0 * w[0] + 3.0 * w[1] + 4.0 * w[2]) / ni_path).astype(np.float32)
        valence[~mask] = np.nan
        edge, wl = self.feature_table().lookup(masked)
        px = self.pixel_size_um
        out: dict[str, np.ndarray] = {
            "valence": valence,
            "edge_energy": edge.astype(np.float32),
            "whiteline_energy": wl.astype(np.float32),
            "thickness_um": maps[3].copy(),
            "li_thickness_um": maps[4].copy(),
            "ni_edge_jump_od": (self.preset.optics.ni_jump_per_um * ni_path).astype(np.float32),
            "mask": mask,
            "shift_px": np.array([shift_um[1] / px, shift_um[0] / px], dtype=np.float64),
            "calibration_shift_ev": np.float64(self.energy_calibration_shift_ev),
            "temperature_c": np.float64(self.heater.temperature_c),
            "time_s": np.float64(self.clock.now()),
        }
        if energies_ev is not None:
            e = np.atleast_1d(np.asarray(energies_ev, dtype=np.float64))
            od_model = np.stack(
                [self.sample.optical_density(proj, float(en), self.energy_calibration_shift_ev)
                 for en in e]
            ).astype(np.float32)
            od = np.empty((e.size,) + self.frame_shape, dtype=np.float32)
            resample_kernel(od, od_model, sr, sc, orr, oc)
            out["absorbance"] = od
        return out

    def __repr__(self) -> str:
        return (
            f"SimWorld(preset={self.preset.name!r}, size={self.size}, "
            f"t={self.clock.now():.1f} s, T={self.heater.temperature_c:.1f} C)"
        )
