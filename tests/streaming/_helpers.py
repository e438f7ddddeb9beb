"""Shared helpers for the streaming tests (no pytest fixtures, nothing global)."""

from __future__ import annotations

import time

from thermoxanes.streaming.protocol import Message
from thermoxanes.streaming.subscriber import Subscriber

CONTROL_KINDS = ("heartbeat", "stats")


def wait_ready(sub: Subscriber, timeout_s: float = 10.0) -> Message:
    """Wait for the first message of any kind (normally a heartbeat)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg = sub.recv(0.2)
        if msg is not None:
            return msg
    raise TimeoutError("no message from the publisher")


def collect(sub: Subscriber, n: int, timeout_s: float = 10.0) -> list[Message]:
    """Receive ``n`` non-control messages (or fewer on timeout)."""
    out: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        msg = sub.recv(0.2)
        if msg is not None and msg.kind not in CONTROL_KINDS:
            out.append(msg)
    return out
