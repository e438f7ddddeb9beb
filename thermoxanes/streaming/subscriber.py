"""Subscriber: receive, validate and sequence-check messages from thermoxanes publishers.

``Subscriber`` connects a SUB socket (subscribed to everything), decodes every message
with :func:`thermoxanes.streaming.protocol.decode_message`, and

- counts and logs malformed messages instead of raising (garbage never crashes it);
- detects gaps from the per-publisher sequence numbers (also through heartbeats, which
  carry the highest sequence number sent) and attributes the missing messages to runs
  (:meth:`Subscriber.gaps_for_run`), so a sweep with missing frames can be marked
  incomplete instead of being fitted from a mixed stack;
- follows publisher restarts (a new publisher id starts a new sequence) and reconnects
  (ZeroMQ reconnects by itself; after ``reconnect_after_s`` of silence the socket is
  also recreated);
- optionally asks a snapshot endpoint for the run in progress (clone pattern) and
  joins the live stream right after it.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import zmq

from thermoxanes.streaming import security
from thermoxanes.streaming.protocol import (
    SEQUENCED_KINDS,
    DocumentMessage,
    Heartbeat,
    Message,
    ProtocolError,
    SnapshotEnd,
    decode_message,
)
from thermoxanes.streaming.snapshot import SNAPSHOT_REQUEST

log = logging.getLogger(__name__)

_MAX_RUNS = 1000
_MAX_PUBLISHERS = 64
#: A publisher is silent after this many heartbeat periods without a message (>= 2 s).
SILENCE_FACTOR = 6.0


@dataclass
class RunGapInfo:
    """What a subscriber missed of one run.

    Attributes
    ----------
    missed_messages : int
        Messages of the run that will never arrive (lost in transit, dropped by the
        publisher, or sent before this subscriber joined and not in a snapshot).  When
        a gap lies between two runs it is counted for both.
    gaps : int
        Number of separate gaps.
    joined_late : bool
        The subscriber joined while the run was in progress.
    interrupted : bool
        The publisher fell silent (no heartbeat for ``silence_factor`` heartbeat
        periods, at least 2 s) or restarted while the run was open.
    """

    missed_messages: int = 0
    gaps: int = 0
    joined_late: bool = False
    interrupted: bool = False

    @property
    def complete(self) -> bool:
        """Whether nothing of the run is known to be missing."""
        return self.missed_messages == 0 and not self.joined_late and not self.interrupted


@dataclass
class _PublisherState:
    last_seq: int
    run_uid: str | None
    last_time_s: float = field(default_factory=time.monotonic)
    interval_s: float = 0.5
    silent: bool = False


class Subscriber:
    """Receive thermoxanes messages from one or more publishers.

    Parameters
    ----------
    endpoint : str or sequence of str
        Publisher endpoint(s) to connect to.
    snapshot_endpoint : str or None
        Snapshot endpoint of the publisher; if given, the run in progress is fetched
        first (start, descriptors, darks, flats) and the live stream joined after it.
    curve : security.CurveClient or None
        CURVE settings for a publisher that requires them.
    rcvhwm : int
        ZeroMQ receive high-water mark in messages.
    snapshot_timeout_s : float
        Give up waiting for the snapshot after this many seconds.
    reconnect_after_s : float or None
        Recreate the socket after this many seconds without any message (heartbeats
        arrive every 0.5 s by default); ``None`` disables it.
    topics : sequence of str or None
        Kinds to subscribe to (default: all).  With a subset, sequence holes are
        expected and no gaps are counted (check ``frame_index`` instead).
    """

    def __init__(
        self,
        endpoint: str | Sequence[str],
        *,
        snapshot_endpoint: str | None = None,
        curve: security.CurveClient | None = None,
        rcvhwm: int = 1000,
        snapshot_timeout_s: float = 5.0,
        reconnect_after_s: float | None = 10.0,
        topics: Sequence[str] | None = None,
    ) -> None:
        self.endpoints: list[str] = [endpoint] if isinstance(endpoint, str) else list(endpoint)
        self.snapshot_endpoint = snapshot_endpoint
        self.curve = curve
        self.rcvhwm = int(rcvhwm)
        self.reconnect_after_s = reconnect_after_s
        self.topics = [t.encode() for t in topics] if topics else [b""]
        self._ctx = zmq.Context()
        self._sub: zmq.Socket = self._make_sub()
        self._pending: deque[Message] = deque()
        self._publishers: OrderedDict[str, _PublisherState] = OrderedDict()
        self._runs: OrderedDict[str, RunGapInfo] = OrderedDict()
        self._last_rx = time.monotonic()
        self._log_budget = 10
        self._log_window_start = time.monotonic()
        self.last_error: str | None = None
        self._stats: dict[str, Any] = {
            "received": 0,
            "delivered": 0,
            "received_bytes": 0,
            "malformed": 0,
            "gaps": 0,
            "missed_messages": 0,
            "duplicates": 0,
            "heartbeats": 0,
            "publishers_seen": 0,
            "publisher_restarts": 0,
            "publishers_silent": 0,
            "reconnects": 0,
            "snapshot": None,
            "snapshot_messages": 0,
        }
        self._dealer: zmq.Socket | None = None
        self._snapshot_deadline = 0.0
        self._snapshot_msgs: list[Message] = []
        self._held: list[Message] = []
        if snapshot_endpoint:
            self._dealer = self._ctx.socket(zmq.DEALER)
            self._dealer.linger = 0
            if curve is not None:
                security.apply_client(self._dealer, curve)
            self._dealer.connect(snapshot_endpoint)
            # The request goes out once the subscription is live (first live message,
            # normally a heartbeat) so nothing falls between snapshot and live stream.
            self._snapshot_requested = False
            self._snapshot_timeout_s = float(snapshot_timeout_s)
            self._snapshot_deadline = time.monotonic() + self._snapshot_timeout_s
            self._stats["snapshot"] = "pending"

    # ------------------------------------------------------------------ sockets

    def _make_sub(self) -> zmq.Socket:
        sock = self._ctx.socket(zmq.SUB)
        sock.linger = 0
        sock.rcvhwm = self.rcvhwm
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        # No ZMTP heartbeats (ZMQ_HEARTBEAT_IVL) here: with a full receive pipe they
        # time out a healthy connection and libzmq 4.3.x then aborts the process
        # ("Assertion failed: _input_stopped", zeromq/libzmq#3937).  Dead publishers
        # are detected from the protocol's own heartbeats (``reconnect_after_s``).
        if self.curve is not None:
            security.apply_client(sock, self.curve)
        for topic in self.topics:
            sock.setsockopt(zmq.SUBSCRIBE, topic)
        for ep in self.endpoints:
            sock.connect(ep)
        return sock

    def _reconnect(self) -> None:
        self._sub.close(0)
        self._sub = self._make_sub()
        self._stats["reconnects"] += 1
        self._last_rx = time.monotonic()
        log.info("no message for %.1f s; socket recreated", self.reconnect_after_s)

    # ------------------------------------------------------------------ public API

    def recv(self, timeout_s: float | None = 1.0) -> Message | None:
        """Return the next valid message, or ``None`` after ``timeout_s`` seconds.

        Parameters
        ----------
        timeout_s : float or None
            Longest wait in seconds; ``None`` waits forever, ``0`` only polls.

        Returns
        -------
        Message or None
            A ``DocumentMessage``, ``FrameMessage``, ``MapUpdateMessage``, ``Heartbeat``
            or ``StatsMessage``.  Messages from a snapshot have ``header["snapshot"]``
            set to ``True``.  Arrays are read-only views of the receive buffers.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if self._pending and self._dealer is None:
                msg = self._pending.popleft()
                self._stats["delivered"] += 1
                return msg
            if self._dealer is None and self._drain_one():
                continue
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return None
            wait_ms = 100 if deadline is None else max(0, min(100, int((deadline - now) * 1000)))
            if self._dealer is not None:
                self._poll_snapshot(wait_ms)
                continue
            if self._sub.poll(wait_ms, zmq.POLLIN):
                continue
            self._check_silence()
            if (
                self.reconnect_after_s is not None
                and time.monotonic() - self._last_rx > self.reconnect_after_s
            ):
                self._reconnect()

    def gaps_for_run(self, run_uid: str) -> int:
        """Return how many messages of a run this subscriber knows it missed.

        Parameters
        ----------
        run_uid : str
            The run.

        Returns
        -------
        int
            0 when nothing is known to be missing; positive when messages were lost,
            the subscriber joined the run late, or the publisher died with the run
            open (then at least 1).
        """
        info = self._runs.get(run_uid)
        if info is None:
            return 0
        return max(info.missed_messages, 1 if info.joined_late or info.interrupted else 0)

    def run_info(self, run_uid: str) -> RunGapInfo:
        """Return the gap information of a run (a copy; empty if unknown)."""
        info = self._runs.get(run_uid)
        return RunGapInfo(**vars(info)) if info else RunGapInfo()

    @property
    def stats(self) -> dict[str, Any]:
        """Counters: received, malformed, gaps, missed_messages, duplicates, ..."""
        out = dict(self._stats)
        out["pending"] = len(self._pending)
        out["last_error"] = self.last_error
        return out

    def close(self) -> None:
        """Close the sockets."""
        if self._ctx.closed:
            return
        if self._dealer is not None:
            self._dealer.close(0)
        self._sub.close(0)
        self._ctx.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self):
        """Yield messages forever (``recv`` with no timeout)."""
        while True:
            msg = self.recv(None)
            if msg is not None:
                yield msg

    # ------------------------------------------------------------------ receiving

    def _may_log(self) -> bool:
        """Rate-limit warnings: at most 10 per 10 s, so garbage cannot flood the log."""
        now = time.monotonic()
        if now - self._log_window_start > 10.0:
            self._log_window_start = now
            self._log_budget = 10
        if self._log_budget > 0:
            self._log_budget -= 1
            return True
        return False

    def _decode(self, parts: list[Any]) -> Message | None:
        self._stats["received"] += 1
        self._last_rx = time.monotonic()
        try:
            self._stats["received_bytes"] += sum(len(p) for p in parts)
            return decode_message(parts)
        except ProtocolError as exc:
            self._stats["malformed"] += 1
            self.last_error = str(exc)[:300]
            if self._may_log():
                log.warning("malformed message ignored: %s", self.last_error)
            return None

    def _drain_one(self) -> bool:
        """Receive one message without waiting; return whether there was one."""
        try:
            parts = self._sub.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        msg = self._decode(parts)
        if msg is not None and self._accept(msg):
            self._pending.append(msg)
        return True

    def _poll_snapshot(self, wait_ms: int) -> None:
        """While the snapshot is pending: hold live messages, collect the snapshot."""
        assert self._dealer is not None
        if not self._snapshot_requested and (
            self._held or time.monotonic() > self._snapshot_deadline - self._snapshot_timeout_s / 2
        ):
            self._dealer.send(SNAPSHOT_REQUEST)
            self._snapshot_requested = True
            self._snapshot_deadline = time.monotonic() + self._snapshot_timeout_s
        poller = zmq.Poller()
        poller.register(self._dealer, zmq.POLLIN)
        poller.register(self._sub, zmq.POLLIN)
        events = dict(poller.poll(wait_ms))
        if self._sub in events:
            try:
                parts = self._sub.recv_multipart(zmq.NOBLOCK, copy=False)
                msg = self._decode(parts)
                if msg is not None:
                    self._held.append(msg)
            except zmq.Again:
                pass
        if self._dealer in events:
            try:
                parts = self._dealer.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                parts = None
            if parts is not None:
                msg = self._decode(parts)
                if isinstance(msg, SnapshotEnd):
                    self._finish_snapshot(msg)
                    return
                if msg is not None:
                    msg.header["snapshot"] = True
                    self._snapshot_msgs.append(msg)
        if time.monotonic() > self._snapshot_deadline or len(self._held) > self.rcvhwm:
            log.warning("snapshot not received in time; joining the live stream only")
            self._stats["snapshot"] = "timeout"
            self._finish_snapshot(None)

    def _finish_snapshot(self, end: SnapshotEnd | None) -> None:
        if end is not None:
            self._stats["snapshot"] = "ok"
            self._stats["snapshot_messages"] = len(self._snapshot_msgs)
            pub = end.publisher
            self._publishers[pub] = _PublisherState(last_seq=-1, run_uid=None)
            self._stats["publishers_seen"] += 1
            for msg in self._snapshot_msgs:
                self._pending.append(msg)
                st = self._publishers[pub]
                st.last_seq = max(st.last_seq, msg.seq)
                if msg.run_uid:
                    st.run_uid = msg.run_uid
            st = self._publishers[pub]
            st.last_seq = end.seq
            st.run_uid = end.run_uid
            omitted = end.header.get("omitted")
            if end.run_uid and isinstance(omitted, int) and omitted > 0:
                info = self._run(end.run_uid)
                info.missed_messages += omitted
                info.gaps += 1
                info.joined_late = True
        if self._dealer is not None:
            self._dealer.close(0)
            self._dealer = None
        self._snapshot_msgs = []
        held, self._held = self._held, []
        for msg in held:
            if self._accept(msg):
                self._pending.append(msg)

    # ------------------------------------------------------------------ sequencing

    def _check_silence(self) -> None:
        """Mark runs open at publishers that stopped sending heartbeats.

        Called only when nothing is waiting on the socket, so a subscriber that was
        busy does not mistake its own backlog for a silent publisher.
        """
        now = time.monotonic()
        for pub, st in self._publishers.items():
            limit = max(2.0, SILENCE_FACTOR * st.interval_s)
            if not st.silent and now - st.last_time_s > limit:
                st.silent = True
                self._stats["publishers_silent"] += 1
                if st.run_uid is not None:
                    self._run(st.run_uid).interrupted = True
                    log.warning("publisher %s silent for %.1f s with run %s open",
                                pub, now - st.last_time_s, st.run_uid)

    def _run(self, run_uid: str) -> RunGapInfo:
        info = self._runs.get(run_uid)
        if info is None:
            info = self._runs[run_uid] = RunGapInfo()
            if len(self._runs) > _MAX_RUNS:
                self._runs.popitem(last=False)
        return info

    def _accept(self, msg: Message) -> bool:
        """Update sequence tracking; return whether the message is delivered."""
        pub = msg.publisher
        seq = msg.seq
        sequenced = msg.kind in SEQUENCED_KINDS
        if isinstance(msg, Heartbeat):
            self._stats["heartbeats"] += 1
        st = self._publishers.get(pub)
        if st is None:
            if self._publishers:
                self._stats["publisher_restarts"] += 1
                # a publisher that was silent with a run open will not finish it
                for other in self._publishers.values():
                    if other.silent and other.run_uid is not None:
                        self._run(other.run_uid).interrupted = True
            self._stats["publishers_seen"] += 1
            # Everything before this message happened before we joined.
            st = _PublisherState(last_seq=seq - 1 if sequenced else seq, run_uid=None)
            self._publishers[pub] = st
            if len(self._publishers) > _MAX_PUBLISHERS:
                self._publishers.popitem(last=False)
            is_start = isinstance(msg, DocumentMessage) and msg.name == "start"
            if msg.run_uid and not is_start:
                info = self._run(msg.run_uid)
                info.joined_late = True
        self._publishers.move_to_end(pub)
        st.last_time_s = time.monotonic()
        st.silent = False
        if isinstance(msg, Heartbeat):
            interval = msg.header.get("interval_s")
            if isinstance(interval, int | float) and 0 < interval < 3600:
                st.interval_s = float(interval)
        expected = st.last_seq + 1
        if sequenced:
            if seq < expected:
                self._stats["duplicates"] += 1
                return False
            missed = seq - expected
        else:
            missed = max(0, seq - st.last_seq)
        if missed > 0 and self.topics == [b""]:  # with a topic subset, holes are expected
            self._stats["gaps"] += 1
            self._stats["missed_messages"] += missed
            # Lost messages belong to the run open before the gap and to the run of the
            # message after it, unless that message opens its run (then nothing of that
            # run can have been lost).
            is_start = isinstance(msg, DocumentMessage) and msg.name == "start"
            runs = {st.run_uid} | (set() if is_start else {msg.run_uid})
            runs.discard(None)
            for run_uid in runs:
                info = self._run(run_uid)  # type: ignore[arg-type]
                info.missed_messages += missed
                info.gaps += 1
            if self._may_log():
                log.warning(
                    "gap: %d message(s) missing before seq %d from %s (runs %s)",
                    missed, seq, pub, sorted(runs),
                )
        stale = not sequenced and seq < st.last_seq  # a heartbeat overtaken by data
        st.last_seq = max(st.last_seq, seq)
        if isinstance(msg, DocumentMessage) and msg.name == "stop":
            st.run_uid = None
        elif not stale:
            st.run_uid = msg.run_uid
        return True
