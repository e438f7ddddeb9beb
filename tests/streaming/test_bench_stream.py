"""bench_stream.py runs end to end with tiny frames and prints its JSON figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_stream.py"


@pytest.mark.slow
@pytest.mark.system
def test_bench_stream_smoke():
    out = subprocess.run(
        [sys.executable, str(BENCH), "--size", "64", "--frames", "40", "--rate", "200",
         "--stall-s", "0.6", "--repeat", "1", "--bluesky-frames", "10"],
        capture_output=True, text=True, timeout=240, check=True,
    ).stdout
    res = json.loads(out)
    tp = res["throughput"]
    for key in ("raw_pyzmq", "thermoxanes", "bluesky"):
        assert tp[key]["frames_received"] == tp[key]["frames_sent"]
    assert res["steady"]["frames_lost"] == 0
    assert res["stalled_subscriber"]["publisher_dropped"] == 0
    assert set(res["targets"]) >= {"throughput_at_least_70pct_of_raw", "zero_loss_at_steady_rate"}
