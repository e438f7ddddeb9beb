"""Pure protocol functions: encoding, decoding, round trips (no sockets)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from thermoxanes.streaming._encoding import EncodingError, to_wire_safe
from thermoxanes.streaming.protocol import (
    DTYPE_NAMES,
    PROTOCOL_VERSION,
    DocumentMessage,
    FrameMessage,
    Heartbeat,
    MapUpdateMessage,
    ProtocolError,
    StatsMessage,
    decode_message,
    encode_document,
    encode_frame,
    encode_heartbeat,
    encode_map_update,
    encode_stats,
)

documents = st.dictionaries(
    st.text(max_size=12),
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
        | st.floats(allow_nan=False) | st.text(max_size=30),
        lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=8), c, max_size=5),
        max_leaves=20,
    ),
    max_size=8,
)


@settings(max_examples=100, deadline=None)
@given(doc=documents, encoding=st.sampled_from(["msgpack", "json"]))
def test_document_round_trip(doc, encoding):
    parts = encode_document("event", doc, seq=7, publisher="p", run_uid="r", encoding=encoding)
    msg = decode_message(parts)
    assert isinstance(msg, DocumentMessage)
    assert msg.doc == doc and msg.name == "event" and msg.seq == 7 and msg.run_uid == "r"
    assert msg.header["v"] == PROTOCOL_VERSION


scalar_dtypes = st.sampled_from(sorted(DTYPE_NAMES)).flatmap(
    lambda name: st.sampled_from([np.dtype(name).newbyteorder("<"),
                                  np.dtype(name).newbyteorder(">")])
)


@settings(max_examples=100, deadline=None)
@given(arr=hnp.arrays(scalar_dtypes, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0,
                                                      max_side=6)))
def test_frame_round_trip_bit_exact(arr):
    parts = encode_frame(arr, seq=1, publisher="p", run_uid=None, stream="primary")
    msg = decode_message([bytes(p) for p in parts])
    assert isinstance(msg, FrameMessage)
    assert msg.array.shape == arr.shape
    assert msg.array.dtype.name == arr.dtype.name
    assert msg.array.tobytes() == np.ascontiguousarray(arr).tobytes()
    assert not msg.array.flags.writeable


def test_non_contiguous_frames_are_sent_in_c_order():
    base = np.arange(24, dtype=np.uint16).reshape(4, 6)
    view = base[:, ::2].T
    msg = decode_message([bytes(p) for p in encode_frame(view, seq=0, publisher="p",
                                                         run_uid=None, stream="s")])
    assert np.array_equal(msg.array, view)


def test_numpy_values_in_documents():
    doc = {"a": np.float32(1.5), "b": np.arange(3), "c": (1, 2), "d": np.bool_(True),
           "e": {"f": np.int16(-3)}, "g": np.array([[1.0, np.nan]])}
    out = decode_message(encode_document("start", doc, seq=0, publisher="p")).doc
    assert out["a"] == 1.5 and out["b"] == [0, 1, 2] and out["c"] == [1, 2]
    assert out["d"] is True and out["e"] == {"f": -3}
    assert out["g"][0][0] == 1.0 and math.isnan(out["g"][0][1])


def test_odd_metadata_is_stringified_not_lost():
    doc = {"uid": "u", "path": Path("/data/x.h5"), "raw": b"\x00\x01", 3: "int key"}
    out = decode_message(encode_document("start", doc, seq=0, publisher="p")).doc
    assert out["path"] == "/data/x.h5" and out["3"] == "int key"
    assert isinstance(out["raw"], str)
    with pytest.raises(EncodingError):
        to_wire_safe({"p": Path("/x")})


def test_headers_are_strict_json_and_nan_becomes_null():
    parts = encode_map_update(
        {"run_uid": "r", "temperature_c": float("nan"), "edges_ev": [8330.0, float("inf")]},
        {"valence": np.full((2, 2), np.nan, np.float32)}, seq=3, publisher="p",
    )
    header = json.loads(parts[1], parse_constant=lambda c: pytest.fail(f"{c} in header"))
    assert header["temperature_c"] is None and header["edges_ev"] == [8330.0, None]
    msg = decode_message(parts)
    assert isinstance(msg, MapUpdateMessage) and msg.run_uid == "r"
    assert np.isnan(msg.arrays["valence"]).all()
    frame = encode_frame(np.zeros(2), seq=0, publisher="p", run_uid=None, stream="s",
                         energy_ev=float("nan"), temperature_c=np.float64(20.5))
    h = json.loads(frame[1])
    assert h["energy_ev"] is None and h["temperature_c"] == 20.5


def test_reserved_header_fields_cannot_be_overridden():
    with pytest.raises(ProtocolError):
        encode_frame(np.zeros(2), seq=0, publisher="p", run_uid=None, stream="s", seq_=1,
                     dtype="float32")
    with pytest.raises(ProtocolError):
        encode_map_update({"arrays": 1}, {}, seq=0, publisher="p")


def test_unsupported_dtypes_are_rejected():
    for arr in (np.array(["a"]), np.zeros(2, dtype="M8[s]"), np.zeros(2, dtype=object),
                np.zeros(2, dtype=[("a", "<u2")])):
        with pytest.raises(ProtocolError):
            encode_frame(arr, seq=0, publisher="p", run_uid=None, stream="s")


def test_control_messages():
    hb = decode_message(encode_heartbeat(seq=-1, publisher="p", interval_s=0.5))
    assert isinstance(hb, Heartbeat) and hb.seq == -1 and hb.header["interval_s"] == 0.5
    st_msg = decode_message(encode_stats({"sent": 3, "dropped": np.int64(1)}, seq=2,
                                         publisher="p"))
    assert isinstance(st_msg, StatsMessage) and st_msg.stats == {"sent": 3, "dropped": 1}


def test_topic_must_match_kind():
    parts = encode_heartbeat(seq=0, publisher="p")
    with pytest.raises(ProtocolError):
        decode_message([b"frame", parts[1]])
