"""Publisher as a bluesky callback: frames from events and event pages, header mapping,
and a callback that never raises into the RunEngine."""

from __future__ import annotations

import time

import event_model
import numpy as np

from tests.streaming._helpers import collect, wait_ready
from thermoxanes.streaming.protocol import DocumentMessage, FrameMessage
from thermoxanes.streaming.publisher import Publisher
from thermoxanes.streaming.subscriber import Subscriber

ANY = "tcp://127.0.0.1:*"
DATA_KEYS = {
    "cam_image": {"source": "sim", "dtype": "array", "shape": [2, 2], "external": "FILESTORE:"},
    "cam2_image": {"source": "sim", "dtype": "array", "shape": [2, 2], "external": "FILESTORE:"},
    "dcm_energy_ev": {"source": "sim", "dtype": "number", "shape": []},
    "mono_energy_ev": {"source": "sim", "dtype": "number", "shape": []},
    "stage_theta_deg": {"source": "sim", "dtype": "number", "shape": []},
    "heater_temperature_c": {"source": "sim", "dtype": "number", "shape": []},
}


def _setup(pub: Publisher):
    cache = {f"d{i}": np.full((2, 2), i, np.uint16) for i in range(10)}
    pub.frame_lookup = cache.get
    run = event_model.compose_run()
    pub("start", run.start_doc)
    desc = run.compose_descriptor(name="primary", data_keys=DATA_KEYS)
    pub("descriptor", desc.descriptor_doc)
    return run, desc


def _data(i: int) -> dict:
    return {"cam_image": f"d{i}", "cam2_image": "missing", "dcm_energy_ev": 8000.0 + i,
            "mono_energy_ev": 9000.0 + i, "stage_theta_deg": np.float64(i),
            "heater_temperature_c": np.float32(100 + i)}


def test_default_header_keys_and_missing_frames():
    with Publisher(ANY, heartbeat_s=0.05) as pub, Subscriber(pub.endpoint) as sub:
        wait_ready(sub)
        run, desc = _setup(pub)
        ev = desc.compose_event(data=_data(1), timestamps={k: time.time() for k in DATA_KEYS})
        pub("event", ev)
        msgs = collect(sub, 4)
        fr = msgs[3]
        assert isinstance(fr, FrameMessage)
        # first data key ending in energy_ev, in descriptor order
        assert fr.header["energy_ev"] == 8001.0
        assert fr.header["theta_deg"] == 1.0 and fr.header["temperature_c"] == 101.0
        assert pub.stats["frames_not_found"] == 1  # cam2's datum is not in the cache


def test_custom_header_keys_and_event_pages():
    with Publisher(ANY, heartbeat_s=0.05,
                   header_keys={"energy_ev": "mono_energy_ev", "theta_deg": "nope"}) as pub, \
            Subscriber(pub.endpoint) as sub:
        wait_ready(sub)
        run, desc = _setup(pub)
        events = [desc.compose_event(data=_data(i), timestamps={k: 0.0 for k in DATA_KEYS})
                  for i in (2, 3)]
        pub("event_page", event_model.pack_event_page(*events))
        msgs = collect(sub, 5)
        assert isinstance(msgs[2], DocumentMessage) and msgs[2].name == "event_page"
        frames = msgs[3:]
        assert [f.header["energy_ev"] for f in frames] == [9002.0, 9003.0]
        assert [f.header["theta_deg"] for f in frames] == [None, None]
        assert [f.header["event_uid"] for f in frames] == [e["uid"] for e in events]
        assert [int(f.array[0, 0]) for f in frames] == [2, 3]


def test_callback_never_raises():
    def broken_lookup(datum_id: str):
        raise RuntimeError("camera cache exploded")

    with Publisher(ANY, heartbeat_s=0.05) as pub, Subscriber(pub.endpoint) as sub:
        wait_ready(sub)
        run, desc = _setup(pub)
        pub.frame_lookup = broken_lookup
        ev = desc.compose_event(data=_data(1), timestamps={k: 0.0 for k in DATA_KEYS})
        pub("event", ev)  # must not raise
        pub("not-a-document", {"x": object()})  # must not raise
        pub("stop", run.compose_stop())
        msgs = collect(sub, 4)
        assert [m.name for m in msgs] == ["start", "descriptor", "event", "stop"]
        assert pub.stats["errors"] >= 2
        assert sub.gaps_for_run(run.start_doc["uid"]) == 1  # the rejected document's seq
