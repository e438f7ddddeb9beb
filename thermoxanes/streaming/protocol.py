"""The thermoxanes ZeroMQ wire protocol, version 1: pure encoding and decoding, no sockets.

Every message is a ZeroMQ multipart message::

    part 0   topic    ASCII kind name: b"document", b"frame", b"map_update", b"heartbeat",
                      b"stats" (b"snapshot_end" only on the snapshot socket)
    part 1   header   UTF-8 JSON object (no NaN/Infinity), fields below
    part 2.. payload  kind-dependent: an encoded document, one raw array buffer, N raw
                      array buffers, or nothing

``docs/protocol.md`` is the normative description; this module implements it.  Nothing
here pickles; decoding never executes code and never raises anything but
:class:`ProtocolError`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from thermoxanes.streaming._encoding import (
    ENCODINGS,
    EncodingError,
    finite_or_none,
    pack,
    to_wire_safe,
    unpack,
    without_non_finite,
)

#: Version of the wire protocol; the ``v`` field of every header.
PROTOCOL_VERSION: int = 1

KIND_DOCUMENT = "document"
KIND_FRAME = "frame"
KIND_MAP_UPDATE = "map_update"
KIND_HEARTBEAT = "heartbeat"
KIND_STATS = "stats"
KIND_SNAPSHOT_END = "snapshot_end"

#: Message kinds, which are also the topics (part 0).
KINDS: tuple[str, ...] = (
    KIND_DOCUMENT,
    KIND_FRAME,
    KIND_MAP_UPDATE,
    KIND_HEARTBEAT,
    KIND_STATS,
    KIND_SNAPSHOT_END,
)

#: Kinds that consume a publisher sequence number.  Heartbeat, stats and snapshot_end
#: are control messages: their ``seq`` is the highest sequence number sent so far.
SEQUENCED_KINDS: frozenset[str] = frozenset({KIND_DOCUMENT, KIND_FRAME, KIND_MAP_UPDATE})

#: bluesky document names accepted in ``document`` messages.
DOCUMENT_NAMES: frozenset[str] = frozenset(
    {
        "start",
        "descriptor",
        "event",
        "event_page",
        "stop",
        "resource",
        "datum",
        "datum_page",
        "stream_resource",
        "stream_datum",
    }
)

#: Array element types allowed on the wire (numpy names; byte order is separate).
DTYPE_NAMES: frozenset[str] = frozenset(
    {
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    }
)

BYTE_ORDERS: tuple[str, ...] = ("little", "big")

#: Header fields set by the encoder that extra fields may not override.
RESERVED_HEADER_FIELDS: frozenset[str] = frozenset(
    {
        "v",
        "kind",
        "seq",
        "time",
        "publisher",
        "run_uid",
        "dtype",
        "shape",
        "byte_order",
        "nbytes",
        "arrays",
        "encoding",
        "name",
    }
)

MAX_HEADER_BYTES: int = 1024 * 1024
MAX_NDIM: int = 8
MAX_ARRAYS: int = 256
MAX_ARRAY_BYTES: int = 1 << 34

_TOPICS: dict[str, bytes] = {k: k.encode("ascii") for k in KINDS}


class ProtocolError(ValueError):
    """A multipart message does not follow the wire protocol."""


# --------------------------------------------------------------------------- messages


@dataclass
class Message:
    """Base of all decoded messages.

    Attributes
    ----------
    header : dict
        The decoded JSON header; always has ``v``, ``kind``, ``seq``, ``time``,
        ``publisher`` and ``run_uid``.
    """

    header: dict[str, Any]

    @property
    def kind(self) -> str:
        """Message kind (also the topic)."""
        return self.header["kind"]

    @property
    def seq(self) -> int:
        """Publisher sequence number (for control messages: highest sent so far)."""
        return self.header["seq"]

    @property
    def publisher(self) -> str:
        """Identifier of the publisher instance that sent the message."""
        return self.header["publisher"]

    @property
    def run_uid(self) -> str | None:
        """uid of the bluesky run the message belongs to, or ``None``."""
        return self.header.get("run_uid")


@dataclass
class DocumentMessage(Message):
    """A bluesky document: ``name`` ("start", "event", ...) and ``doc`` (plain dict)."""

    name: str = ""
    doc: dict[str, Any] = field(default_factory=dict)


@dataclass
class FrameMessage(Message):
    """One detector frame.  ``array`` is read-only and may share the receive buffer."""

    array: np.ndarray = field(default_factory=lambda: np.empty(0))


@dataclass
class MapUpdateMessage(Message):
    """Analysis results: named arrays (edge energy maps, histograms, ...)."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Heartbeat(Message):
    """Sent every ``interval_s`` seconds by a publisher, also when idle."""


@dataclass
class StatsMessage(Message):
    """Publisher statistics (sent, dropped, queue depth, ...)."""

    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class SnapshotEnd(Message):
    """Last message of a snapshot reply; ``seq`` is the state's sequence number."""


# --------------------------------------------------------------------------- helpers


def dtype_to_wire(dtype: np.dtype) -> tuple[str, str]:
    """Return the wire ``(dtype, byte_order)`` pair for a numpy dtype.

    Parameters
    ----------
    dtype : numpy.dtype
        A numeric or boolean dtype.

    Returns
    -------
    tuple of str
        Element type name (e.g. ``"uint16"``) and ``"little"`` or ``"big"``
        (single-byte types report ``"little"``).

    Raises
    ------
    ProtocolError
        For dtypes that cannot travel (structured, object, strings, datetimes).
    """
    dtype = np.dtype(dtype)
    name = dtype.name
    if name not in DTYPE_NAMES or dtype.fields is not None:
        raise ProtocolError(f"dtype {dtype} cannot travel on the wire")
    if dtype.byteorder == ">" or (dtype.byteorder == "=" and not np.little_endian):
        order = "big"
    else:
        order = "little"
    return name, order


def dtype_from_wire(name: Any, byte_order: Any) -> np.dtype:
    """Return the numpy dtype for wire ``dtype`` and ``byte_order`` fields.

    Parameters
    ----------
    name : Any
        Element type name from :data:`DTYPE_NAMES`.
    byte_order : Any
        ``"little"`` or ``"big"``.

    Returns
    -------
    numpy.dtype

    Raises
    ------
    ProtocolError
        For unknown names or byte orders.
    """
    if not isinstance(name, str) or name not in DTYPE_NAMES:
        raise ProtocolError(f"unknown dtype {name!r}")
    if byte_order not in BYTE_ORDERS:
        raise ProtocolError(f"unknown byte_order {byte_order!r}")
    dt = np.dtype(name)
    if dt.itemsize > 1:
        dt = dt.newbyteorder("<" if byte_order == "little" else ">")
    return dt


def _array_descriptor(array: np.ndarray) -> dict[str, Any]:
    name, order = dtype_to_wire(array.dtype)
    return {
        "dtype": name,
        "byte_order": order,
        "shape": [int(n) for n in array.shape],
        "nbytes": int(array.nbytes),
    }


def _array_buffer(array: np.ndarray) -> np.ndarray:
    """Return a flat uint8 view of a C-contiguous array (a buffer zmq can send)."""
    return array.reshape(-1).view(np.uint8)


def _contiguous(array: Any) -> np.ndarray:
    arr = np.asarray(array)
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return arr


def encode_header(header: Mapping[str, Any]) -> bytes:
    """Encode a header dict as compact UTF-8 JSON (NaN and Infinity are rejected).

    Parameters
    ----------
    header : Mapping
        Wire-safe header fields.

    Returns
    -------
    bytes
    """
    try:
        return json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"header is not JSON-safe: {exc}") from exc


def make_header(
    kind: str,
    *,
    seq: int,
    publisher: str,
    run_uid: str | None = None,
    time_s: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the common header fields, plus ``extra`` (made wire-safe).

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`.
    seq : int
        Sequence number (see :data:`SEQUENCED_KINDS`).
    publisher : str
        Publisher instance identifier.
    run_uid : str or None
        Run the message belongs to.
    time_s : float or None
        Unix time in seconds; now if ``None``.
    extra : Mapping or None
        Additional fields; keys in :data:`RESERVED_HEADER_FIELDS` are rejected; NaN
        and infinite floats become ``null``.

    Returns
    -------
    dict
    """
    header: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "kind": kind,
        "seq": int(seq),
        "time": float(time.time() if time_s is None else time_s),
        "publisher": publisher,
        "run_uid": run_uid,
    }
    if extra:
        clash = RESERVED_HEADER_FIELDS.intersection(extra)
        if clash:
            raise ProtocolError(f"extra header fields clash with reserved ones: {sorted(clash)}")
        try:
            safe = to_wire_safe(dict(extra))
        except EncodingError as exc:
            raise ProtocolError(f"header field cannot travel: {exc}") from exc
        header.update(without_non_finite(safe))
    return header


def run_uid_of(name: str, doc: Mapping[str, Any]) -> str | None:
    """Return the run uid that a document names directly, if any.

    Parameters
    ----------
    name : str
        Document name.
    doc : Mapping
        The document.

    Returns
    -------
    str or None
        ``uid`` of a start document, ``run_start`` of stop, descriptor, resource and
        stream_resource documents, ``None`` otherwise (events name their descriptor).
    """
    if name == "start":
        uid = doc.get("uid")
    else:
        uid = doc.get("run_start")
    return uid if isinstance(uid, str) else None


# --------------------------------------------------------------------------- encoders


def encode_document(
    name: str,
    doc: Mapping[str, Any],
    *,
    seq: int,
    publisher: str,
    run_uid: str | None = None,
    encoding: str = "msgpack",
    time_s: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> list[bytes]:
    """Encode a bluesky document message.

    Parameters
    ----------
    name : str
        Document name, one of :data:`DOCUMENT_NAMES`.
    doc : Mapping
        The document; numpy values are converted, and values with no JSON/msgpack
        form (paths, bytes, objects) travel as their ``str()`` (see ``to_wire_safe``).
    seq : int
        Publisher sequence number.
    publisher : str
        Publisher instance identifier.
    run_uid : str or None
        Run uid; derived from the document when ``None`` (start, stop, descriptor,
        resource, stream_resource).
    encoding : str
        ``"msgpack"`` (default) or ``"json"``.
    time_s : float or None
        Send time in Unix seconds; now if ``None``.
    extra : Mapping or None
        Additional header fields.

    Returns
    -------
    list of bytes
        ``[topic, header, payload]``.
    """
    if name not in DOCUMENT_NAMES:
        raise ProtocolError(f"unknown document name {name!r}")
    if encoding not in ENCODINGS:
        raise ProtocolError(f"unknown encoding {encoding!r}")
    try:
        payload = pack(to_wire_safe(doc, strict=False), encoding)
    except (EncodingError, TypeError, ValueError, OverflowError) as exc:
        raise ProtocolError(f"document cannot be encoded: {exc}") from exc
    if run_uid is None:
        run_uid = run_uid_of(name, doc)
    header = make_header(
        KIND_DOCUMENT, seq=seq, publisher=publisher, run_uid=run_uid, time_s=time_s, extra=extra
    )
    header["name"] = name
    header["encoding"] = encoding
    uid = doc.get("uid", doc.get("datum_id"))
    header["doc_uid"] = uid if isinstance(uid, str) else None
    return [_TOPICS[KIND_DOCUMENT], encode_header(header), payload]


def encode_frame(
    array: np.ndarray,
    *,
    seq: int,
    publisher: str,
    run_uid: str | None,
    stream: str,
    energy_ev: float | None = None,
    temperature_c: float | None = None,
    theta_deg: float | None = None,
    time_s: float | None = None,
    **extra: Any,
) -> list[Any]:
    """Encode a frame message; the array buffer is not copied.

    Parameters
    ----------
    array : numpy.ndarray
        The frame (any numeric dtype, any shape up to 8 dimensions); made C-contiguous
        (a copy only if it is not already).
    seq : int
        Publisher sequence number.
    publisher : str
        Publisher instance identifier.
    run_uid : str or None
        Run uid.
    stream : str
        Stream name ("primary", "dark", "flat", ...).
    energy_ev, temperature_c, theta_deg : float or None
        Photon energy (eV), sample temperature (°C), rotation angle (degrees); non-finite
        values travel as ``null``.
    time_s : float or None
        Send time in Unix seconds; now if ``None``.
    **extra : Any
        Further header fields (``descriptor_uid``, ``event_uid``, ``seq_num``,
        ``data_key``, ``frame_index``, ...).

    Returns
    -------
    list
        ``[topic, header, buffer]``; ``buffer`` is a flat ``uint8`` view of the array.
    """
    arr = _contiguous(array)
    desc = _array_descriptor(arr)
    if arr.ndim > MAX_NDIM:
        raise ProtocolError(f"frame has {arr.ndim} dimensions; at most {MAX_NDIM}")
    header = make_header(
        KIND_FRAME, seq=seq, publisher=publisher, run_uid=run_uid, time_s=time_s, extra=extra
    )
    header["stream"] = str(stream)
    header["energy_ev"] = finite_or_none(energy_ev)
    header["temperature_c"] = finite_or_none(temperature_c)
    header["theta_deg"] = finite_or_none(theta_deg)
    header.update(desc)
    return [_TOPICS[KIND_FRAME], encode_header(header), _array_buffer(arr)]


def encode_map_update(
    fields: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    *,
    seq: int,
    publisher: str,
    run_uid: str | None = None,
    time_s: float | None = None,
) -> list[Any]:
    """Encode a map-update message (analysis results).

    Parameters
    ----------
    fields : Mapping
        Header fields describing the update (``sweep_index``, ``temperature_c``, ...);
        a ``run_uid`` entry is used as the run uid when ``run_uid`` is ``None``.
    arrays : Mapping of str to numpy.ndarray
        Named arrays, sent in iteration order, one buffer each.
    seq : int
        Publisher sequence number.
    publisher : str
        Publisher instance identifier.
    run_uid : str or None
        Run uid.
    time_s : float or None
        Send time in Unix seconds; now if ``None``.

    Returns
    -------
    list
        ``[topic, header, buffer_0, ..., buffer_{N-1}]``.
    """
    fields = dict(fields)
    if run_uid is None:
        ru = fields.get("run_uid")
        run_uid = ru if isinstance(ru, str) else None
    fields.pop("run_uid", None)
    if len(arrays) > MAX_ARRAYS:
        raise ProtocolError(f"at most {MAX_ARRAYS} arrays per map update")
    descs: list[dict[str, Any]] = []
    buffers: list[Any] = []
    for name, array in arrays.items():
        arr = _contiguous(array)
        if arr.ndim > MAX_NDIM:
            raise ProtocolError(f"array {name!r} has more than {MAX_NDIM} dimensions")
        descs.append({"name": str(name), **_array_descriptor(arr)})
        buffers.append(_array_buffer(arr))
    header = make_header(
        KIND_MAP_UPDATE, seq=seq, publisher=publisher, run_uid=run_uid, time_s=time_s,
        extra=fields,
    )
    header["arrays"] = descs
    return [_TOPICS[KIND_MAP_UPDATE], encode_header(header), *buffers]


def encode_heartbeat(
    *,
    seq: int,
    publisher: str,
    run_uid: str | None = None,
    interval_s: float | None = None,
    time_s: float | None = None,
    **extra: Any,
) -> list[bytes]:
    """Encode a heartbeat; ``seq`` is the highest sequence number sent so far (-1: none).

    Parameters
    ----------
    seq : int
        Highest sequence number sent so far.
    publisher : str
        Publisher instance identifier.
    run_uid : str or None
        Run open at the publisher, if any.
    interval_s : float or None
        Heartbeat period in seconds.
    time_s : float or None
        Send time in Unix seconds.
    **extra : Any
        Further header fields.

    Returns
    -------
    list of bytes
        ``[topic, header]``.
    """
    header = make_header(
        KIND_HEARTBEAT, seq=seq, publisher=publisher, run_uid=run_uid, time_s=time_s, extra=extra
    )
    header["interval_s"] = finite_or_none(interval_s)
    return [_TOPICS[KIND_HEARTBEAT], encode_header(header)]


def encode_stats(
    stats: Mapping[str, Any],
    *,
    seq: int,
    publisher: str,
    run_uid: str | None = None,
    encoding: str = "json",
    time_s: float | None = None,
) -> list[bytes]:
    """Encode a stats message; ``seq`` is the highest sequence number sent so far.

    Parameters
    ----------
    stats : Mapping
        Counters (``sent``, ``dropped``, ``queue_depth``, ...).
    seq : int
        Highest sequence number sent so far.
    publisher : str
        Publisher instance identifier.
    run_uid : str or None
        Run open at the publisher, if any.
    encoding : str
        ``"json"`` (default) or ``"msgpack"``.
    time_s : float or None
        Send time in Unix seconds.

    Returns
    -------
    list of bytes
        ``[topic, header, payload]``.
    """
    if encoding not in ENCODINGS:
        raise ProtocolError(f"unknown encoding {encoding!r}")
    header = make_header(KIND_STATS, seq=seq, publisher=publisher, run_uid=run_uid, time_s=time_s)
    header["encoding"] = encoding
    payload = pack(to_wire_safe(stats, strict=False), encoding)
    return [_TOPICS[KIND_STATS], encode_header(header), payload]


def encode_snapshot_end(*, seq: int, publisher: str, run_uid: str | None) -> list[bytes]:
    """Encode the last message of a snapshot reply.

    Parameters
    ----------
    seq : int
        Sequence number of the state: every sequenced message with ``seq`` at most
        this is contained in, or superseded by, the snapshot.
    publisher : str
        Publisher instance identifier.
    run_uid : str or None
        Run the snapshot describes (``None``: no run open).

    Returns
    -------
    list of bytes
    """
    header = make_header(KIND_SNAPSHOT_END, seq=seq, publisher=publisher, run_uid=run_uid)
    return [_TOPICS[KIND_SNAPSHOT_END], encode_header(header)]


# --------------------------------------------------------------------------- decoder


def _as_buffer(part: Any) -> memoryview:
    buf = getattr(part, "buffer", None)  # zmq.Frame
    if buf is None:
        buf = part
    try:
        mv = memoryview(buf)
    except TypeError as exc:
        raise ProtocolError(f"message part of type {type(part).__name__} is not a buffer") from exc
    if mv.ndim != 1 or mv.itemsize != 1:
        mv = mv.cast("B")
    return mv


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > MAX_NDIM:
        raise ProtocolError(f"bad shape {value!r}")
    shape: list[int] = []
    for n in value:
        if not _is_int(n) or n < 0 or n > MAX_ARRAY_BYTES:
            raise ProtocolError(f"bad shape {value!r}")
        shape.append(n)
    return tuple(shape)


def _decode_array(desc: Any, part: Any) -> np.ndarray:
    if not isinstance(desc, Mapping):
        raise ProtocolError("array descriptor is not an object")
    dtype = dtype_from_wire(desc.get("dtype"), desc.get("byte_order"))
    shape = _shape(desc.get("shape"))
    n_items = 1
    for n in shape:
        n_items *= n
    expected = n_items * dtype.itemsize
    if expected > MAX_ARRAY_BYTES:
        raise ProtocolError("array too large")
    nbytes = desc.get("nbytes", expected)
    if not _is_int(nbytes) or nbytes != expected:
        raise ProtocolError(f"nbytes {nbytes!r} disagrees with shape and dtype ({expected})")
    buf = _as_buffer(part)
    if len(buf) != expected:
        raise ProtocolError(f"buffer holds {len(buf)} bytes, header says {expected}")
    arr = np.frombuffer(buf, dtype=dtype) if expected else np.empty(0, dtype=dtype)
    arr = arr.reshape(shape)
    if arr.flags.writeable:
        arr.flags.writeable = False
    return arr


def decode_header(part: Any) -> dict[str, Any]:
    """Decode and validate the common fields of a header part.

    Parameters
    ----------
    part : bytes-like
        Part 1 of a message.

    Returns
    -------
    dict

    Raises
    ------
    ProtocolError
        If the header is not a JSON object with valid common fields.
    """
    buf = _as_buffer(part)
    if len(buf) > MAX_HEADER_BYTES:
        raise ProtocolError("header too large")
    try:
        header = json.loads(bytes(buf).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ProtocolError(f"header is not UTF-8 JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ProtocolError("header is not a JSON object")
    v = header.get("v")
    if not _is_int(v):
        raise ProtocolError(f"bad protocol version {v!r}")
    if v != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {v}")
    kind = header.get("kind")
    if kind not in KINDS:
        raise ProtocolError(f"unknown kind {kind!r}")
    seq = header.get("seq")
    if not _is_int(seq) or seq < -1:
        raise ProtocolError(f"bad seq {seq!r}")
    t = header.get("time")
    if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t):
        raise ProtocolError(f"bad time {t!r}")
    pub = header.get("publisher")
    if not isinstance(pub, str) or not pub or len(pub) > 256:
        raise ProtocolError(f"bad publisher {pub!r}")
    run_uid = header.get("run_uid")
    if run_uid is not None and not isinstance(run_uid, str):
        raise ProtocolError(f"bad run_uid {run_uid!r}")
    header.setdefault("run_uid", None)
    return header


def decode_message(parts: Sequence[Any]) -> Message:
    """Decode and validate one multipart message.

    Parameters
    ----------
    parts : sequence of bytes-like
        The message parts (``bytes``, ``memoryview``, ``zmq.Frame``, ...).

    Returns
    -------
    Message
        A :class:`DocumentMessage`, :class:`FrameMessage`, :class:`MapUpdateMessage`,
        :class:`Heartbeat`, :class:`StatsMessage` or :class:`SnapshotEnd`.

    Raises
    ------
    ProtocolError
        For anything that does not follow the protocol (and for nothing else).
    """
    try:
        return _decode(parts)
    except ProtocolError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure means a malformed message
        raise ProtocolError(f"malformed message: {type(exc).__name__}: {exc}") from exc


def _decode(parts: Sequence[Any]) -> Message:
    if isinstance(parts, bytes | str) or not isinstance(parts, Sequence):
        raise ProtocolError("a message is a sequence of parts")
    if len(parts) < 2:
        raise ProtocolError(f"message has {len(parts)} parts; at least 2 expected")
    topic = bytes(_as_buffer(parts[0]))
    header = decode_header(parts[1])
    kind = header["kind"]
    if topic != _TOPICS[kind]:
        raise ProtocolError(f"topic {topic[:32]!r} does not match kind {kind!r}")
    n = len(parts)
    if kind == KIND_DOCUMENT:
        if n != 3:
            raise ProtocolError("document message must have 3 parts")
        name = header.get("name")
        if name not in DOCUMENT_NAMES:
            raise ProtocolError(f"unknown document name {name!r}")
        encoding = header.get("encoding")
        if encoding not in ENCODINGS:
            raise ProtocolError(f"unknown encoding {encoding!r}")
        try:
            doc = unpack(_as_buffer(parts[2]), encoding)
        except EncodingError as exc:
            raise ProtocolError(str(exc)) from exc
        if not isinstance(doc, dict):
            raise ProtocolError("document payload is not a map")
        return DocumentMessage(header=header, name=name, doc=doc)
    if kind == KIND_FRAME:
        if n != 3:
            raise ProtocolError("frame message must have 3 parts")
        stream = header.get("stream")
        if not isinstance(stream, str):
            raise ProtocolError(f"bad stream {stream!r}")
        for key in ("energy_ev", "temperature_c", "theta_deg"):
            value = header.get(key)
            bad = not isinstance(value, int | float) or isinstance(value, bool)
            if value is not None and bad:
                raise ProtocolError(f"bad {key} {value!r}")
            header.setdefault(key, None)
        return FrameMessage(header=header, array=_decode_array(header, parts[2]))
    if kind == KIND_MAP_UPDATE:
        descs = header.get("arrays")
        if not isinstance(descs, list) or len(descs) > MAX_ARRAYS:
            raise ProtocolError("map_update header needs an 'arrays' list")
        if n != 2 + len(descs):
            raise ProtocolError(f"map_update lists {len(descs)} arrays but has {n - 2} buffers")
        arrays: dict[str, np.ndarray] = {}
        for desc, part in zip(descs, parts[2:], strict=True):
            name = desc.get("name") if isinstance(desc, Mapping) else None
            if not isinstance(name, str) or name in arrays:
                raise ProtocolError(f"bad or duplicate array name {name!r}")
            arrays[name] = _decode_array(desc, part)
        return MapUpdateMessage(header=header, arrays=arrays)
    if kind == KIND_HEARTBEAT:
        if n != 2:
            raise ProtocolError("heartbeat message must have 2 parts")
        return Heartbeat(header=header)
    if kind == KIND_STATS:
        if n != 3:
            raise ProtocolError("stats message must have 3 parts")
        encoding = header.get("encoding")
        if encoding not in ENCODINGS:
            raise ProtocolError(f"unknown encoding {encoding!r}")
        try:
            stats = unpack(_as_buffer(parts[2]), encoding)
        except EncodingError as exc:
            raise ProtocolError(str(exc)) from exc
        if not isinstance(stats, dict):
            raise ProtocolError("stats payload is not a map")
        return StatsMessage(header=header, stats=stats)
    if n != 2:
        raise ProtocolError("snapshot_end message must have 2 parts")
    return SnapshotEnd(header=header)
