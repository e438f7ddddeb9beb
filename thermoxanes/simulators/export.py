"""Simulated sweeps, and writing them in the FXI / TXM-Sandbox 2D XANES HDF5 layout.

Layout written by :func:`simulate_to_fxi`::

    /img_xanes  (E, H, W) uint16   raw sample frames
    /img_bkg    (E, H, W) uint16   flat (sample out) per energy, n_flat averaged
    /img_dark   (N, H, W) uint16   darks (shutter closed)
    /X_eng      (E,) float64       energies (keV)
    /truth/...                     ground truth (see :meth:`SimWorld.truth`), plus
                                   applied per-frame shifts and ring currents
"""

from __future__ import annotations

from dataclasses import asdict
from os import PathLike

import h5py
import numpy as np

from thermoxanes.simulators.world import SimWorld


def default_energies_ev() -> np.ndarray:
    """The seed-001 style Ni K-edge grid (eV): 10 eV steps outside 8330-8355, 1 eV inside.

    67 energies from 8200 to 8630 eV.
    """
    return np.concatenate(
        [np.arange(8200.0, 8330.0, 10.0), np.arange(8330.0, 8356.0, 1.0),
         np.arange(8360.0, 8631.0, 10.0)]
    )


def heat_to(
    world: SimWorld,
    temperature_c: float,
    *,
    ramp_rate_c_per_min: float = 5.0,
    hold_s: float = 1500.0,
) -> None:
    """Ramp the heater to ``temperature_c`` (deg C) and hold ``hold_s`` (s) of virtual time."""
    h = world.heater
    h.ramp_rate_c_per_min = ramp_rate_c_per_min
    h.setpoint_c = temperature_c
    h.output_on = True
    ramp_s = abs(temperature_c - h.target_c) / max(ramp_rate_c_per_min, 1e-9) * 60.0
    world.advance(ramp_s + hold_s)


def acquire_sweep(
    world: SimWorld,
    energies_ev: np.ndarray | None = None,
    *,
    exposure_s: float = 0.3,
    n_flat: int = 1,
    n_dark: int = 5,
    frame_interval_s: float = 0.0,
    theta_deg: float = 0.0,
) -> dict[str, object]:
    """Record one XANES sweep the way FXI does (flats with the sample moved out).

    Parameters
    ----------
    world : SimWorld
    energies_ev : array_like, optional
        Energies (eV); :func:`default_energies_ev` when omitted.
    exposure_s : float
        Exposure per frame (s).
    n_flat : int
        Flats per energy, averaged (rounded to uint16).
    n_dark : int
        Darks taken at the start.
    frame_interval_s : float
        Virtual time advanced after every frame (s); 0 keeps the sample frozen.
    theta_deg : float
        Rotation angle (deg).

    Returns
    -------
    dict
        ``img_xanes``, ``img_bkg``, ``img_dark`` (uint16), ``energies_ev``, ``truth``
        (:meth:`SimWorld.truth` at the start of the sweep), ``shift_px`` (E, 2) applied
        sample shifts, ``ring_current_ma`` (E,), ``time_s`` (E,).
    """
    e = default_energies_ev() if energies_ev is None else np.asarray(energies_ev, float)
    h, w = world.frame_shape
    truth = world.truth(theta_deg=theta_deg)
    darks = np.empty((n_dark, h, w), dtype=np.uint16)
    for k in range(n_dark):
        darks[k] = world.render_frame(e[0], exposure_s=exposure_s, shutter_open=False)
        world.advance(frame_interval_s)
    xanes = np.empty((e.size, h, w), dtype=np.uint16)
    bkg = np.empty((e.size, h, w), dtype=np.uint16)
    shifts = np.empty((e.size, 2))
    ring = np.empty(e.size)
    times = np.empty(e.size)
    for i, en in enumerate(e):
        xanes[i] = world.render_frame(float(en), exposure_s=exposure_s, theta_deg=theta_deg)
        info = world.last_frame
        shifts[i] = info.shift_px
        ring[i] = info.ring_current_ma
        times[i] = info.time_s
        world.advance(frame_interval_s)
        acc = np.zeros((h, w), dtype=np.float64)
        for _ in range(max(n_flat, 1)):
            acc += world.render_frame(float(en), exposure_s=exposure_s, sample_in=False)
            world.advance(frame_interval_s)
        bkg[i] = np.round(acc / max(n_flat, 1)).astype(np.uint16)
    return {
        "img_xanes": xanes,
        "img_bkg": bkg,
        "img_dark": darks,
        "energies_ev": e,
        "truth": truth,
        "shift_px": shifts,
        "ring_current_ma": ring,
        "time_s": times,
    }


def write_fxi(path: str | PathLike, sweep: dict, attrs: dict | None = None) -> None:
    """Write a sweep from :func:`acquire_sweep` in the FXI layout, truth under ``/truth``."""
    with h5py.File(path, "w") as fh:
        fh.create_dataset("img_xanes", data=sweep["img_xanes"], chunks=True, compression="lzf")
        fh.create_dataset("img_bkg", data=sweep["img_bkg"], chunks=True, compression="lzf")
        fh.create_dataset("img_dark", data=sweep["img_dark"], chunks=True, compression="lzf")
        fh.create_dataset("X_eng", data=np.asarray(sweep["energies_ev"]) / 1000.0)
        g = fh.create_group("truth")
        for key, value in sweep["truth"].items():
            g.create_dataset(key, data=value)
        g.create_dataset("frame_shift_px", data=sweep["shift_px"])
        g.create_dataset("ring_current_ma", data=sweep["ring_current_ma"])
        g.create_dataset("frame_time_s", data=sweep["time_s"])
        g.attrs["description"] = (
            "ground truth from thermoxanes.simulators: maps in detector pixels at the sweep "
            "start with the slow drift only; frame_shift_px (E, 2) (row, col) is the shift "
            "applied to each sample frame (drift, jitter, optics)"
        )
        for key, value in (attrs or {}).items():
            fh.attrs[key] = value


def simulate_to_fxi(
    preset: str,
    path: str | PathLike,
    size: int = 512,
    seed: int = 0,
    temperature_c: float = 25.0,
    *,
    energies_ev: np.ndarray | None = None,
    exposure_s: float = 0.3,
    n_flat: int = 1,
    n_dark: int = 5,
    hold_s: float = 1500.0,
    ramp_rate_c_per_min: float = 5.0,
    frame_interval_s: float = 0.0,
    dose: float = 1.0,
) -> dict[str, object]:
    """Simulate one sweep of ``preset`` at ``temperature_c`` and write it to ``path``.

    The sample starts at 25 C, is ramped to ``temperature_c`` at ``ramp_rate_c_per_min``
    and held ``hold_s`` (s) before the sweep (no heating when ``temperature_c`` <= 25).

    Returns
    -------
    dict
        The sweep (see :func:`acquire_sweep`).
    """
    world = SimWorld.from_preset(preset, size=size, seed=seed, dose=dose)
    if temperature_c > 25.0:
        heat_to(world, temperature_c, ramp_rate_c_per_min=ramp_rate_c_per_min, hold_s=hold_s)
    sweep = acquire_sweep(
        world, energies_ev, exposure_s=exposure_s, n_flat=n_flat, n_dark=n_dark,
        frame_interval_s=frame_interval_s,
    )
    attrs = {
        "simulator": "thermoxanes.simulators",
        "preset": preset,
        "seed": seed,
        "temperature_c": float(world.heater.temperature_c),
        "time_s": float(world.clock.now()),
        "pixel_size_um": world.pixel_size_um,
        "exposure_s": exposure_s,
        "gain_adu_per_photon": 1.0 / world.detector.photons_per_adu,
        "calibration_shift_ev": world.energy_calibration_shift_ev,
        "detector": str(asdict(world.detector)),
    }
    write_fxi(path, sweep, attrs)
    return sweep
