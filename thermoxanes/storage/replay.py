"""Replay stored runs through the wire protocol, as they were acquired.

A :class:`Replayer` reads runs back from the catalog and feeds rebuilt bluesky documents
(start, descriptors, events, stop) to a :class:`thermoxanes.streaming.publisher.Publisher`,
which sends them and, after each event, its frames, exactly as during acquisition. The
analysis service cannot tell a replay from a live run: the start document (same uid),
the energies, temperatures and frames are the stored ones, so the maps it fits are equal,
bit for bit, to the live maps.

Timing comes from the stored event times: ``speed=1`` replays in real time, ``speed=10``
ten times faster, ``speed=math.inf`` as fast as the publisher sends (its queue is kept
below half its high-water mark, so nothing is dropped on this side).

What differs from the live stream: resource and datum documents are not sent (frames
travel inline as ``frame`` messages; their datum ids are ``replay/<descriptor>/<seq>/<key>``),
event uids are rebuilt deterministically from descriptor uid and sequence number (the
catalog does not keep them), and the ``publisher`` identifier is the replayer's.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from thermoxanes.storage.runs import StoredRun, read_run

log = logging.getLogger(__name__)

_NAMESPACE = uuid.UUID("6f1d3c62-3b1e-4c55-9a8e-2c7f0e4d9b11")
_RANK = {"start": 0, "descriptor": 1, "event": 2, "stop": 3}


@dataclass
class _Doc:
    time_s: float
    rank: int
    order: int
    name: str
    doc: dict[str, Any]
    frames: dict[str, np.ndarray]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def run_documents(run: StoredRun) -> list[_Doc]:
    """Rebuilt documents of ``run`` with their frames, in acquisition order.

    Every frame is read first, so a broken file raises before anything is sent.

    Raises
    ------
    ValueError
        A frame file cannot be read (see :meth:`StoredStream.read_external`).
    """
    docs: list[_Doc] = []
    order = 0
    start_time = float(run.start.get("time", 0.0))
    docs.append(_Doc(start_time, _RANK["start"], order, "start", dict(run.start), {}))
    for stream in run.streams.values():
        externals = {key: stream.read_external(key) for key in stream.external_keys}
        desc = dict(stream.descriptor)
        desc_uid = str(desc.get("uid") or uuid.uuid5(_NAMESPACE, f"{run.uid}/{stream.name}"))
        desc["uid"] = desc_uid
        first = float(stream.time_s[0]) if len(stream) else start_time
        desc_time = desc.get("time")
        desc_time = float(desc_time) if isinstance(desc_time, (int, float)) else first
        desc["time"] = desc_time
        order += 1
        docs.append(_Doc(min(desc_time, first), _RANK["descriptor"], order, "descriptor",
                         desc, {}))
        for i in range(len(stream)):
            seq = int(stream.seq_num[i])
            data = {key: _plain(values[i]) for key, values in stream.data.items()}
            timestamps = {key: _plain(values[i]) for key, values in stream.timestamps.items()}
            frames = {}
            for key, stack in externals.items():
                datum_id = f"replay/{desc_uid}/{seq}/{key}"
                data[key] = datum_id
                frames[datum_id] = stack[i]
                timestamps.setdefault(key, float(stream.time_s[i]))
            event = {
                "uid": str(uuid.uuid5(_NAMESPACE, f"{desc_uid}/{seq}")),
                "time": float(stream.time_s[i]),
                "descriptor": desc_uid,
                "seq_num": seq,
                "data": data,
                "timestamps": timestamps,
                "filled": dict.fromkeys(externals, False),
            }
            order += 1
            docs.append(_Doc(event["time"], _RANK["event"], order, "event", event, frames))
    last = max((d.time_s for d in docs), default=start_time)
    if run.stop is not None:
        stop = dict(run.stop)
    else:
        stop = {"uid": str(uuid.uuid5(_NAMESPACE, f"{run.uid}/stop")), "time": last,
                "run_start": run.uid, "exit_status": "fail",
                "reason": "replay: the stored run has no stop document",
                "num_events": {n: len(s) for n, s in run.streams.items()}}
    docs.append(_Doc(max(float(stop.get("time", last)), last), _RANK["stop"], order + 1,
                     "stop", stop, {}))
    docs.sort(key=lambda d: (d.time_s, d.rank, d.order))
    return docs


class Replayer:
    """Re-publish stored runs on a wire-protocol endpoint.

    Parameters
    ----------
    endpoint : str
        Endpoint to bind (``tcp://127.0.0.1:5577``; ``tcp://127.0.0.1:*`` picks a port,
        see :attr:`endpoint`).
    speed : float
        Replay speed: 1 real time, ``x`` x times faster, ``math.inf`` full speed.
    header_keys : dict, optional
        Frame header field -> event data key (see ``Publisher``), e.g.
        ``{"theta_deg": "rotation"}``.
    hwm : int
        Publisher high-water mark (messages).
    snapshot_endpoint : str, optional
        Also answer late joiners there (clone pattern, ``docs/protocol.md`` section 7).
    sleep, clock : callable
        ``sleep(seconds)`` and a monotonic ``clock()`` in seconds; replaced in tests.

    Raises
    ------
    ValueError
        ``speed`` is not positive.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        speed: float = math.inf,
        header_keys: Mapping[str, str] | None = None,
        hwm: int = 1000,
        snapshot_endpoint: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from thermoxanes.streaming.publisher import Publisher

        if not speed > 0:
            raise ValueError(f"replay speed must be > 0 (inf: full speed), got {speed}")
        self.speed = float(speed)
        self._sleep = sleep
        self._now = clock
        self._frames: dict[str, np.ndarray] = {}
        self.publisher = Publisher(endpoint, frame_lookup=self._lookup,
                                   header_keys=header_keys, hwm=hwm,
                                   snapshot_endpoint=snapshot_endpoint)
        self.endpoint: str = self.publisher.endpoint
        self.snapshot_endpoint: str | None = self.publisher.snapshot_endpoint
        self._clock: tuple[float, float] | None = None  # (first document time, wall time)

    def _lookup(self, datum_id: str) -> np.ndarray | None:
        return self._frames.pop(datum_id, None)

    def _wait_until(self, doc_time_s: float) -> None:
        if math.isinf(self.speed):
            limit = max(1, self.publisher.hwm // 2)
            while self.publisher.stats.get("queue_depth", 0) >= limit:
                self._sleep(0.001)
            return
        if self._clock is None:
            self._clock = (doc_time_s, self._now())
            return
        t0, wall0 = self._clock
        delay = wall0 + (doc_time_s - t0) / self.speed - self._now()
        if delay > 0:
            self._sleep(delay)

    def replay_run(self, run: StoredRun | Any) -> dict[str, Any]:
        """Publish one run (a :class:`StoredRun` or a tiled run node); returns counts."""
        if not isinstance(run, StoredRun):
            run = read_run(run)
        docs = run_documents(run)
        n_events = n_frames = 0
        t_wall = time.monotonic()
        for item in docs:
            self._wait_until(item.time_s)
            self._frames.update(item.frames)
            self.publisher(item.name, item.doc)
            for datum_id in item.frames:  # frames the publisher did not take
                self._frames.pop(datum_id, None)
            n_events += item.name == "event"
            n_frames += len(item.frames)
        log.info("replayed run %s (sweep %d): %d events, %d frames", run.uid[:8],
                 run.sweep_index, n_events, n_frames)
        return {"run_uid": run.uid, "sweep_index": run.sweep_index,
                "series_uid": run.series_uid, "events": n_events, "frames": n_frames,
                "duration_s": time.monotonic() - t_wall}

    def replay(self, runs: Iterable[StoredRun | Any]) -> list[dict[str, Any]]:
        """Publish ``runs`` one after the other, keeping their relative timing."""
        return [self.replay_run(run) for run in runs]

    def iter_replay(self, runs: Iterable[StoredRun | Any]) -> Iterator[dict[str, Any]]:
        """Like :meth:`replay`, yielding each run's counts as it is done."""
        for run in runs:
            yield self.replay_run(run)

    def flush(self, timeout_s: float = 60.0) -> bool:
        """Wait until everything queued was handed to ZeroMQ."""
        return self.publisher.flush(timeout_s=timeout_s)

    def close(self) -> None:
        """Flush and close the publisher."""
        self.publisher.close(timeout_s=10.0)

    def __enter__(self) -> Replayer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Replayer", "run_documents"]
