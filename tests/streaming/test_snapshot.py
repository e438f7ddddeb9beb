"""Late joiners: the snapshot endpoint (clone pattern) delivers the run's start, descriptors,
darks and flats, and the subscriber joins the live stream at the next frame."""

from __future__ import annotations

import time

import event_model
import numpy as np

from tests.streaming._helpers import collect, wait_ready
from thermoxanes.streaming.protocol import DocumentMessage, FrameMessage, MapUpdateMessage
from thermoxanes.streaming.publisher import Publisher
from thermoxanes.streaming.subscriber import Subscriber

ANY = "tcp://127.0.0.1:*"
DATA_KEYS = {
    "camera_image": {"source": "sim", "dtype": "array", "shape": [4, 4], "external": "FILESTORE:"},
    "mono_energy_ev": {"source": "sim", "dtype": "number", "shape": []},
}


class _Run:
    """Compose documents of one sweep and feed them to a publisher with frames."""

    def __init__(self, pub: Publisher) -> None:
        self.pub = pub
        self.cache: dict[str, np.ndarray] = {}
        pub.frame_lookup = self.cache.get
        self.bundle = event_model.compose_run(metadata={"plan_name": "xanes_sweep"})
        pub("start", self.bundle.start_doc)
        self.streams = {}
        for name in ("dark", "flat", "primary"):
            d = self.bundle.compose_descriptor(name=name, data_keys=DATA_KEYS)
            pub("descriptor", d.descriptor_doc)
            self.streams[name] = d
        self.n = 0

    @property
    def uid(self) -> str:
        return self.bundle.start_doc["uid"]

    def event(self, stream: str, energy_ev: float = 8333.0) -> np.ndarray:
        self.n += 1
        datum_id = f"datum-{self.n}"
        frame = np.full((4, 4), self.n, dtype=np.uint16)
        self.cache[datum_id] = frame
        ev = self.streams[stream].compose_event(
            data={"camera_image": datum_id, "mono_energy_ev": energy_ev},
            timestamps={"camera_image": time.time(), "mono_energy_ev": time.time()},
        )
        self.pub("event", ev)
        return frame

    def stop(self) -> None:
        self.pub("stop", self.bundle.compose_stop())


def test_late_joiner_gets_calibration_and_joins_at_next_frame():
    pub = Publisher(ANY, heartbeat_s=0.05, snapshot_endpoint=ANY)
    early = Subscriber(pub.endpoint)
    late = None
    try:
        wait_ready(early)
        run = _Run(pub)
        darks = [run.event("dark") for _ in range(2)]
        flats = [run.event("flat") for _ in range(2)]
        for i in range(3):
            run.event("primary", 8300.0 + i)
        assert pub.flush(5)
        late = Subscriber(pub.endpoint, snapshot_endpoint=pub.snapshot_endpoint)
        # start + 3 descriptors + 2x(event+frame) dark + 2x(event+frame) flat
        snap = collect(late, 12, timeout_s=10)
        assert late.stats["snapshot"] == "ok"
        assert all(m.header.get("snapshot") for m in snap)
        assert [getattr(m, "name", m.kind) for m in snap[:4]] == ["start"] + ["descriptor"] * 3
        frames = [m for m in snap if isinstance(m, FrameMessage)]
        assert [f.header["stream"] for f in frames] == ["dark", "dark", "flat", "flat"]
        for f, expected in zip(frames, darks + flats, strict=True):
            assert np.array_equal(f.array, expected)
        assert [m.seq for m in snap] == sorted(m.seq for m in snap)

        nxt = run.event("primary", 8310.0)
        run.stop()
        pub.send_map_update({"run_uid": run.uid}, {"valence": np.ones((2, 2), np.float32)})
        live = collect(late, 4, timeout_s=10)
        assert [getattr(m, "name", m.kind) for m in live] == ["event", "frame", "stop",
                                                             "map_update"]
        assert np.array_equal(live[1].array, nxt)
        assert live[1].header["energy_ev"] == 8310.0
        assert late.stats["duplicates"] >= 0 and late.stats["malformed"] == 0
        # the sweep is incomplete for the late joiner (3 primary events + frames missed)
        assert late.run_info(run.uid).joined_late
        assert late.gaps_for_run(run.uid) == 6
        # ... but complete for the subscriber that was there from the start
        assert early.gaps_for_run(run.uid) == 0

        # after the run: a new late joiner gets no run, but the latest map update
        later = Subscriber(pub.endpoint, snapshot_endpoint=pub.snapshot_endpoint)
        try:
            (mu,) = collect(later, 1, timeout_s=10)
            assert isinstance(mu, MapUpdateMessage) and mu.header["snapshot"]
            assert later.stats["snapshot"] == "ok"
            assert later.gaps_for_run(run.uid) == 0
        finally:
            later.close()
    finally:
        early.close()
        if late is not None:
            late.close()
        pub.close()


def test_snapshot_timeout_falls_back_to_live_stream():
    pub = Publisher(ANY, heartbeat_s=0.05)
    sub = Subscriber(pub.endpoint, snapshot_endpoint="tcp://127.0.0.1:1",
                     snapshot_timeout_s=0.5)
    try:
        wait_ready(sub, timeout_s=5)
        assert sub.stats["snapshot"] == "timeout"
        pub("start", {"uid": "x", "time": 0.0})
        (msg,) = collect(sub, 1)
        assert isinstance(msg, DocumentMessage) and msg.name == "start"
    finally:
        sub.close()
        pub.close()


def test_snapshot_memory_is_capped():
    # each 4x4 uint16 frame is 32 bytes: room for 3 calibration frames
    pub = Publisher(ANY, heartbeat_s=0.05, snapshot_endpoint=ANY, snapshot_max_bytes=100)
    try:
        run = _Run(pub)
        for _ in range(5):
            run.event("dark")
        assert pub.flush(5)
        late = Subscriber(pub.endpoint, snapshot_endpoint=pub.snapshot_endpoint)
        try:
            snap = collect(late, 4 + 5 + 3, timeout_s=10)
            frames = [m for m in snap if isinstance(m, FrameMessage)]
            assert len(frames) == 3
            assert late.gaps_for_run(run.uid) == 2  # two dark frames not offered
        finally:
            late.close()
    finally:
        pub.close()


def test_no_state_kept_without_snapshot_endpoint():
    with Publisher(ANY, heartbeat_s=0.05) as pub:
        run = _Run(pub)
        run.event("dark")
        assert pub.flush(5)
        assert pub._state.entries == []


def test_snapshot_server_ignores_garbage_requests():
    import zmq

    with Publisher(ANY, heartbeat_s=0.05, snapshot_endpoint=ANY) as pub:
        pub("start", {"uid": "g-run", "time": 0.0})
        assert pub.flush(5)
        ctx = zmq.Context()
        dealer = ctx.socket(zmq.DEALER)
        dealer.connect(pub.snapshot_endpoint)
        try:
            for junk in ([b"\xff\x00"], [b"{}"], [b"[1]"], [b"a", b"b", b"c"], [b""]):
                dealer.send_multipart(junk)
            dealer.send(b'{"v": 1, "request": "snapshot"}')
            assert dealer.poll(5000)
            parts = dealer.recv_multipart()
            assert parts[0] == b"document"
            while parts[0] != b"snapshot_end":
                assert dealer.poll(5000)
                parts = dealer.recv_multipart()
            assert not dealer.poll(200)  # exactly one reply, for the valid request
        finally:
            dealer.close(0)
            ctx.term()
