import numpy as np
import pytest

from thermoxanes.optics import focal_length_mm, focus_positions_mm, wavelength_m


def test_focal_length_matches_science_numbers():
    # SCIENCE.md: 8.2 -> 8.63 keV moves f from ~48.4 to ~51.0 mm (D = 244 um, dr = 30 nm).
    assert focal_length_mm(8200.0) == pytest.approx(48.4, abs=0.05)
    assert focal_length_mm(8630.0) == pytest.approx(51.0, abs=0.05)


def test_focus_positions_keep_magnification():
    p, q = focus_positions_mm(np.array([8200.0, 8630.0]), magnification=40.0)
    np.testing.assert_allclose(q / p, 40.0)
    f = focal_length_mm(np.array([8200.0, 8630.0]))
    np.testing.assert_allclose(1 / p + 1 / q, 1 / f)  # thin-lens equation


def test_bad_energy_and_magnification():
    with pytest.raises(ValueError, match="energy_ev"):
        wavelength_m(0.0)
    with pytest.raises(ValueError, match="magnification"):
        focus_positions_mm(8333.0, 0.0)
