"""Fault injection with real processes: analysis service killed and restarted, a stalled
subscriber, a corrupt frame, the catalog unreachable and the raw-data disk full.

The scenarios live in ``benchmarks/bench_faults.py`` (which prints them as JSON); these
tests run them at 32x32 pixels and check the outcome. Bounds on time are generous.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_faults.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_faults", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_faults"] = module
    spec.loader.exec_module(module)
    return module


def _common(result):
    assert result["frames_lost"] == 0, result
    assert result["frames_lost_from_catalog"] == 0, result
    assert result["heater_safe"], result


def test_analysis_service_killed_and_restarted(bench, tmp_path):
    result = bench.scenario_service_restart(tmp_path)
    _common(result)
    assert result["error"] is None and result["safe_state_recorded"]
    # the first service fitted sweep 0; the restarted one skipped the sweep it joined
    # in the middle of and fitted the next; every map belongs to one sweep
    assert result["sweeps_fitted"] == [0, 2]
    assert result["maps_files"] == ["sweep_000.h5", "sweep_002.h5"]
    assert result["maps_mixing_sweeps"] == []


def test_stalled_subscriber_does_not_slow_acquisition(bench, tmp_path):
    result = bench.scenario_stalled_subscriber(tmp_path)
    _common(result)
    assert result["error"] is None
    assert result["live_service_sweeps_complete"] == 3
    assert result["acquisition_slowdown"] < 3.0  # generous: shared 2-core machines


def test_corrupt_frame_flagged_masked_no_crash(bench, tmp_path):
    result = bench.scenario_corrupt_frame(tmp_path)
    _common(result)
    assert result["error"] is None
    assert result["service_alive_until_done"] and result["sweep_complete"] is True
    (bad,) = result["corrupt_frames"]
    assert bad["action"] == "masked" and bad["stream"] == "primary"


def test_catalog_unreachable_fails_loudly_and_loses_nothing(bench, tmp_path):
    result = bench.scenario_catalog_unreachable(tmp_path)
    _common(result)
    assert result["error"] is not None
    assert result["fault_to_error_s"] < 60
    assert result["exit_path"] == "exception"
    assert result["frames_acquired_before_fault"] > bench.GRID_EV.size
    assert result["frames_from_catalog"] >= result["frames_acquired_before_fault"]


def test_raw_disk_full_fails_loudly_and_loses_nothing(bench, tmp_path):
    result = bench.scenario_disk_full(tmp_path)
    if result is None:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    _common(result)
    assert result["error"] is not None and "disk full" in result["error"]
    assert result["exit_path"] == "exception" and result["safe_state_recorded"]
    assert result["frames_acquired"] > 0


def test_ioc_killed_mid_sweep_fails_bounded_and_reports(tmp_path):
    # Its own process: a fresh Channel Access context on its own ports. In this pytest
    # process pyepics still holds channels of the EPICS tests' (killed) IOC, and without a
    # CA repeater no beacon resets their search back-off, so a new IOC is found too late.
    proc = subprocess.run(
        [sys.executable, str(_PATH), "--only", "ioc_killed", "--work", str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["skipped"] == [], "the simulated IOC did not start"
    (result,) = report["scenarios"]
    assert result["error"] is not None and "connect" in result["error"]
    assert result["fault_to_error_s"] < 120
    assert result["frames_acquired_before_fault"] > 0
    assert result["frames_lost_from_catalog"] == 0
    # the heater is unreachable: the attempt to make it safe is in the documents
    assert result["safe_state_attempt_reported"] and result["safe_state_recorded"] is False
    assert result["safe_action_problem"]
