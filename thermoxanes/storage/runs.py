"""Reading stored runs back from the catalog: lookup by uid, series or scan id; streams
as columns; frames with a clear error when their file is broken.

Used by replay (:mod:`thermoxanes.storage.replay`) and export
(:mod:`thermoxanes.storage.export`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from thermoxanes.storage.catalog import one_line

#: Streams of a XANES sweep, in acquisition order.
SWEEP_STREAMS = ("dark", "flat", "primary")


@dataclass
class StoredStream:
    """One event stream of a stored run.

    Attributes
    ----------
    name : str
        Stream name (``dark``, ``flat``, ``primary``).
    descriptor : dict
        The event descriptor rebuilt from the stream's metadata (uid, time, data_keys,
        configuration, hints, object_classes, run_start, name).
    time_s : numpy.ndarray
        (N,) event times (Unix time, s).
    seq_num : numpy.ndarray
        (N,) event sequence numbers.
    data : dict of str to numpy.ndarray
        (N,) values of every scalar data key.
    timestamps : dict of str to numpy.ndarray
        (N,) timestamps (s) of the data keys that have them.
    external_keys : list of str
        Data keys held in external files (frames), read with :meth:`read_external`.
    """

    name: str
    descriptor: dict[str, Any]
    time_s: np.ndarray
    seq_num: np.ndarray
    data: dict[str, np.ndarray]
    timestamps: dict[str, np.ndarray]
    external_keys: list[str]
    node: Any = field(repr=False, default=None)
    run_uid: str = ""

    def __len__(self) -> int:
        return int(self.time_s.size)

    def read_external(self, key: str) -> np.ndarray:
        """All frames of ``key`` as one (N, H, W) array.

        Raises
        ------
        ValueError
            ``"<file>: <problem>"`` when the file behind the frames cannot be read
            (missing, truncated, corrupt) or holds fewer frames than events.
        """
        what = f"run {self.run_uid} stream {self.name!r} {key}"
        node = self.node[key]
        files = _source_files(node)
        for path in files:
            check_hdf5_file(path, what)
        frames = read_array(node, what, expected_len=len(self))
        if np.issubdtype(frames.dtype, np.integer) and frames.size:
            empty = ~frames.reshape(frames.shape[0], -1).any(axis=1)
            if empty.any():
                where = files[0] if files else what
                raise ValueError(f"{where}: {what}: frame {int(np.argmax(empty))} reads as all "
                                 "zeros (truncated or unflushed file?)")
        return frames


@dataclass
class StoredRun:
    """A stored bluesky run: start and stop documents and its streams' columns."""

    start: dict[str, Any]
    stop: dict[str, Any] | None
    streams: dict[str, StoredStream]
    node: Any = field(repr=False, default=None)

    @property
    def uid(self) -> str:
        """The run uid (start document ``uid``)."""
        return str(self.start["uid"])

    @property
    def sweep_index(self) -> int:
        """Index of the sweep in its series (0 when not set)."""
        return int(self.start.get("sweep_index", 0) or 0)

    @property
    def series_uid(self) -> str | None:
        """Heating series the run belongs to."""
        return self.start.get("series_uid")

    @property
    def label(self) -> str:
        """``sweep_NNN_<uid8>``: a file-name stem for exports."""
        return f"sweep_{self.sweep_index:03d}_{self.uid[:8]}"


def _source_files(node: Any) -> list[str]:
    try:
        sources = node.data_sources() or []
    except Exception:  # noqa: BLE001 - best effort, only to name the file
        return []
    files = []
    for source in sources:
        for asset in getattr(source, "assets", []) or []:
            uri = getattr(asset, "data_uri", "")
            if uri.startswith("file://localhost"):
                uri = uri[len("file://localhost"):]
            elif uri.startswith("file://"):
                uri = uri[len("file://"):]
            files.append(uri.replace("//", "/"))
    return files


def check_hdf5_file(path: str, what: str) -> None:
    """Raise ``ValueError`` if the local HDF5 file ``path`` is missing, truncated or corrupt.

    Needed because tiled's HDF5 reader opens files in SWMR mode, which skips HDF5's
    end-of-file check: chunks past the end of a truncated file read back as zeros
    instead of failing. Files that are not local, or still open for writing, pass.
    """
    import os

    import h5py

    if not path.startswith("/"):
        return
    if not os.path.exists(path):
        raise ValueError(f"{path}: {what}: file missing")
    try:
        with h5py.File(path, "r", locking=False):
            pass
    except OSError as exc:
        text = str(exc).lower()
        if any(word in text for word in ("truncated", "signature", "not an hdf5", "eof")):
            raise ValueError(f"{path}: {what}: truncated or corrupt HDF5 "
                             f"({str(exc).splitlines()[0]})") from None


def read_array(node: Any, what: str, expected_len: int | None = None) -> np.ndarray:
    """Read an array node, turning any failure into one ``ValueError`` line naming the
    file behind it (when tiled says which) and the problem."""
    try:
        array = np.asarray(node.read())
    except Exception as exc:  # noqa: BLE001 - server errors come in many types
        import os

        files = _source_files(node)
        where = files[0] if files else what
        problem = one_line(exc)
        if files and not os.path.exists(files[0]):
            problem = "file missing"
        elif files:
            problem = f"cannot read it, truncated or corrupt HDF5? ({problem})"
        raise ValueError(f"{where}: {what}: {problem}") from None
    if expected_len is not None and (array.ndim < 1 or array.shape[0] < expected_len):
        files = _source_files(node)
        where = files[0] if files else what
        raise ValueError(f"{where}: {what}: {array.shape[0] if array.ndim else 0} frames "
                         f"for {expected_len} events (truncated file?)")
    return array[:expected_len] if expected_len is not None else array


def _read_table(node: Any, where: str) -> dict[str, np.ndarray] | None:
    """The stream's scalar columns in one request (bluesky-tiled-plugins 2 keeps them in
    one ``internal`` table under the composite node), or ``None`` if not laid out so."""
    base = getattr(node, "base", None)
    try:
        if base is None or "internal" not in base:
            return None
        table = base["internal"]
    except Exception:  # noqa: BLE001 - other layouts: fall back to columns
        return None
    try:
        frame = table.read()
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{where}: cannot read its event table ({one_line(exc)})") from None
    return {str(c): frame[c].to_numpy() for c in frame.columns}


def read_stream(run_node: Any, name: str, run_uid: str) -> StoredStream:
    """Read one stream's scalar columns and rebuild its descriptor."""
    node = run_node[name]
    md = dict(node.metadata)
    data_keys = dict(md.get("data_keys") or {})
    external = [k for k, v in data_keys.items() if isinstance(v, dict) and v.get("external")]
    where = f"run {run_uid} stream {name!r}"
    columns = _read_table(node, where)
    if columns is None:  # no single table: one request per column
        columns = {k: read_array(node[k], f"{where} {k}") for k in node if k not in external}
    n = len(columns["time"]) if "time" in columns else 0
    time_s = np.asarray(columns.get("time", np.zeros(0)), dtype=float)
    seq = np.asarray(columns["seq_num"]) if "seq_num" in columns else np.arange(1, n + 1)
    data = {k: np.asarray(columns[k]) for k in data_keys if k not in external and k in columns}
    timestamps = {k: np.asarray(columns[f"ts_{k}"]) for k in data_keys if f"ts_{k}" in columns}
    descriptor = {
        "uid": md.get("uid"),
        "time": md.get("time"),
        "run_start": run_uid,
        "name": name,
        "data_keys": data_keys,
        "configuration": md.get("configuration") or {},
        "hints": md.get("hints") or {},
        "object_keys": {},
        "object_classes": md.get("object_classes") or {},
    }
    for key, dk in data_keys.items():
        obj = dk.get("object_name") if isinstance(dk, dict) else None
        if obj:
            descriptor["object_keys"].setdefault(obj, []).append(key)
    return StoredStream(name=name, descriptor=descriptor, time_s=time_s,
                        seq_num=np.asarray(seq, int), data=data, timestamps=timestamps,
                        external_keys=external, node=node, run_uid=run_uid)


def read_run(run_node: Any) -> StoredRun:
    """Read a run's documents and the scalar columns of its streams (frames stay lazy)."""
    md = dict(run_node.metadata)
    start = dict(md.get("start") or {})
    if "uid" not in start:
        raise ValueError("stored run without a start document")
    stop = dict(md["stop"]) if md.get("stop") else None
    streams = {name: read_stream(run_node, name, start["uid"]) for name in run_node}
    ordered = {n: streams[n] for n in SWEEP_STREAMS if n in streams}
    ordered.update({n: s for n, s in streams.items() if n not in ordered})
    return StoredRun(start=start, stop=stop, streams=ordered, node=run_node)


def resolve_runs(runs: Any, spec: str, where: str = "catalog") -> list[Any]:
    """Run nodes named by ``spec``: a run uid (or unique prefix), a series uid (all its
    sweeps, by sweep index) or a scan id (the latest run with it).

    Raises
    ------
    ValueError
        Nothing in ``where`` matches ``spec``.
    """
    from tiled.queries import Key

    spec = str(spec).strip()
    if not spec:
        raise ValueError("empty run or series id")
    try:
        if spec in runs:
            return [runs[spec]]
        series = list(runs.search(Key("start.series_uid") == spec).values())
        if series:
            return sorted(series, key=lambda r: (
                int(r.metadata["start"].get("sweep_index", 0) or 0),
                float(r.metadata["start"].get("time", 0.0))))
        if spec.isdigit():
            return [runs[int(spec)]]
        return [runs[spec]]  # partial uid
    except (KeyError, IndexError):
        raise ValueError(f"{where}: no run, series or scan id {spec!r}") from None
    except Exception as exc:  # noqa: BLE001 - server/client errors: one line
        raise ValueError(f"{where}: cannot look up {spec!r} ({one_line(exc)})") from None


__all__ = ["StoredRun", "StoredStream", "read_array", "read_run", "read_stream",
           "resolve_runs", "SWEEP_STREAMS"]
