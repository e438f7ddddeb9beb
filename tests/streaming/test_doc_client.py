"""A client written from docs/protocol.md only receives frames and map updates bit-exact."""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from thermoxanes.streaming.publisher import Publisher

CLIENT = Path(__file__).with_name("doc_client.py")


def test_doc_client_imports_nothing_from_thermoxanes():
    tree = ast.parse(CLIENT.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    assert names <= {"__future__", "hashlib", "json", "sys", "msgpack", "numpy", "zmq"}


@pytest.mark.system
@pytest.mark.parametrize("encoding", ["msgpack", "json"])
def test_doc_client_receives_frames_bit_exact(encoding):
    rng = np.random.default_rng(42)
    frames = [
        rng.integers(0, 2**16, size=(128, 96), dtype=np.uint16),
        rng.standard_normal((32, 32)).astype(">f4"),
        rng.integers(-5, 5, size=(3, 4, 5), dtype=np.int64),
        np.zeros((0, 7), dtype=np.uint8),
    ]
    maps = {"edge_energy": rng.standard_normal((16, 16)).astype(np.float32),
            "mask": rng.random((16, 16)) > 0.5}
    with Publisher("tcp://127.0.0.1:*", heartbeat_s=0.05, encoding=encoding) as pub:
        proc = subprocess.Popen(
            [sys.executable, str(CLIENT), pub.endpoint, str(len(frames))],
            stdout=subprocess.PIPE, text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "READY"
            pub("start", {"uid": "doc-run", "time": time.time(), "grid": np.arange(3.0)})
            for i, f in enumerate(frames):
                pub.send_frame(f, run_uid="doc-run", stream="primary", energy_ev=8330.0 + i,
                               temperature_c=None, theta_deg=float(i))
            pub.send_map_update({"run_uid": "doc-run", "sweep_index": 0}, maps)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    lines = out.splitlines()
    assert "DONE" in lines
    items = [json.loads(x) for x in lines[: lines.index("DONE")] if x.startswith("{")]
    summary = json.loads(lines[lines.index("DONE") + 1])
    assert summary == {"frames": len(frames), "maps": 1, "missed": 0}
    docs = [x for x in items if x["kind"] == "document"]
    assert docs[0]["name"] == "start" and docs[0]["uid"] == "doc-run"
    got = [x for x in items if x["kind"] == "frame"]
    for i, (item, f) in enumerate(zip(got, frames, strict=True)):
        assert item["sha256"] == hashlib.sha256(f.tobytes()).hexdigest()
        assert item["dtype"] == f.dtype.str and item["shape"] == list(f.shape)
        assert item["energy_ev"] == 8330.0 + i and item["theta_deg"] == float(i)
        assert item["temperature_c"] is None and item["run_uid"] == "doc-run"
    (mu,) = [x for x in items if x["kind"] == "map_update"]
    assert mu["arrays"] == {k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in maps.items()}
