import h5py
import numpy as np

from thermoxanes.analysis.fxi_io import read_fxi
from thermoxanes.simulators.export import default_energies_ev, simulate_to_fxi


def test_default_grid():
    e = default_energies_ev()
    assert e[0] == 8200.0 and e[-1] == 8630.0
    assert np.all(np.diff(e) > 0)
    assert np.all(np.diff(e[(e >= 8330) & (e <= 8355)]) == 1.0)


def test_simulate_to_fxi_layout(tmp_path):
    path = tmp_path / "stack.h5"
    energies = np.array([8300.0, 8340.0, 8350.0, 8400.0])
    simulate_to_fxi("nmc622-rod", path, size=40, seed=1, temperature_c=150.0,
                    energies_ev=energies, n_dark=3)
    stack = read_fxi(path)
    assert stack.img_xanes.shape == (4, 40, 40) and stack.img_xanes.dtype == np.uint16
    assert stack.img_bkg.shape == (4, 40, 40)
    assert stack.img_dark.shape == (3, 40, 40)
    np.testing.assert_allclose(stack.energies_ev, energies)
    with h5py.File(path, "r") as fh:
        assert np.allclose(fh["X_eng"][()], energies / 1000.0)
        for key in ("valence", "edge_energy", "whiteline_energy", "thickness_um", "mask",
                    "shift_px", "calibration_shift_ev", "frame_shift_px"):
            assert key in fh["truth"], key
        assert fh["truth/valence"].shape == (40, 40)
        assert fh["truth/frame_shift_px"].shape == (4, 2)
        assert abs(fh.attrs["temperature_c"] - 150.0) < 1.0
        # Reduced at 150 C compared with the charged start (~3.3).
        assert np.nanmean(fh["truth/valence"][()]) < 3.0
