"""XanesMaps HDF5 round trip, differential maps, FXI files, foil calibration."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from tests.analysis.synthetic import synthetic_counts, synthetic_mu
from thermoxanes.analysis.calibration import calibrate_from_foil
from thermoxanes.analysis.config import FitConfig
from thermoxanes.analysis.differential import differential_map
from thermoxanes.analysis.fit import fit_stack
from thermoxanes.analysis.fxi_io import fit_fxi_file, read_fxi
from thermoxanes.analysis.maps import MAP_NAMES, XanesMaps
from thermoxanes.analysis.references import load_reference


def _maps(energies_ev, valence, cfg=None):
    mu = synthetic_mu(energies_ev, valence, 0.3).astype(np.float32)
    return fit_stack(mu, energies_ev, cfg or FitConfig(register=False))


def test_hdf5_round_trip(tmp_path, energies_ev, rng):
    maps = _maps(energies_ev, rng.uniform(2, 4, (4, 5)))
    path = tmp_path / "maps.h5"
    maps.to_hdf5(path, attrs={"run_uid": "abc", "temperature_c": 150.0, "extra": [1, 2]})
    back = XanesMaps.from_hdf5(path)
    for name in MAP_NAMES:
        np.testing.assert_array_equal(getattr(back, name), getattr(maps, name))
    np.testing.assert_array_equal(back.mask, maps.mask)
    np.testing.assert_array_equal(back.energies_ev, energies_ev)
    assert back.config == maps.config
    with h5py.File(path) as fh:
        assert fh["valence"].dtype == np.float32 and fh["mask"].dtype == bool
        assert fh.attrs["run_uid"] == "abc" and json.loads(fh.attrs["extra"]) == [1, 2]


def test_differential_map(energies_ev, rng):
    v0 = np.full((4, 4), 3.0)
    mu0 = synthetic_mu(energies_ev, v0, 0.3)
    mu1 = synthetic_mu(energies_ev, v0 - 0.2, 0.3)
    noise = 0.003
    cfg = FitConfig(register=False)
    a = fit_stack((mu0 + rng.normal(0, noise, mu0.shape)).astype(np.float32), energies_ev, cfg)
    b = fit_stack((mu1 + rng.normal(0, noise, mu1.shape)).astype(np.float32), energies_ev, cfg)
    d = differential_map(a, b)
    assert d.delta.dtype == np.float32 and d.mask.all()
    np.testing.assert_allclose(np.nanmean(d.delta), -0.2, atol=0.05)
    np.testing.assert_allclose(d.z, d.delta / d.sigma, rtol=1e-5)
    b.mask[0, 0] = False
    d = differential_map(a, b, "edge_energy")
    assert np.isnan(d.z[0, 0]) and not d.mask[0, 0]
    with pytest.raises(ValueError, match="quantity"):
        differential_map(a, b, "temperature")


def test_foil_calibration(energies_ev):
    e_ref, mu_ref = load_reference("Ni_foil")
    for shift in (-1.0, 0.0, 0.63):
        mu = 0.2 + 1.7 * np.interp(energies_ev - shift, e_ref, mu_ref)
        assert calibrate_from_foil(energies_ev, mu) == pytest.approx(shift, abs=0.02)
    with pytest.raises(ValueError, match="foil calibration"):
        calibrate_from_foil(energies_ev[:5], np.ones(5))


def _write_fxi(path, energies_ev, rng, *, single_flat=False, kev=True):
    mu = synthetic_mu(energies_ev, np.full((8, 8), 2.5), 0.3, nonresonant=0.5)
    sample, flat, dark = synthetic_counts(rng, mu, 3000.0)
    with h5py.File(path, "w") as fh:
        fh["img_xanes"] = sample.astype(np.uint16)
        fh["img_bkg"] = (flat[:1] if single_flat else flat).astype(np.uint16)
        fh["img_dark"] = np.stack([dark, dark]).astype(np.uint16)
        fh["X_eng"] = energies_ev / 1000.0 if kev else energies_ev


def test_fit_fxi_file(tmp_path, energies_ev, rng):
    src = tmp_path / "xanes.h5"
    _write_fxi(src, energies_ev, rng)
    out = tmp_path / "maps.h5"
    maps = fit_fxi_file(src, out, FitConfig(register=False))
    assert maps.mask.all()
    np.testing.assert_allclose(np.nanmean(maps.valence), 2.5, atol=0.05)
    with h5py.File(out) as fh:
        for name in ("edge_energy", "edge_energy_sigma", "whiteline_energy",
                     "whiteline_energy_sigma", "edge_jump", "valence", "valence_sigma"):
            assert fh[name].dtype == np.float32 and fh[name].shape == (8, 8)
        assert fh["mask"].dtype == bool
        assert fh["registration_shifts"].shape == (energies_ev.size, 2)
        np.testing.assert_allclose(fh["energies_ev"][()], energies_ev)
    _write_fxi(src, energies_ev, rng, single_flat=True, kev=False)
    assert read_fxi(src).img_bkg.shape == (1, 8, 8)


def test_fxi_errors(tmp_path, energies_ev, rng):
    src = tmp_path / "bad.h5"
    _write_fxi(src, energies_ev, rng)
    with h5py.File(src, "a") as fh:
        del fh["img_dark"]
    with pytest.raises(ValueError, match=r"bad\.h5: missing datasets /img_dark"):
        read_fxi(src)
    _write_fxi(src, energies_ev, rng)
    with h5py.File(src, "a") as fh:
        del fh["X_eng"]
        fh["X_eng"] = energies_ev[:-1] / 1000
    with pytest.raises(ValueError, match="X_eng"):
        read_fxi(src)
    _write_fxi(src, energies_ev, rng)
    with h5py.File(src, "a") as fh:
        e = energies_ev[::-1] / 1000
        fh["X_eng"][...] = e
    with pytest.raises(ValueError, match=r"bad\.h5: energies_ev: not increasing"):
        fit_fxi_file(src, tmp_path / "o.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        read_fxi(tmp_path / "text.h5")
