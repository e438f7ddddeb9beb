"""CURVE authentication and encryption (optional, for cross-host use)."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from tests.streaming._helpers import collect, wait_ready
from thermoxanes.streaming.protocol import FrameMessage
from thermoxanes.streaming.publisher import Publisher
from thermoxanes.streaming.security import (
    CurveClient,
    CurveKeys,
    CurveServer,
    is_loopback_endpoint,
)
from thermoxanes.streaming.subscriber import Subscriber

ANY = "tcp://127.0.0.1:*"


@pytest.fixture(scope="module")
def keys():
    return CurveKeys.generate(), CurveKeys.generate(), CurveKeys.generate()


def _nothing_within(sub: Subscriber, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sub.recv(0.1) is not None:
            return False
    return True


def test_curve_admits_listed_client_and_rejects_others(keys):
    server, client, stranger = keys
    cfg = CurveServer(keys=server, allowed_clients=[client.public])
    with Publisher(ANY, heartbeat_s=0.05, curve=cfg, snapshot_endpoint=ANY) as pub:
        good = Subscriber(pub.endpoint, curve=CurveClient(server.public, client),
                          snapshot_endpoint=pub.snapshot_endpoint)
        bad = Subscriber(pub.endpoint, curve=CurveClient(server.public, stranger))
        plain = Subscriber(pub.endpoint)
        try:
            wait_ready(good)
            assert good.stats["snapshot"] == "ok"
            frame = np.arange(64, dtype=np.uint16).reshape(8, 8)
            pub.send_frame(frame, run_uid="c1", stream="primary", energy_ev=8340.0)
            (msg,) = collect(good, 1)
            assert isinstance(msg, FrameMessage) and np.array_equal(msg.array, frame)
            assert _nothing_within(bad, 0.5)
            assert _nothing_within(plain, 0.3)
        finally:
            good.close()
            bad.close()
            plain.close()


class _Relay:
    """TCP relay between a subscriber and a publisher that records what the publisher sends."""

    def __init__(self, target_port: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target_port = target_port
        self.captured = bytearray()
        self._threads: list[threading.Thread] = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        client, _ = self.listener.accept()
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        for src, dst, record in ((client, upstream, False), (upstream, client, True)):
            t = threading.Thread(target=self._pump, args=(src, dst, record), daemon=True)
            t.start()
            self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        try:
            while data := src.recv(65536):
                if record:
                    self.captured += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("use_curve", [False, True])
def test_payload_on_the_wire_is_encrypted_only_with_curve(keys, use_curve):
    server, client, _ = keys
    marker = np.frombuffer(b"THERMOXANES-PLAINTEXT-MARKER" * 8, dtype=np.uint8)
    cfg = CurveServer(keys=server, allowed_clients=[client.public]) if use_curve else None
    with Publisher(ANY, heartbeat_s=0.05, curve=cfg) as pub:
        relay = _Relay(int(pub.endpoint.rsplit(":", 1)[1]))
        sub = Subscriber(f"tcp://127.0.0.1:{relay.port}",
                         curve=CurveClient(server.public, client) if use_curve else None)
        try:
            wait_ready(sub)
            pub.send_frame(marker, run_uid="enc", stream="primary")
            (msg,) = collect(sub, 1)
            assert np.array_equal(msg.array, marker)
            time.sleep(0.1)
            seen = bytes(marker) in bytes(relay.captured)
            assert seen is (not use_curve)
            assert (b'"run_uid":"enc"' in bytes(relay.captured)) is (not use_curve)
        finally:
            sub.close()
            relay.close()


def test_keys_from_certificate(tmp_path):
    import zmq.auth

    _, secret_file = zmq.auth.create_certificates(str(tmp_path), "server")
    k = CurveKeys.from_certificate(secret_file)
    assert len(k.public) == 40 and len(k.secret) == 40


def test_loopback_detection():
    assert is_loopback_endpoint("tcp://127.0.0.1:5577")
    assert is_loopback_endpoint("tcp://localhost:*")
    assert is_loopback_endpoint("ipc:///tmp/x")
    assert not is_loopback_endpoint("tcp://0.0.0.0:5577")
    assert not is_loopback_endpoint("tcp://*:5577")
    assert not is_loopback_endpoint("tcp://10.0.0.5:5577")


def test_remote_bind_allowed_with_curve(keys):
    server, _, _ = keys
    with Publisher("tcp://0.0.0.0:*", curve=CurveServer(keys=server, allowed_clients=[])) as pub:
        assert pub.endpoint.startswith("tcp://0.0.0.0:")
