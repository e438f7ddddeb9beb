"""A client written from docs/protocol.md alone: raw pyzmq + json + msgpack + numpy.

It must import nothing from thermoxanes (test_doc_client.py checks).  Usage::

    python doc_client.py ENDPOINT N_FRAMES

It connects, waits for the first message, prints ``READY``, then receives until it has
N_FRAMES frames and one map update, and prints one JSON line per received item followed
by ``DONE`` and a JSON summary (gaps counted as in section 4 of the document).
"""

from __future__ import annotations

import hashlib
import json
import sys

import msgpack
import numpy as np
import zmq

SIZES = {"bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "float16": 2,
         "int32": 4, "uint32": 4, "float32": 4, "int64": 8, "uint64": 8, "float64": 8,
         "complex64": 8, "complex128": 16}
SEQUENCED = {"document", "frame", "map_update"}


def to_array(desc: dict, buf: bytes) -> np.ndarray | None:
    size = SIZES.get(desc.get("dtype"))
    shape = desc.get("shape")
    order = desc.get("byte_order")
    if size is None or not isinstance(shape, list) or order not in ("little", "big"):
        return None
    n = 1
    for d in shape:
        n *= d
    if len(buf) != n * size or desc.get("nbytes") != n * size:
        return None
    dtype = np.dtype(desc["dtype"]).newbyteorder("<" if desc["byte_order"] == "little" else ">")
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def main() -> None:
    endpoint, n_frames = sys.argv[1], int(sys.argv[2])
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.connect(endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    last: dict[str, int] = {}
    missed = 0
    frames = maps = 0
    ready = False
    while frames < n_frames or maps < 1:
        if not sub.poll(20000):
            break
        parts = sub.recv_multipart()
        if len(parts) < 2:
            continue
        try:
            header = json.loads(parts[1].decode("utf-8"))
        except ValueError:
            continue
        if not isinstance(header, dict) or header.get("v") != 1:
            continue
        kind = header.get("kind")
        if not isinstance(kind, str) or parts[0] != kind.encode():
            continue
        pub, seq = header["publisher"], header["seq"]
        if pub not in last:
            last[pub] = seq - 1 if kind in SEQUENCED else seq
        if kind in SEQUENCED:
            if seq <= last[pub]:
                continue
            missed += seq - last[pub] - 1
        else:
            missed += max(0, seq - last[pub])
        last[pub] = max(last[pub], seq)
        if not ready:
            print("READY", flush=True)
            ready = True
        if kind == "document" and len(parts) == 3:
            if header["encoding"] == "msgpack":
                doc = msgpack.unpackb(parts[2], raw=False)
            else:
                doc = json.loads(parts[2])
            print(json.dumps({"kind": "document", "name": header["name"], "seq": seq,
                              "uid": doc.get("uid"), "run_uid": header["run_uid"]}), flush=True)
        elif kind == "frame" and len(parts) == 3:
            arr = to_array(header, parts[2])
            if arr is None:
                continue
            frames += 1
            print(json.dumps({"kind": "frame", "seq": seq, "run_uid": header["run_uid"],
                              "stream": header["stream"], "energy_ev": header["energy_ev"],
                              "temperature_c": header["temperature_c"],
                              "theta_deg": header["theta_deg"],
                              "dtype": arr.dtype.str, "shape": list(arr.shape),
                              "sha256": hashlib.sha256(arr.tobytes()).hexdigest()}), flush=True)
        elif kind == "map_update":
            descs = header.get("arrays")
            if not isinstance(descs, list) or len(parts) != 2 + len(descs):
                continue
            out = {}
            for desc, buf in zip(descs, parts[2:], strict=True):
                arr = to_array(desc, buf)
                if arr is not None:
                    out[desc["name"]] = hashlib.sha256(arr.tobytes()).hexdigest()
            maps += 1
            print(json.dumps({"kind": "map_update", "seq": seq, "arrays": out}), flush=True)
    print("DONE", flush=True)
    print(json.dumps({"frames": frames, "maps": maps, "missed": missed}), flush=True)
    sub.close(0)
    ctx.term()


if __name__ == "__main__":
    main()
