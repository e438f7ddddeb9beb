"""bench_monitor.py runs end to end (tiny maps, two updates) and prints its JSON figures.

Nothing is timed here: the test checks that every update was painted in every viewer,
for the project and for the raw-Bokeh baseline, and that the figures are reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.monitor.conftest import chromium_or_skip

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_monitor.py"


@pytest.mark.slow
@pytest.mark.system
def test_bench_monitor_smoke():
    chromium_or_skip()
    pytest.importorskip("playwright.sync_api")
    out = subprocess.run(
        [sys.executable, str(BENCH), "--sizes", "32", "--updates", "2", "--viewers", "2",
         "--spacing-s", "1.0"],
        capture_output=True, text=True, timeout=400, check=True,
    ).stdout
    res = json.loads(out)
    entry = res["sizes"]["32"]
    for variant in ("project", "baseline_raw_bokeh"):
        figures = entry[variant]
        assert figures["expected"] == 4
        assert figures["painted"] == 4 and figures["missing"] == 0
        assert 0 < figures["median_s"] <= figures["p90_s"] <= figures["max_s"]
        assert set(figures["cpu_s_per_update"]) == {"publisher", "monitor_process", "browser"}
        assert [len(v) for v in figures["by_update_s"]] == [2, 2]
    stages = entry["project"]["stages_median_s"]
    assert 0 < stages["received_by_monitor"] <= stages["display_maps_ready"]
    assert stages["display_maps_ready"] <= stages["painted"]
