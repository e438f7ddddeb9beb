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


def test_late_maps_feed_gets_earlier_sweeps_from_the_snapshot():
    from tests.monitor.conftest import SyntheticSeries
    from thermoxanes.streaming.snapshot import map_summary

    series = SyntheticSeries(size=48, histograms=True)
    pub = Publisher("tcp://127.0.0.1:*", heartbeat_s=0.1, snapshot_endpoint="tcp://127.0.0.1:*")
    updates = [series.next() for _ in range(3)]
    early = MonitorState()
    early_feed = Feed("maps", pub.endpoint, early)  # no snapshot: only what comes next
    early_feed.start()
    state = MonitorState()
    feed = plain_feed = None
    try:
        _wait(lambda: early.maps_health.messages > 0, "the first subscription")
        for header, arrays in updates:
            assert pub.send_map_update(header, arrays)
        assert pub.flush(timeout_s=10.0)
        _wait(lambda: len(early.sweeps) == 3, "the first monitor's three sweeps")
        # a monitor started now, mid-series, and one without the snapshot
        feed = Feed("maps", pub.endpoint, state, snapshot_endpoint=pub.snapshot_endpoint)
        feed.start()
        plain = MonitorState()
        plain_feed = Feed("maps", pub.endpoint, plain)
        plain_feed.start()
        _wait(lambda: len(state.sweeps) == 3, "three sweeps from the snapshot")
        assert feed.subscriber.stats["snapshot"] == "ok"
        assert [r.sweep_index for r in state.sweeps] == [0, 1, 2]
        assert state.maps.sweep_index == 2 and state.maps.valence.shape == (48, 48)
        # the same histograms and means as the monitor that saw the sweeps live
        for late, live in zip(state.sweeps, early.sweeps, strict=True):
            np.testing.assert_array_equal(late.valence_density, live.valence_density)
            np.testing.assert_array_equal(late.valence_edges, live.valence_edges)
            assert late.mean_valence == live.mean_valence
            assert late.temperature_c == live.temperature_c
            if live.delta_density is None:
                assert late.delta_density is None
            else:
                np.testing.assert_array_equal(late.delta_density, live.delta_density)
        # then the live stream, without a gap or a repeat
        _wait(lambda: plain.maps_health.messages > 0, "the plain subscription")
        assert pub.send_map_update(*series.next())
        _wait(lambda: len(state.sweeps) == 4, "the next sweep live")
        assert [r.sweep_index for r in state.sweeps] == [0, 1, 2, 3]
        assert state.maps_health.gaps == 0
        _wait(lambda: len(plain.sweeps) == 1, "the next sweep without the snapshot")
        assert [r.sweep_index for r in plain.sweeps] == [3]  # earlier sweeps unseen
    finally:
        early_feed.close()
        for f in (feed, plain_feed):
            if f is not None:
                f.close()
        pub.close()
    # a summary is small: the header and the histograms, not the maps
    header, arrays = SyntheticSeries(size=256, histograms=True).next()
    from thermoxanes.streaming.protocol import encode_map_update

    parts = encode_map_update(header, arrays, seq=0, publisher="p")
    summary = map_summary(parts)
    assert summary is not None
    assert sum(len(memoryview(p)) for p in summary) < 20_000 < sum(
        len(memoryview(p)) for p in parts)
    del header["summary_arrays"]
    assert map_summary(encode_map_update(header, arrays, seq=0, publisher="p")) is None
