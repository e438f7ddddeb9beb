from collections import Counter

import h5py
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.utils import FailedStatus

from thermoxanes.plans.xanes import xanes_sweep


def _run(beamline, energies, **kwargs):
    RE = RunEngine({})
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    (uid,) = RE(xanes_sweep(beamline.camera, beamline.mono, beamline.sample_x,
                            beamline.shutter, energies, readables=beamline.frame_readables,
                            **kwargs))
    return uid, docs


def test_sweep_streams_metadata_and_files(beamline, short_grid):
    uid, docs = _run(beamline, short_grid, n_darks=3, n_flats=2, md={"sweep_index": 7})
    start = next(d for n, d in docs if n == "start")
    assert start["uid"] == uid
    assert start["plan_name"] == "xanes_sweep"
    assert start["energies_ev"] == list(short_grid)
    assert start["sweep_index"] == 7
    descriptors = {d["uid"]: d["name"] for n, d in docs if n == "descriptor"}
    per_stream = Counter(descriptors[d["descriptor"]] for n, d in docs if n == "event")
    assert per_stream == {"dark": 3, "flat": 2 * short_grid.size, "primary": short_grid.size}
    primary = [d for n, d in docs if n == "event" and descriptors[d["descriptor"]] == "primary"]
    np.testing.assert_allclose([e["data"]["mono_energy_ev"] for e in primary], short_grid)
    assert all("heater_temperature_c" in e["data"] for e in primary)
    # frames are in HDF5 datasets by frame type, referenced by resource documents
    resources = [d for n, d in docs if n == "resource"]
    assert {r["resource_kwargs"]["dataset"] for r in resources} == {
        "/entry/data/dark", "/entry/data/flat", "/entry/data/data"}
    with h5py.File(resources[0]["resource_path"], "r") as fh:
        data = fh["/entry/data/data"][()]
        dark = fh["/entry/data/dark"][()]
        flat = fh["/entry/data/flat"][()]
    assert data.shape == (short_grid.size, 32, 32) and data.dtype == np.uint16
    assert dark.mean() < 0.2 * flat.mean()  # shutter closed for darks
    # the sample absorbs: sample frames are darker than flats at the same energy
    assert data[-1].mean() < flat[-1].mean()
    # the sample is back in place after the sweep
    assert beamline.sample_x.position == pytest.approx(0.0)


def test_sweep_refuses_bad_grids(beamline):
    with pytest.raises(ValueError, match="duplicate"):
        _run(beamline, [8300.0, 8300.0, 8400.0])
    with pytest.raises(ValueError, match="NaN"):
        _run(beamline, [8300.0, float("nan")])


def test_energy_outside_mono_limits_fails_clearly(beamline):
    with pytest.raises(FailedStatus) as info:
        _run(beamline, [8300.0, 20000.0])
    assert "energy 20000.0 eV outside" in str(info.value.args[0].exception())
    assert beamline.mono.position == 8300.0
