"""Late-joiner snapshots: the clone pattern of the ZeroMQ guide, applied to one run.

The publisher keeps the state a late subscriber needs to analyse the run in progress:
the start document, descriptors, resource documents, and the events and frames of the
calibration streams (``dark`` and ``flat`` by default), and of the map updates sent so
far the latest in full and, before it, a summary of each earlier one (its header and the
small arrays its ``summary_arrays`` header field names, e.g. histograms), so that a
monitor joining mid-series sees every sweep.  A ROUTER socket bound at the
snapshot endpoint answers each request with those messages, exactly as they were sent
(same parts, same sequence numbers), followed by a ``snapshot_end`` message whose
``seq`` is the last sequence number the state reflects.  The subscriber (which connects
its SUB socket *before* asking) then drops live messages with ``seq`` at most that and
carries on.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import zmq

from thermoxanes.streaming import security
from thermoxanes.streaming.protocol import PROTOCOL_VERSION, encode_snapshot_end

log = logging.getLogger(__name__)

#: The request a client sends on its DEALER socket (one part, UTF-8 JSON).
SNAPSHOT_REQUEST: bytes = json.dumps({"v": PROTOCOL_VERSION, "request": "snapshot"}).encode()


@dataclass
class SnapshotState:
    """Thread-safe state of the run in progress, as already sent on the PUB socket.

    Attributes
    ----------
    publisher : str
        Publisher identifier, for the ``snapshot_end`` header.
    max_map_history : int
        Summaries of earlier map updates kept (the oldest go first).
    """

    publisher: str
    max_bytes: int = 1 << 30
    max_map_history: int = 1000
    run_uid: str | None = None
    retained_bytes: int = 0
    last_seq: int = -1
    omitted: int = 0
    entries: list[tuple[int, list[Any]]] = field(default_factory=list)
    latest_map: tuple[int, list[Any]] | None = None
    map_history: deque = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(
        self,
        seq: int,
        parts: Sequence[Any],
        *,
        run_uid: str | None,
        retain: bool,
        begins_run: bool = False,
        ends_run: bool = False,
        is_map: bool = False,
        nbytes: int = 0,
    ) -> None:
        """Note one sequenced message after it was sent.

        Parameters
        ----------
        seq : int
            Its sequence number.
        parts : sequence
            Its parts (kept by reference when retained).
        run_uid : str or None
            Run it belongs to.
        retain : bool
            Whether a late joiner needs it (start, descriptor, resource, dark/flat).
        begins_run, ends_run : bool
            For start and stop documents.
        is_map : bool
            A map update: the latest one is always offered to late joiners, earlier
            ones as summaries (:func:`map_summary`).
        nbytes : int
            Payload bytes; retained payloads are capped at ``max_bytes`` per run, beyond
            which messages count as omitted.
        """
        with self._lock:
            self.last_seq = max(self.last_seq, seq)
            if is_map:
                self.latest_map = (seq, list(parts))
                summary = map_summary(parts)
                if summary is not None:
                    self.map_history.append((seq, summary))
                    while len(self.map_history) > self.max_map_history:
                        self.map_history.popleft()
                return
            if begins_run:
                self.run_uid = run_uid
                self.entries = [(seq, list(parts))]
                self.omitted = 0
                self.retained_bytes = 0
                return
            if ends_run and run_uid == self.run_uid:
                self.run_uid = None
                self.entries = []
                self.omitted = 0
                self.retained_bytes = 0
                return
            if run_uid is None or run_uid != self.run_uid:
                return
            if retain and self.retained_bytes + nbytes <= self.max_bytes:
                self.entries.append((seq, list(parts)))
                self.retained_bytes += nbytes
            else:
                if retain and self.omitted == 0:
                    log.warning("snapshot of run %s exceeds %d bytes; later calibration "
                                "frames are not offered to late joiners", run_uid,
                                self.max_bytes)
                self.omitted += 1

    def note_seq(self, seq: int) -> None:
        """Note a sequenced message that the state does not need."""
        with self._lock:
            self.last_seq = max(self.last_seq, seq)

    def snapshot(self) -> tuple[list[list[Any]], list[bytes]]:
        """Return the retained messages and the ``snapshot_end`` message.

        Returns
        -------
        tuple
            ``(messages, end)``: the messages in sequence order, then the end marker,
            whose header also carries ``omitted`` (messages of the run not retained)
            and ``run_first_seq``.
        """
        with self._lock:
            entries = list(self.entries)
            if self.latest_map is not None:
                latest = self.latest_map[0]
                entries.extend(e for e in self.map_history if e[0] != latest)
                entries.append(self.latest_map)
            entries.sort(key=lambda e: e[0])
            end = encode_snapshot_end(
                seq=self.last_seq, publisher=self.publisher, run_uid=self.run_uid
            )
            header = json.loads(end[1])
            header["omitted"] = self.omitted
            header["run_first_seq"] = self.entries[0][0] if self.entries else None
            end[1] = json.dumps(header, separators=(",", ":")).encode()
            return [parts for _, parts in entries], end


def map_summary(parts: Sequence[Any]) -> list[Any] | None:
    """A map update's summary for late joiners, or ``None`` if it names none.

    The header as sent, plus ``"summary": true``, with only the arrays listed in its
    ``summary_arrays`` field (names of small arrays such as ``valence_histogram``); the
    large maps are left out.  The buffers are kept by reference.
    """
    if len(parts) < 2:
        return None
    try:
        header = json.loads(bytes(parts[1]))
    except (ValueError, TypeError):
        return None
    names = header.get("summary_arrays") if isinstance(header, dict) else None
    descs = header.get("arrays") if isinstance(header, dict) else None
    if not isinstance(names, list) or not names or not isinstance(descs, list) \
            or len(descs) != len(parts) - 2:
        return None
    wanted = {n for n in names if isinstance(n, str)}
    keep = [i for i, d in enumerate(descs) if isinstance(d, dict) and d.get("name") in wanted]
    header["arrays"] = [descs[i] for i in keep]
    header["summary"] = True
    encoded = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    return [parts[0], encoded, *(parts[2 + i] for i in keep)]


class SnapshotServer:
    """ROUTER socket answering snapshot requests from a background thread.

    Parameters
    ----------
    context : zmq.Context
        Context to create the socket in.
    endpoint : str
        Endpoint to bind (``tcp://127.0.0.1:*`` picks a free port).
    state : SnapshotState
        The state to serve.
    curve : security.CurveServer or None
        CURVE settings (the authenticator must already run on ``context``).
    """

    def __init__(
        self,
        context: zmq.Context,
        endpoint: str,
        state: SnapshotState,
        curve: security.CurveServer | None = None,
    ) -> None:
        self._state = state
        self._socket = context.socket(zmq.ROUTER)
        self._socket.linger = 0
        self._socket.sndhwm = 0  # a snapshot must not be cut short
        if curve is not None:
            security.apply_server(self._socket, curve)
        self._socket.bind(endpoint)
        self.endpoint: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.requests = 0
        self.bad_requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="txm-snapshot", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if not poller.poll(100):
                    continue
                try:
                    request = self._socket.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    continue
                if len(request) < 2 or not self._valid(request[-1]):
                    self.bad_requests += 1
                    continue
                identity = request[0]
                self.requests += 1
                messages, end = self._state.snapshot()
                try:
                    for parts in messages:
                        self._socket.send_multipart([identity, *parts], copy=False)
                    self._socket.send_multipart([identity, *end])
                except zmq.ZMQError as exc:  # peer vanished
                    log.warning("snapshot reply failed: %s", exc)
        except zmq.ContextTerminated:
            pass
        finally:
            self._socket.close(0)

    @staticmethod
    def _valid(request: bytes) -> bool:
        try:
            obj = json.loads(request.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return False
        return isinstance(obj, dict) and obj.get("request") == "snapshot"

    def close(self) -> None:
        """Stop the thread and close the socket."""
        self._stop.set()
        self._thread.join(timeout=5)
