"""The ground truth agrees with the project's analysis on noise-free absorbance."""

import numpy as np

from thermoxanes.analysis.config import FitConfig
from thermoxanes.analysis.fit import fit_stack
from thermoxanes.simulators.export import default_energies_ev
from thermoxanes.simulators.presets import get_preset
from thermoxanes.simulators.world import SimWorld


def _fit(world: SimWorld):
    e = default_energies_ev()
    tr = world.truth(e)
    config = FitConfig(register=False, calibration_shift_ev=world.energy_calibration_shift_ev)
    maps = fit_stack(tr["absorbance"], e, config)
    ok = tr["mask"] & np.isfinite(maps.whiteline_energy) & (tr["ni_edge_jump_od"] > 0.05)
    return tr, maps, ok


def test_truth_matches_analysis_without_noise():
    tr, maps, ok = _fit(SimWorld.from_preset("nmc622-gravel", size=48, seed=0))
    assert ok.sum() > 100
    dv = maps.valence[ok] - tr["valence"][ok]
    assert abs(dv.mean()) < 0.06
    de = maps.edge_energy[ok] - tr["edge_energy"][ok]
    assert abs(de.mean()) < 0.3
    # The quadratic white-line fit on a 1 eV grid reads slightly high; truth is the peak.
    dw = maps.whiteline_energy[ok] - tr["whiteline_energy"][ok]
    assert abs(dw.mean()) < 0.35


def test_calibration_offset_moves_spectra():
    base = get_preset("nmc622-gravel")
    a = SimWorld(base, 32, seed=0).truth()
    b = SimWorld(base.with_(calibration_shift_ev=0.8), 32, seed=0).truth()
    assert b["calibration_shift_ev"] == 0.8
    d = b["edge_energy"] - a["edge_energy"]
    np.testing.assert_allclose(np.nanmean(d), 0.8, atol=0.02)
    np.testing.assert_array_equal(a["valence"], b["valence"])


def test_foil_gives_the_calibration_offset():
    from thermoxanes.analysis.calibration import calibrate_from_foil

    w = SimWorld.from_preset("nmc442-hollow", size=16, seed=0)
    e = np.arange(8300.0, 8400.0, 0.5)
    shift = calibrate_from_foil(e, w.foil_absorbance(e))
    assert abs(shift - w.energy_calibration_shift_ev) < 0.05
