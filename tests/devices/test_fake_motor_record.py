"""ophyd motor classes against caproto's own ``fake_motor_record`` IOC (a subprocess)."""

from __future__ import annotations

import time

import pytest

from tests.devices.ca_env import SERVER_PORTS, start_ioc, stop_ioc

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def fake_motors(tmp_path_factory):
    log = tmp_path_factory.mktemp("fake_motor") / "ioc.log"
    proc = start_ioc(["-m", "caproto.ioc_examples.fake_motor_record", "--prefix", "fmr:",
                      "--list-pvs"], SERVER_PORTS[1], "fmr:mtr1.RBV", log)
    yield "fmr:"
    stop_ioc(proc)


def test_sample_stage_and_limits_on_fake_motor_record(fake_motors):
    from ophyd.utils import LimitError

    from thermoxanes.devices import SampleStage, wait_for_connection

    stage = SampleStage(name="sample", x_pv="fmr:mtr1", y_pv="fmr:mtr2", z_pv="fmr:mtr3")
    wait_for_connection([stage], 10.0)
    start = time.monotonic()
    stage.x.set(0.5).wait(20)
    stage.y.set(-0.4).wait(20)
    assert stage.x.position == pytest.approx(0.5, abs=1e-3)
    assert stage.y.read()["sample_y"]["value"] == pytest.approx(-0.4, abs=1e-2)
    assert time.monotonic() - start < 15
    with pytest.raises(LimitError):       # mtr1 limits are (0, 10)
        stage.x.set(50.0)
    assert stage.x.position == pytest.approx(0.5, abs=1e-3)


def test_focusing_mono_on_fake_motor_record(fake_motors):
    """Pseudo-positioner moving three motor records together (units scaled to fit)."""
    from thermoxanes.devices import FocusCalibration, FocusingMonochromator, wait_for_connection

    cal = FocusCalibration(magnification=1.0, diameter_um=1.0, outer_zone_nm=30.0,
                           zoneplate_offset_mm=0.0, detector_offset_mm=0.0)
    mono = FocusingMonochromator(name="mono", mono_pv="fmr:mtr3", zoneplate_pv="fmr:mtr1",
                                 detector_pv="fmr:mtr2", energy_units="keV",
                                 calibration=cal, limits_ev=(5000.0, 12000.0))
    wait_for_connection([mono], 10.0)
    mono.set(8000.0).wait(30)
    zp, det = cal.positions_mm(8000.0)
    assert mono.dcm_energy.position == pytest.approx(8.0, abs=1e-2)
    assert mono.zoneplate_z_mm.position == pytest.approx(zp, abs=1e-3)
    assert mono.detector_z_mm.position == pytest.approx(det, abs=1e-2)
    assert mono.position.energy_ev == pytest.approx(8000.0, abs=10.0)
