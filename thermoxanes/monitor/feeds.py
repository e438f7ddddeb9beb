"""Receiver threads: wire-protocol subscribers feeding a :class:`MonitorState`.

Two inputs, each a :class:`thermoxanes.streaming.subscriber.Subscriber` in its own thread:

- the analysis service's map updates (all kinds: ``map_update``, ``heartbeat``, ``stats``);
- the acquisition publisher, subscribed to ``document``, ``stats`` and ``heartbeat``
  only: frames (megabytes each) never reach the monitor's process.

Skipping frames leaves holes in the acquisition's sequence numbers that are not losses.
:class:`SequenceTracker` tells them apart: the publisher sends an event's frames right
after the event (docs/protocol.md, 5.1), one per ``external`` data key of the event's
descriptor, so after an event the next document is expected that many numbers later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from thermoxanes.monitor.state import MonitorState
from thermoxanes.streaming.protocol import (
    SEQUENCED_KINDS,
    DocumentMessage,
    Heartbeat,
    MapUpdateMessage,
    Message,
    StatsMessage,
)
from thermoxanes.streaming.subscriber import Subscriber

log = logging.getLogger(__name__)

#: Topics of the acquisition stream the monitor subscribes to (no frames).
DATA_TOPICS = ("document", "stats", "heartbeat")
THREAD_PREFIX = "thermoxanes-monitor"


class _SubscriberGapFilter(logging.Filter):
    """Silence the subscriber's gap warnings raised in the monitor's own threads.

    The monitor skips frames on purpose, so the generic subscriber sees holes in the
    sequence numbers; :class:`SequenceTracker` does the real accounting.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.threadName.startswith(THREAD_PREFIX)
                    and str(record.msg).startswith("gap:"))


_gap_filter = _SubscriberGapFilter()
logging.getLogger("thermoxanes.streaming.subscriber").addFilter(_gap_filter)


@dataclass
class _PublisherSeq:
    next_seq: int
    descriptors: dict[str, int] = field(default_factory=dict)  # uid -> external keys


class SequenceTracker:
    """Gap accounting for a subscription that may skip frames.

    Parameters
    ----------
    frames_skipped : bool
        The subscription skips ``frame`` messages: an event's frames (one per external
        data key of its descriptor) are expected to fill the numbers after it.

    Attributes
    ----------
    gaps, missed, restarts : int
        Separate gaps, messages missed in them, and publisher restarts seen.
    """

    def __init__(self, frames_skipped: bool) -> None:
        self.frames_skipped = frames_skipped
        self._publishers: dict[str, _PublisherSeq] = {}
        self.gaps = 0
        self.missed = 0
        self.restarts = 0

    def _lost(self, n: int) -> None:
        if n > 0:
            self.gaps += 1
            self.missed += n

    def accept(self, message: Message) -> None:
        """Account for one received message."""
        pub = message.publisher
        seq = message.seq
        sequenced = message.kind in SEQUENCED_KINDS
        st = self._publishers.get(pub)
        if st is None:
            if self._publishers:
                self.restarts += 1
            st = self._publishers[pub] = _PublisherSeq(next_seq=seq if sequenced else seq + 1)
            while len(self._publishers) > 16:
                self._publishers.pop(next(iter(self._publishers)))
        if not sequenced:
            # control messages carry the highest number sent so far
            if seq >= st.next_seq:
                self._lost(seq - st.next_seq + 1)
                st.next_seq = seq + 1
            return
        if seq > st.next_seq:
            self._lost(seq - st.next_seq)
        # seq < next_seq: fewer frames followed the event than expected (none published)
        following = 0
        if isinstance(message, DocumentMessage) and self.frames_skipped:
            doc = message.doc
            if message.name == "descriptor" and isinstance(doc.get("uid"), str):
                keys = doc.get("data_keys") or {}
                st.descriptors[doc["uid"]] = sum(
                    1 for v in keys.values() if isinstance(v, Mapping) and v.get("external"))
                while len(st.descriptors) > 1000:
                    st.descriptors.pop(next(iter(st.descriptors)))
            elif message.name == "event":
                following = st.descriptors.get(str(doc.get("descriptor")), 0)
        st.next_seq = seq + 1 + following


class Feed:
    """One subscriber thread feeding a :class:`MonitorState`.

    Parameters
    ----------
    kind : {"maps", "data"}
        ``"maps"``: the analysis service's map updates; ``"data"``: the acquisition.
    endpoint : str or sequence of str
        Publisher endpoint(s).
    state : MonitorState
        Where messages go.
    snapshot_endpoint : str, optional
        The publisher's snapshot endpoint: on connecting, the feed first takes what the
        publisher kept for late joiners (for map updates: every earlier sweep's
        histograms and means, and the latest maps; docs/protocol.md, section 7).
    """

    def __init__(self, kind: str, endpoint: str | Sequence[str], state: MonitorState,
                 snapshot_endpoint: str | None = None) -> None:
        if kind not in ("maps", "data"):
            raise ValueError(f"unknown feed {kind!r}")
        self.kind = kind
        self.state = state
        topics = DATA_TOPICS if kind == "data" else None
        self.subscriber = Subscriber(endpoint, topics=topics, rcvhwm=100 if kind == "maps"
                                     else 10000, snapshot_endpoint=snapshot_endpoint)
        self.tracker = SequenceTracker(frames_skipped=kind == "data")
        label = endpoint if isinstance(endpoint, str) else ", ".join(endpoint)
        state.update_health(kind, endpoint=label)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{THREAD_PREFIX}-{kind}",
                                        daemon=True)

    def start(self) -> None:
        """Start receiving."""
        self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and close the subscriber."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self.subscriber.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                message = self.subscriber.recv(timeout_s=0.2)
            except Exception:  # noqa: BLE001 - keep the monitor alive, report in the log
                log.exception("monitor %s feed: receive failed", self.kind)
                time.sleep(0.5)
                continue
            if message is None:
                self._sync_counters()
                continue
            try:
                self.handle(message, time.time())
            except Exception:  # noqa: BLE001 - one odd message must not end the feed
                log.exception("monitor %s feed: message %s not shown", self.kind,
                              message.kind)

    def _sync_counters(self) -> None:
        stats = self.subscriber.stats
        self.state.update_health(self.kind, malformed=int(stats.get("malformed", 0)),
                                 reconnects=int(stats.get("reconnects", 0)))

    def handle(self, message: Message, received_at: float) -> None:
        """Account for and dispatch one message."""
        self.tracker.accept(message)
        header: dict[str, Any] = message.header
        state = self.state
        health = state.maps_health if self.kind == "maps" else state.data_health
        with state.lock:
            health.messages += 1
            health.last_rx = received_at
            health.publisher = message.publisher
            health.gaps = self.tracker.gaps
            health.missed = self.tracker.missed
            health.restarts = self.tracker.restarts
            sent_at = header.get("time")
            if isinstance(sent_at, int | float) and not header.get("snapshot"):
                health.lags_s.append((received_at, max(0.0, received_at - float(sent_at))))
            if isinstance(message, Heartbeat):
                interval = header.get("interval_s")
                if isinstance(interval, int | float) and 0 < interval < 3600:
                    health.interval_s = float(interval)
        if isinstance(message, MapUpdateMessage):
            state.handle_map_update(header, message.arrays, received_at)
        elif isinstance(message, DocumentMessage):
            if self.kind == "data":
                state.handle_document(message.name, message.doc, received_at)
        elif isinstance(message, StatsMessage):
            state.handle_stats(self.kind, message.stats, received_at)
            self._sync_counters()
