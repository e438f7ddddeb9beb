"""Garbage and malformed multipart messages: decode_message and Subscriber never crash."""

from __future__ import annotations

import json
import time

import numpy as np
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.streaming._helpers import collect
from thermoxanes.streaming.protocol import (
    KINDS,
    FrameMessage,
    Message,
    ProtocolError,
    decode_message,
    encode_document,
    encode_frame,
    encode_heartbeat,
    encode_map_update,
    encode_stats,
)
from thermoxanes.streaming.subscriber import Subscriber

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


def _valid_messages() -> list[list[bytes]]:
    frame = np.arange(12, dtype=np.uint16).reshape(3, 4)
    return [
        [bytes(p) for p in encode_frame(frame, seq=3, publisher="p", run_uid="r",
                                        stream="primary", energy_ev=8333.0)],
        encode_document("start", {"uid": "r", "time": 1.0}, seq=0, publisher="p"),
        encode_document("event", {"uid": "e", "data": {"x": 1}}, seq=1, publisher="p",
                        encoding="json"),
        [bytes(p) for p in encode_map_update({"run_uid": "r"}, {"a": np.ones(3), "b": frame},
                                             seq=4, publisher="p")],
        encode_heartbeat(seq=4, publisher="p"),
        encode_stats({"sent": 1}, seq=4, publisher="p"),
    ]


VALID = _valid_messages()


def _decode_or_protocol_error(parts) -> Message | None:
    try:
        return decode_message(parts)
    except ProtocolError:
        return None


def test_valid_messages_decode():
    for parts in VALID:
        assert isinstance(decode_message(parts), Message)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=64), max_size=6))
def test_random_parts_never_raise_anything_else(parts):
    _decode_or_protocol_error(parts)


@settings(max_examples=300, deadline=None)
@given(
    msg_index=st.integers(0, len(VALID) - 1),
    field=st.sampled_from(["v", "kind", "seq", "time", "publisher", "run_uid", "dtype", "shape",
                           "byte_order", "nbytes", "arrays", "encoding", "name", "stream",
                           "energy_ev", "new_field"]),
    value=json_values,
    delete=st.booleans(),
)
def test_mutated_header_fields(msg_index, field, value, delete):
    parts = list(VALID[msg_index])
    header = json.loads(parts[1])
    if delete:
        header.pop(field, None)
    else:
        header[field] = value
    parts[1] = json.dumps(header).encode()
    msg = _decode_or_protocol_error(parts)
    if isinstance(msg, FrameMessage):
        assert msg.array.nbytes == len(parts[2])


@settings(max_examples=300, deadline=None)
@given(
    msg_index=st.integers(0, len(VALID) - 1),
    part_index=st.integers(0, 5),
    data=st.binary(max_size=40),
    op=st.sampled_from(["replace", "truncate", "append", "drop_part", "add_part", "flip"]),
)
def test_mutated_parts(msg_index, part_index, data, op):
    parts = list(VALID[msg_index])
    i = part_index % len(parts)
    if op == "replace":
        parts[i] = data
    elif op == "truncate":
        parts[i] = parts[i][: len(data) % (len(parts[i]) + 1)]
    elif op == "append":
        parts[i] = parts[i] + data
    elif op == "drop_part":
        del parts[i]
    elif op == "add_part":
        parts.insert(i, data)
    elif op == "flip" and parts[i]:
        b = bytearray(parts[i])
        b[len(data) % len(b)] ^= 0xFF
        parts[i] = bytes(b)
    _decode_or_protocol_error(parts)


def test_specific_malformations():
    frame = VALID[0]
    bad = [
        [],
        [b"frame"],
        [b"document", frame[1], frame[2]],  # topic/kind mismatch
        [b"frame", b"\xff\xfe", frame[2]],  # not UTF-8
        [b"frame", b"[1, 2]", frame[2]],  # not an object
        [b"frame", frame[1].replace(b'"v":1', b'"v":2'), frame[2]],  # future version
        [b"frame", frame[1].replace(b'"v":1', b'"v":true'), frame[2]],
        [b"frame", frame[1], frame[2][:-1]],  # short buffer
        [b"frame", frame[1].replace(b'"uint16"', b'"object"'), frame[2]],
        [b"frame", frame[1].replace(b'"shape":[3,4]', b'"shape":[3,-4]'), frame[2]],
        [b"frame", frame[1].replace(b'"shape":[3,4]', b'"shape":[1e400,4]'), frame[2]],
        [b"frame", frame[1].replace(b'"nbytes":24', b'"nbytes":1e309'), frame[2]],
        [b"document", VALID[1][1], b"\xc1"],  # invalid msgpack
        [b"document", VALID[1][1], b"\x93\x01\x02\x03"],  # msgpack array, not a map
        [b"document", VALID[1][1], b"\xdb\xff\xff\xff\xff"],  # truncated huge str
        [b"document", VALID[2][1], b"{" * 100000],  # deep JSON
        [b"heartbeat", VALID[4][1], b"extra"],
        [b"map_update", VALID[3][1], VALID[3][2]],  # missing buffer
    ]
    for parts in bad:
        try:
            decode_message(parts)
        except ProtocolError:
            continue
        raise AssertionError(f"accepted malformed message {parts!r}"[:200])


def test_kinds_are_topics():
    for parts in VALID:
        assert parts[0].decode() in KINDS


def test_subscriber_survives_garbage_on_the_wire():
    rng = np.random.default_rng(1)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    sub = Subscriber(f"tcp://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and sub.recv(0.05) is None:
            sock.send_multipart(encode_heartbeat(seq=-1, publisher="g"))
        n_garbage = 0
        for _ in range(200):
            n = int(rng.integers(1, 5))
            sock.send_multipart([rng.bytes(int(rng.integers(0, 50))) for _ in range(n)])
            n_garbage += 1
        for parts in VALID[:1]:
            p = list(parts)
            p[1] = p[1].replace(b'"publisher":"p"', b'"publisher":"g"').replace(
                b'"seq":3', b'"seq":0')
            sock.send_multipart(p)
        (msg,) = collect(sub, 1, timeout_s=5)
        assert isinstance(msg, FrameMessage)
        assert np.array_equal(msg.array, np.arange(12, dtype=np.uint16).reshape(3, 4))
        assert sub.stats["malformed"] == n_garbage
        assert sub.last_error
    finally:
        sub.close()
        sock.close(0)
        ctx.term()
