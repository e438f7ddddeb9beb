"""Turn bluesky documents into JSON/msgpack-safe values and back; no pickle anywhere.

Documents emitted by a ``RunEngine`` may carry numpy scalars and arrays (an energy grid
in the start document, a reading in an event).  :func:`to_wire_safe` converts them into
plain Python values (``dict``, ``list``, ``str``, ``int``, ``float``, ``bool``, ``None``)
that both JSON and msgpack can carry.  :func:`pack` and :func:`unpack` encode and decode
such values with one of the two supported encodings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import msgpack
import numpy as np

#: Encodings allowed for document and stats payloads.
ENCODINGS: tuple[str, ...] = ("msgpack", "json")

#: Upper bound on one decoded msgpack/JSON payload, in bytes.  Frames never travel
#: inside documents, so a larger document is treated as malformed.
MAX_DOCUMENT_BYTES: int = 64 * 1024 * 1024

#: Deepest nesting accepted when sanitizing a document.
_MAX_DEPTH: int = 64


class EncodingError(ValueError):
    """A value cannot be made wire-safe, or a payload cannot be decoded."""


def to_wire_safe(value: Any, strict: bool = True, _depth: int = 0) -> Any:
    """Return a copy of ``value`` made of JSON/msgpack-safe Python values.

    Parameters
    ----------
    value : Any
        A document or part of one: mappings, sequences, numpy scalars and arrays,
        strings, numbers, ``None``.
    strict : bool
        If ``False``, values with no plain representation (bytes, paths, arbitrary
        objects, non-string keys) become their ``str()`` instead of raising, so that a
        document is never lost for one odd metadata value.

    Returns
    -------
    Any
        Nested ``dict`` (string keys), ``list``, ``str``, ``int``, ``float``, ``bool``
        and ``None``.  numpy arrays become nested lists, tuples become lists; bytes
        are rejected.

    Raises
    ------
    EncodingError
        For values with no faithful plain representation (bytes, arbitrary objects) or
        nesting deeper than 64 levels.
    """
    try:
        return _to_wire_safe(value, _depth)
    except EncodingError:
        if strict:
            raise
    return _to_wire_safe_lenient(value, _depth)


def _to_wire_safe_lenient(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise EncodingError("document nested too deeply")
    try:
        return _to_wire_safe(value, depth)
    except EncodingError:
        pass
    if isinstance(value, Mapping):
        return {str(k): _to_wire_safe_lenient(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_wire_safe_lenient(v, depth + 1) for v in value]
    return str(value)


def _to_wire_safe(value: Any, _depth: int = 0) -> Any:
    if _depth > _MAX_DEPTH:
        raise EncodingError("document nested too deeply")
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, np.generic):
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.floating):
            return float(value)
        if isinstance(value, np.str_):
            return str(value)
        raise EncodingError(f"unsupported numpy scalar type {type(value).__name__}")
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufU":
            raise EncodingError(f"unsupported numpy array dtype {value.dtype}")
        return value.tolist()
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                if isinstance(k, int | np.integer):
                    k = str(int(k))
                else:
                    raise EncodingError(f"non-string mapping key {k!r}")
            out[k] = _to_wire_safe(v, _depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_to_wire_safe(v, _depth + 1) for v in value]
    if isinstance(value, set | frozenset):
        return [_to_wire_safe(v, _depth + 1) for v in sorted(value, key=repr)]
    raise EncodingError(f"cannot put a {type(value).__name__} on the wire")


def without_non_finite(value: Any) -> Any:
    """Return a wire-safe value with every NaN or infinite float replaced by ``None``.

    Parameters
    ----------
    value : Any
        Output of :func:`to_wire_safe`.

    Returns
    -------
    Any
        Suitable for strict JSON (headers never carry NaN or Infinity).
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: without_non_finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_non_finite(v) for v in value]
    return value


def finite_or_none(value: Any) -> float | None:
    """Return ``value`` as a finite ``float``, or ``None`` when absent or not finite.

    Parameters
    ----------
    value : Any
        A number, numpy scalar, 0-d array, or anything else.

    Returns
    -------
    float or None
    """
    if value is None or isinstance(value, bool | np.bool_):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def pack(value: Any, encoding: str) -> bytes:
    """Encode a wire-safe value with ``encoding`` ("msgpack" or "json").

    Parameters
    ----------
    value : Any
        Output of :func:`to_wire_safe`.
    encoding : str
        ``"msgpack"`` or ``"json"`` (UTF-8, NaN/Infinity written as the tokens
        ``NaN``, ``Infinity``, ``-Infinity``).

    Returns
    -------
    bytes
    """
    if encoding == "msgpack":
        return msgpack.packb(value, use_bin_type=True)
    if encoding == "json":
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raise EncodingError(f"unknown encoding {encoding!r}")


def unpack(data: bytes | memoryview, encoding: str) -> Any:
    """Decode a payload written by :func:`pack`.

    Parameters
    ----------
    data : bytes or memoryview
        The payload.
    encoding : str
        ``"msgpack"`` or ``"json"``.

    Returns
    -------
    Any

    Raises
    ------
    EncodingError
        On any decoding failure (never anything else).
    """
    n_bytes = len(data)
    if n_bytes > MAX_DOCUMENT_BYTES:
        raise EncodingError(f"payload of {n_bytes} bytes exceeds {MAX_DOCUMENT_BYTES}")
    try:
        if encoding == "msgpack":
            return msgpack.unpackb(
                bytes(data), raw=False, strict_map_key=False
            )
        if encoding == "json":
            return json.loads(bytes(data).decode("utf-8"))
    except (ValueError, TypeError, RecursionError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError, UnicodeDecodeError) as exc:
        raise EncodingError(f"cannot decode {encoding} payload: {exc}") from exc
    raise EncodingError(f"unknown encoding {encoding!r}")
