"""Accuracy of the per-pixel fit on synthetic stacks with known truth; prints JSON.

Stacks: ``background + thickness * (nonresonant E^-3 + spectrum_for_valence(v))`` on the
68-point Ni K-edge grid, valences uniform in [2, 4], Poisson counts at three doses
(photons per pixel per frame in the flat; 5 flats averaged), corrected to absorbance
with the propagated counting variance.

Figures, per dose:

* valence RMS error of the linear combination fit (``lcf``) and of the 0.5-crossing
  route (edge energy converted to valence through the noise-free calibration curve
  E_0.5(v)), and their ratio;
* edge-energy bias (mean of estimate - true 0.5 crossing) and RMS;
* for every map, the std of (estimate - noise-free estimate) / sigma, and the robust
  std (1.4826 MAD), target 0.8-1.25;

and, noise-free, the edge-energy bias against the 0.5 crossing of the continuous
spectrum (fine grid, same pre/post lines): target at most 0.05 eV. A last case shifts
the sample's energy axis by 0.8 eV and recovers it from a simulated Ni foil.

Usage: ``python benchmarks/bench_accuracy.py [--size 48] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.analysis.synthetic import (  # noqa: E402
    energy_grid_ev,
    synthetic_counts,
    synthetic_mu,
)
from thermoxanes.analysis.calibration import calibrate_from_foil  # noqa: E402
from thermoxanes.analysis.config import FitConfig  # noqa: E402
from thermoxanes.analysis.correction import correct_counts  # noqa: E402
from thermoxanes.analysis.fit import fit_stack  # noqa: E402
from thermoxanes.analysis.references import load_reference  # noqa: E402

THICKNESS = 0.3
NONRESONANT = 0.6
BACKGROUND = 0.3
DOSES = (2_000.0, 20_000.0, 200_000.0)
MAPS = ("valence", "edge_energy", "whiteline_energy", "edge_jump")


def true_edge_energy(energies_ev: np.ndarray, valence: np.ndarray, cfg: FitConfig,
                     shift_ev: float = 0.0) -> np.ndarray:
    """0.5 crossing of the continuous noise-free spectrum, normalized with the pre/post
    lines fitted on the measurement grid (the definition, without sampling error)."""
    fine = np.arange(cfg.edge_window_ev[0], cfg.edge_window_ev[1] + 1e-9, 0.001)
    mu_grid = synthetic_mu(energies_ev, valence, THICKNESS, shift_ev=shift_ev,
                           background=BACKGROUND, nonresonant=NONRESONANT)
    mu_fine = synthetic_mu(fine, valence, THICKNESS, shift_ev=shift_ev,
                           background=BACKGROUND, nonresonant=NONRESONANT)
    pre = (energies_ev >= cfg.pre_edge_ev[0]) & (energies_ev <= cfg.pre_edge_ev[1])
    post = (energies_ev >= cfg.post_edge_ev[0]) & (energies_ev <= cfg.post_edge_ev[1])
    n = valence.size
    y = mu_grid.reshape(energies_ev.size, n)
    c_pre = np.polyfit(energies_ev[pre], y[pre], 1)
    c_post = np.polyfit(energies_ev[post], y[post], 1)
    e0 = cfg.norm_e0_ev
    jump = np.polyval(c_post, e0) - np.polyval(c_pre, e0)
    norm = (mu_fine.reshape(fine.size, n) - (fine[:, None] * c_pre[0] + c_pre[1])) / jump
    hit = (norm[:-1] < 0.5) & (norm[1:] >= 0.5)
    k = np.argmax(hit, axis=0)
    cols = np.arange(n)
    a, b = norm[k, cols], norm[k + 1, cols]
    e_x = fine[k] + (0.5 - a) / (b - a) * (fine[k + 1] - fine[k])
    return np.where(hit.any(axis=0), e_x, np.nan).reshape(valence.shape)


def pull_stats(est: np.ndarray, ref: np.ndarray, sigma: np.ndarray) -> dict:
    pull = (est.astype(np.float64) - ref) / sigma
    pull = pull[np.isfinite(pull)]
    mad = np.median(np.abs(pull - np.median(pull)))
    return {"std": float(np.std(pull)), "robust_std": float(1.4826 * mad),
            "mean": float(np.mean(pull)), "n": int(pull.size)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=48, help="pixels per side per dose")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    energies_ev = energy_grid_ev()
    cfg = FitConfig(register=False)
    shape = (args.size, args.size)
    valence = rng.uniform(2.0, 4.0, shape)

    # Noise-free: exact valence, edge energy against the continuous definition.
    mu_clean = synthetic_mu(energies_ev, valence, THICKNESS, background=BACKGROUND,
                            nonresonant=NONRESONANT)
    clean = fit_stack(mu_clean.astype(np.float32), energies_ev, cfg)
    e_true = true_edge_energy(energies_ev, valence, cfg)
    bias = clean.edge_energy - e_true
    result: dict = {
        "grid_points": int(energies_ev.size),
        "pixels_per_dose": int(valence.size),
        "thickness": THICKNESS,
        "noise_free": {
            "valence_max_abs_error": float(np.nanmax(np.abs(clean.valence - valence))),
            "edge_energy_bias_mean_ev": float(np.nanmean(bias)),
            "edge_energy_bias_max_abs_ev": float(np.nanmax(np.abs(bias))),
        },
    }

    # Calibration curve of the crossing route: E_0.5(v), noise-free, same definition.
    v_cal = np.linspace(1.9, 4.1, 221)[None, :]
    cal = fit_stack(synthetic_mu(energies_ev, v_cal, THICKNESS, background=BACKGROUND,
                                 nonresonant=NONRESONANT).astype(np.float32), energies_ev, cfg)
    e_cal = cal.edge_energy[0].astype(np.float64)
    order = np.argsort(e_cal)

    doses = []
    for dose in DOSES:
        sample, flat, dark = synthetic_counts(rng, mu_clean, dose, n_flat=5)
        mu, var, _ = correct_counts(sample, flat, dark, n_flat=5)
        maps = fit_stack(mu, energies_ev, cfg, variance=var)
        m = maps.mask
        v_lcf = maps.valence[m].astype(np.float64)
        v_cross = np.interp(maps.edge_energy[m], e_cal[order], v_cal[0][order])
        ok = np.isfinite(v_lcf) & np.isfinite(v_cross)
        rms_lcf = float(np.sqrt(np.mean((v_lcf[ok] - valence[m][ok]) ** 2)))
        rms_cross = float(np.sqrt(np.mean((v_cross[ok] - valence[m][ok]) ** 2)))
        e_err = maps.edge_energy[m] - e_true[m]
        entry = {
            "flat_photons_per_pixel": dose,
            "mask_fraction": float(m.mean()),
            "valence_rms_lcf": rms_lcf,
            "valence_rms_crossing": rms_cross,
            "crossing_over_lcf_rms": rms_cross / rms_lcf,
            "valence_sigma_median": float(np.nanmedian(maps.valence_sigma[m])),
            "edge_energy_bias_ev": float(np.nanmean(e_err)),
            "edge_energy_rms_ev": float(np.sqrt(np.nanmean(e_err**2))),
            "pulls": {
                name: pull_stats(getattr(maps, name)[m], getattr(clean, name)[m],
                                 getattr(maps, name + "_sigma")[m])
                for name in MAPS
            },
        }
        entry["pulls"]["valence_vs_truth"] = pull_stats(maps.valence[m], valence[m],
                                                        maps.valence_sigma[m])
        doses.append(entry)
    result["doses"] = doses

    # Energy-calibration offset: sample axis off by +0.8 eV, recovered from a Ni foil.
    shift = 0.8
    e_ref, mu_ref = load_reference("Ni_foil")
    foil = 0.1 + np.interp(energies_ev - shift, e_ref, mu_ref)
    found = calibrate_from_foil(energies_ev, foil)
    mu_shift = synthetic_mu(energies_ev, valence, THICKNESS, shift_ev=shift,
                            background=BACKGROUND, nonresonant=NONRESONANT).astype(np.float32)
    plain = fit_stack(mu_shift, energies_ev, cfg)
    calibrated = fit_stack(mu_shift, energies_ev,
                           FitConfig(register=False, calibration_shift_ev=found))
    result["calibration"] = {
        "true_shift_ev": shift,
        "foil_shift_ev": found,
        "valence_rms_uncalibrated": float(np.sqrt(np.nanmean((plain.valence - valence) ** 2))),
        "valence_rms_calibrated": float(np.sqrt(np.nanmean((calibrated.valence - valence) ** 2))),
    }
    worst_pull = {
        name: [d["pulls"][name]["std"] for d in doses] for name in (*MAPS, "valence_vs_truth")
    }
    result["targets_met"] = {
        "noise_free_edge_bias<=0.05eV": result["noise_free"]["edge_energy_bias_max_abs_ev"]
        <= 0.05,
        "lcf_several_times_more_precise(>=2x at every dose)": all(
            d["crossing_over_lcf_rms"] >= 2.0 for d in doses),
        **{f"pull_std_{k}_in_0.8-1.25": all(0.8 <= s <= 1.25 for s in v)
           for k, v in worst_pull.items()},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
