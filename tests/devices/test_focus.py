"""Focus calibration: lens equations, offsets, calibration points."""

import numpy as np
import pytest

from thermoxanes.devices.focus import CalibrationPoint, FocusCalibration
from thermoxanes.optics import focus_positions_mm


def test_no_points_is_lens_equation_plus_offsets():
    cal = FocusCalibration(magnification=40.0, zoneplate_offset_mm=-2.0, detector_offset_mm=5.0)
    p, q = focus_positions_mm(8400.0, 40.0)
    assert cal.positions_mm(8400.0) == pytest.approx((p - 2.0, q + 5.0))


def test_points_are_reproduced_and_interpolated():
    pts = (CalibrationPoint(8200.0, 30.0, 2400.0), CalibrationPoint(8630.0, 32.0, 2470.0))
    cal = FocusCalibration(magnification=48.0, points=pts)
    for pt in pts:
        assert cal.positions_mm(pt.energy_ev) == pytest.approx((pt.zoneplate_mm, pt.detector_mm))
    zp, det = cal.positions_mm(np.array([8200.0, 8415.0, 8630.0]))
    assert np.all(np.diff(zp) > 0) and np.all(np.diff(det) > 0)
    one = FocusCalibration(magnification=48.0, points=pts[:1])
    shift = np.subtract(one.positions_mm(8630.0), focus_positions_mm(8630.0, 48.0))
    assert shift == pytest.approx(np.subtract((30.0, 2400.0), focus_positions_mm(8200.0, 48.0)))


def test_bad_calibration():
    with pytest.raises(ValueError, match="repeat"):
        FocusCalibration(points=(CalibrationPoint(8300, 1, 2), CalibrationPoint(8300, 1, 3)))
    with pytest.raises(ValueError, match="magnification"):
        FocusCalibration(magnification=0)
