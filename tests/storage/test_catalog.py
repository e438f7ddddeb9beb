import numpy as np
from bluesky import RunEngine

from thermoxanes.plans.xanes import xanes_sweep
from thermoxanes.profiles.beamline import build_beamline
from thermoxanes.profiles.schema import load_profile
from thermoxanes.storage.catalog import EmbeddedCatalog


def test_runs_written_through_tiledwriter_read_back(tmp_path, short_grid):
    with EmbeddedCatalog(tmp_path) as catalog:
        bl = build_beamline(load_profile("sim"), catalog.raw_dir, size=24, seed=3)
        RE = RunEngine({})
        RE.subscribe(catalog.writer(batch_size=5))
        (uid,) = RE(xanes_sweep(bl.camera, bl.mono, bl.sample_x, bl.shutter, short_grid,
                                readables=bl.frame_readables, n_darks=2,
                                md={"series_uid": "series-1", "sweep_index": 0}))
        direct = bl.camera.frame_lookup  # frames also cached in memory
        assert direct is not None
    # re-open from disk: the catalog outlives the server
    with EmbeddedCatalog(tmp_path) as catalog:
        run = catalog.runs[uid]
        assert catalog.runs[-1].metadata["start"]["uid"] == uid
        assert run.metadata["start"]["series_uid"] == "series-1"
        assert set(run) == {"dark", "flat", "primary"}
        frames = run["primary"]["camera_image"].read()
        assert frames.shape == (short_grid.size, 24, 24)
        assert frames.dtype == np.uint16
        assert run["dark"]["camera_image"].read().shape == (2, 24, 24)
        energies = run["primary"]["mono_energy_ev"].read()
        np.testing.assert_allclose(energies, short_grid)
        temps = run["primary"]["heater_temperature_c"].read()
        assert np.all(np.abs(temps - 25.0) < 3.0)
    # frames live in HDF5 files under raw/, not inline in the catalog
    assert list((tmp_path / "raw").glob("*.h5"))


def test_two_embedded_catalogs_in_one_process(tmp_path):
    # tiled keeps server settings process-wide; a second server must not lock out the first
    with EmbeddedCatalog(tmp_path / "a") as a, EmbeddedCatalog(tmp_path / "b") as b:
        assert list(a.runs) == [] and list(b.runs) == []
        assert (tmp_path / "a" / "catalog" / "server.json").exists()
    assert not (tmp_path / "a" / "catalog" / "server.json").exists()
