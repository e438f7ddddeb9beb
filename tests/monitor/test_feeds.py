"""Feeds against a real publisher: frames skipped without false gaps; map updates."""

from __future__ import annotations

import time
import uuid

import numpy as np

from thermoxanes.monitor.feeds import Feed
from thermoxanes.monitor.state import MonitorState
from thermoxanes.streaming.publisher import Publisher

TIMEOUT_S = 60.0


def _wait(predicate, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_data_feed_skips_frames_without_false_gaps():
    frame = np.zeros((32, 32), np.uint16)
    pub = Publisher("tcp://127.0.0.1:*", frame_lookup=lambda datum_id: frame,
                    heartbeat_s=0.1, stats_interval_s=0.2)
    state = MonitorState()
    feed = Feed("data", pub.endpoint, state)
    feed.start()
    try:
        _wait(lambda: state.data_health.messages > 0, "the subscription")
        run = str(uuid.uuid4())
        pub("start", {"uid": run, "time": time.time(), "sweep_index": 0, "num_sweeps": 1,
                      "energies_ev": [8300.0 + i for i in range(40)]})
        for name in ("dark", "primary"):
            pub("descriptor", {"uid": name, "run_start": run, "name": name, "time": 0.0,
                               "data_keys": {"camera_image": {"external": "FILESTORE:",
                                                              "dtype": "array", "shape": [32, 32],
                                                              "source": "sim"},
                                             "heater_temperature_c": {"dtype": "number"},
                                             "clock_time_s": {"dtype": "number"},
                                             "mono_energy_ev": {"dtype": "number"}}})
        for k in range(40):
            pub("event", {"uid": str(uuid.uuid4()), "descriptor": "dark" if k < 5 else "primary",
                          "time": time.time(), "seq_num": k + 1,
                          "data": {"camera_image": f"datum-{k}", "heater_temperature_c": 25.0,
                                   "clock_time_s": float(k), "mono_energy_ev": 8300.0 + k},
                          "timestamps": {}})
        pub("stop", {"uid": str(uuid.uuid4()), "run_start": run, "exit_status": "success"})
        _wait(lambda: not state.progress.run_open and state.progress.exit_status, "the stop")
        _wait(lambda: state.data_health.frame_rate_hz is not None, "a frame rate from stats")
        time.sleep(0.5)  # a few more heartbeats after the last frame
        health = state.data_health
        assert pub.stats["sent_frames"] == 40
        assert (health.gaps, health.missed) == (0, 0)
        assert state.progress.n_primary == 35
        assert len(state.trace_time_s) == 40
        assert feed.subscriber.stats["malformed"] == 0
    finally:
        feed.close()
        pub.close()


def test_maps_feed_takes_map_updates(series):
    pub = Publisher("tcp://127.0.0.1:*", heartbeat_s=0.1)
    state = MonitorState()
    feed = Feed("maps", pub.endpoint, state)
    feed.start()
    try:
        _wait(lambda: state.maps_health.messages > 0, "the subscription")
        for _ in range(2):
            pub.send_map_update(*series.next())
        _wait(lambda: len(state.sweeps) == 2, "two map updates")
        assert state.maps.sweep_index == 1
        assert state.maps_health.gaps == 0
        last, worst = state.maps_health.lag_summary()
        assert last is not None and worst >= last >= 0.0
    finally:
        feed.close()
        pub.close()
