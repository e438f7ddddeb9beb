"""Export stored sweeps (FXI/TXM-Sandbox HDF5, TIFF, maps) and read them back:
``thermoxanes fit`` on the FXI export gives the live maps again."""

from __future__ import annotations

import csv
import subprocess
import sys

import h5py
import numpy as np
import pytest

from tests.storage.conftest import GRID, SERIES_UID
from thermoxanes.analysis.fxi_io import read_fxi
from thermoxanes.analysis.maps import MAP_NAMES, XanesMaps
from thermoxanes.storage.catalog import open_catalog
from thermoxanes.storage.export import export
from thermoxanes.storage.results import load_maps
from thermoxanes.storage.runs import read_run, resolve_runs


def cli(*args, cwd=None):
    """Run ``thermoxanes ARGS`` in a subprocess; (status, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "thermoxanes.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=cwd)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def fxi_export(stored_series, tmp_path_factory):
    out = tmp_path_factory.mktemp("fxi") / "export"
    status, stdout, stderr = cli("export", SERIES_UID, "--format", "fxi",
                                 "--catalog", stored_series.catalog.directory, "-o", out)
    assert status == 0, stderr
    return out


def test_fxi_export_layout(stored_series, fxi_export):
    files = sorted(fxi_export.glob("sweep_*.h5"))
    assert [f.name[:9] for f in files] == ["sweep_000", "sweep_001"]
    rows = list(csv.DictReader(open(fxi_export / "series.csv")))
    assert [r["run_uid"] for r in rows] == stored_series.uids
    run = read_run(resolve_runs(stored_series.catalog.runs, stored_series.uids[0])[0])
    stored = run.streams["primary"].read_external("camera_image")
    raw = read_fxi(files[0])
    np.testing.assert_array_equal(raw.img_xanes, stored)  # grid acquired ascending
    assert raw.img_xanes.dtype == np.uint16
    assert raw.img_bkg.shape == (GRID.size, 32, 32) and raw.img_dark.shape == (2, 32, 32)
    np.testing.assert_allclose(raw.energies_ev, GRID, rtol=1e-12)
    with h5py.File(files[0], "r") as fh:
        assert fh["X_eng"].attrs["units"] == "keV"
        np.testing.assert_array_equal(fh["energies_ev"][()], GRID)
        assert fh["temperature_c"].shape == (GRID.size,)
        assert fh.attrs["raw_run_uid"] == stored_series.uids[0]
        assert fh.attrs["series_uid"] == SERIES_UID


def test_fit_of_the_fxi_export_matches_the_live_maps(stored_series, fxi_export, tmp_path):
    """``thermoxanes fit`` on the export against the live maps.

    Not bit for bit: the batch fit registers the whole stack at once, the live service
    registers frame by frame (shifts differ by up to ~0.1 px on these noisy 32x32
    frames), and it sums in float32 where the accumulator sums in float64. Without
    registration the two paths agree to float32 round-off on the same exported arrays.
    """
    from thermoxanes.analysis.accumulator import SweepAccumulator
    from thermoxanes.analysis.config import FitConfig
    from thermoxanes.analysis.fxi_io import fit_fxi_file

    for k, path in enumerate(sorted(fxi_export.glob("sweep_*.h5"))):
        out = tmp_path / f"maps_{k}.h5"
        status, stdout, stderr = cli("fit", path, "-o", out)
        assert status == 0, stderr
        refit = XanesMaps.from_hdf5(out)
        live = XanesMaps.from_hdf5(stored_series.live_dir / "maps" / f"sweep_{k:03d}.h5")
        np.testing.assert_array_equal(refit.energies_ev, live.energies_ev)
        assert refit.config == live.config
        assert (refit.mask == live.mask).mean() > 0.95
        both = refit.mask & live.mask
        # 32x32 frames: only pixels with a defined valence (sigma <= 0.5) are in the mask
        assert both.sum() >= 20
        assert np.abs(refit.registration_shifts - live.registration_shifts).max() <= 0.25
        for name in ("edge_energy", "whiteline_energy"):
            diff = np.abs(getattr(refit, name)[both] - getattr(live, name)[both])
            z_e = diff / getattr(live, name + "_sigma")[both]
            assert np.nanmedian(z_e) < 0.5, name  # well within each pixel's own noise
        z = np.abs(refit.valence[both] - live.valence[both]) / live.valence_sigma[both]
        assert np.nanmedian(z) < 0.2

        # the same exported arrays, no registration: batch fit == frame-by-frame fit
        cfg = FitConfig(register=False)
        batch = fit_fxi_file(path, tmp_path / f"noreg_{k}.h5", cfg)
        raw = read_fxi(path)
        acc = SweepAccumulator(raw.energies_ev, raw.img_xanes.shape[1:], cfg)
        for dark in raw.img_dark:
            acc.add_dark(dark)
        for e, flat, frame in zip(raw.energies_ev, raw.img_bkg, raw.img_xanes, strict=True):
            acc.add_flat(flat, energy_ev=e)
            acc.add_frame(frame, energy_ev=e)
        frame_by_frame = acc.finish()
        np.testing.assert_array_equal(batch.mask, frame_by_frame.mask)
        m = batch.mask
        for name in ("edge_energy", "whiteline_energy"):
            np.testing.assert_allclose(getattr(batch, name)[m], getattr(frame_by_frame, name)[m],
                                       rtol=0, atol=1e-3)
        np.testing.assert_allclose(batch.edge_jump, frame_by_frame.edge_jump, rtol=1e-4,
                                   atol=1e-5)
        dv = np.abs(batch.valence[m] - frame_by_frame.valence[m])
        assert np.all(dv <= 0.05 * frame_by_frame.valence_sigma[m] + 1e-3)


def test_tiff_export_opens_as_stacks(stored_series, tmp_path):
    import tifffile

    with open_catalog(uri=stored_series.catalog.uri) as handle:
        written = export(handle, stored_series.uids[1], "tiff", tmp_path / "tiff")
    names = sorted(p.name for p in written)
    label = f"sweep_001_{stored_series.uids[1][:8]}"
    assert names == sorted([f"{label}_xanes.tif", f"{label}_flat.tif", f"{label}_dark.tif",
                            f"{label}_energies.csv", "series.csv"])
    run = read_run(resolve_runs(stored_series.catalog.runs, stored_series.uids[1])[0])
    with tifffile.TiffFile(tmp_path / "tiff" / f"{label}_xanes.tif") as tif:
        assert tif.is_imagej
        stack = tif.asarray()
        labels = tif.imagej_metadata["Labels"]
    np.testing.assert_array_equal(stack, run.streams["primary"].read_external("camera_image"))
    assert labels[0].startswith("8200.00 eV")
    rows = list(csv.DictReader(open(tmp_path / "tiff" / f"{label}_energies.csv")))
    assert [float(r["energy_ev"]) for r in rows] == GRID.tolist()
    assert tifffile.imread(tmp_path / "tiff" / f"{label}_dark.tif").shape == (2, 32, 32)


def test_maps_export_hdf5_and_tiff(stored_series, tmp_path):
    import tifffile

    uid = stored_series.uids[0]
    stored = load_maps(stored_series.catalog, uid)
    with open_catalog(uri=stored_series.catalog.uri) as handle:
        export(handle, uid, "maps-h5", tmp_path / "h5")
        export(handle, uid, "maps-tiff", tmp_path / "tif")
    label = f"sweep_000_{uid[:8]}"
    again = XanesMaps.from_hdf5(tmp_path / "h5" / f"{label}_maps.h5")
    for name in (*MAP_NAMES, "mask", "energies_ev", "registration_shifts"):
        np.testing.assert_array_equal(getattr(again, name), getattr(stored, name))
    with h5py.File(tmp_path / "h5" / f"{label}_maps.h5", "r") as fh:
        assert fh.attrs["raw_run_uid"] == uid
        assert 20.0 < fh.attrs["temperature_c"] < 30.0
        assert fh.attrs["software_version"]
    folder = tmp_path / "tif" / f"{label}_maps"
    np.testing.assert_array_equal(tifffile.imread(folder / "valence.tif"), stored.valence)
    np.testing.assert_array_equal(tifffile.imread(folder / "mask.tif").astype(bool),
                                  stored.mask)
    assert '"energies_ev"' in (folder / "metadata.json").read_text()
    # exporting again into the same folder never overwrites
    with open_catalog(uri=stored_series.catalog.uri) as handle:
        with pytest.raises(ValueError, match="exists"):
            export(handle, uid, "maps-h5", tmp_path / "h5")
