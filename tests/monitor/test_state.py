"""MonitorState, display reduction and the sequence accounting of a frame-less feed."""

from __future__ import annotations

import numpy as np
import pytest

from thermoxanes.monitor.feeds import SequenceTracker
from thermoxanes.monitor.state import (
    MonitorConfig,
    MonitorState,
    block_reduce,
    density_histogram,
)
from thermoxanes.streaming.protocol import DocumentMessage, Heartbeat


def test_block_reduce_mean_ignores_nan_and_pads():
    image = np.arange(25, dtype=np.float32).reshape(5, 5)
    image[0, 0] = np.nan
    out = block_reduce(image, 2)
    assert out.shape == (3, 3) and out.dtype == np.float32
    assert out[0, 0] == pytest.approx(np.mean([1, 5, 6]))
    assert out[2, 2] == pytest.approx(24.0)
    assert np.isnan(block_reduce(np.full((4, 4), np.nan), 2)).all()
    mask = np.zeros((4, 4), bool)
    mask[3, 3] = True
    assert block_reduce(mask, 2, how="max").tolist() == [[False, False], [False, True]]
    np.testing.assert_array_equal(block_reduce(image, 1), image)


def test_density_histogram_integrates_to_one():
    edges = np.linspace(2.0, 4.0, 101)
    values = np.r_[np.random.default_rng(1).normal(3.0, 0.1, 1000), np.nan]
    density = density_histogram(values, edges)
    assert np.sum(density * np.diff(edges)) == pytest.approx(1.0)
    assert not density_histogram(np.full(3, np.nan), edges).any()


def test_config_rejects_bad_ranges():
    with pytest.raises(ValueError):
        MonitorConfig(valence_range=(4.0, 2.0))
    with pytest.raises(ValueError):
        MonitorConfig(pixel_size_um=-1.0)
    with pytest.raises(ValueError):
        MonitorConfig(max_display_px=4)


def test_map_updates_build_series_and_notify(series):
    state = MonitorState(MonitorConfig(max_display_px=32))
    seen: list[str] = []
    state.add_listener(seen.append)
    for _ in range(3):
        state.handle_map_update(*series.next())
    assert seen == ["maps", "series"] * 3
    maps = state.maps
    assert maps.sweep_index == 2 and maps.factor == 2 and maps.valence.shape == (32, 32)
    assert maps.differential is not None and maps.significant is not None
    assert maps.n_significant > 0 and maps.significant.any()
    assert maps.against_sweep == 1
    lo, hi = maps.valence_span
    assert lo < 3.5 < hi  # widened over the series
    records = list(state.sweeps)
    assert [r.sweep_index for r in records] == [0, 1, 2]
    assert records[0].delta_density is None and records[2].delta_density is not None
    assert records[2].temperature_c == 175.0
    # a map update without valence is ignored, a broken listener does not stop the state
    state.add_listener(lambda part: 1 / 0)
    state.handle_map_update({"sweep_index": 9}, {"edge_energy": np.zeros((4, 4))})
    assert state.maps.sweep_index == 2


def test_documents_give_progress_trace_and_thinning():
    state = MonitorState(MonitorConfig(max_trace_points=16))
    state.handle_document("start", {"uid": "r1", "sweep_index": 1, "num_sweeps": 4,
                                    "energies_ev": [8300.0 + i for i in range(10)],
                                    "setpoint_c": 150.0})
    state.handle_document("descriptor", {"uid": "d1", "run_start": "r1", "name": "primary"})
    state.handle_document("descriptor", {"uid": "d2", "run_start": "r1", "name": "flat"})
    for k in range(5):
        state.handle_document("event", {"descriptor": "d1", "time": 1e9 + k, "data": {
            "heater_temperature_c": 150.0 + k, "clock_time_s": 60.0 * k,
            "mono_energy_ev": 8300.0 + k}})
    state.handle_document("event", {"descriptor": "d2", "data": {"heater_temperature_c": 151.0,
                                                                 "clock_time_s": 400.0}})
    p = state.progress
    assert (p.sweep_index, p.num_sweeps, p.n_energies, p.n_primary) == (1, 4, 10, 5)
    assert p.energy_ev == 8304.0 and p.temperature_c == 151.0
    assert p.fraction == pytest.approx((1 + 0.5) / 4)
    assert state.trace_time_s == [0.0, 60.0, 120.0, 180.0, 240.0, 400.0]
    state.handle_document("stop", {"run_start": "r1", "exit_status": "success"})
    assert not state.progress.run_open and state.progress.fraction == pytest.approx(0.5)
    for k in range(40):
        state.handle_document("event", {"descriptor": "d1", "data": {
            "heater_temperature_c": 200.0, "clock_time_s": 1000.0 + k}})
    assert len(state.trace_time_s) <= 16 and state.trace_epoch >= 1
    assert state.trace_time_s == sorted(state.trace_time_s)


def _doc(seq: int, name: str, doc: dict, publisher: str = "p1") -> DocumentMessage:
    header = {"v": 1, "kind": "document", "seq": seq, "time": 0.0, "publisher": publisher,
              "run_uid": "r", "name": name}
    return DocumentMessage(header=header, name=name, doc=doc)


def _heartbeat(seq: int, publisher: str = "p1") -> Heartbeat:
    return Heartbeat(header={"v": 1, "kind": "heartbeat", "seq": seq, "time": 0.0,
                             "publisher": publisher, "run_uid": None})


def test_sequence_tracker_expects_skipped_frames():
    tracker = SequenceTracker(frames_skipped=True)
    desc = {"uid": "d", "data_keys": {"img": {"external": "FILESTORE:"}, "t": {}}}
    tracker.accept(_doc(0, "start", {}))
    tracker.accept(_doc(1, "descriptor", desc))
    tracker.accept(_doc(2, "event", {"descriptor": "d"}))   # frame 3 skipped
    tracker.accept(_heartbeat(3))
    tracker.accept(_doc(4, "event", {"descriptor": "d"}))   # frame 5 skipped
    tracker.accept(_doc(6, "event", {"descriptor": "d"}))
    assert (tracker.gaps, tracker.missed) == (0, 0)
    tracker.accept(_doc(10, "event", {"descriptor": "d"}))  # 8, 9 lost (7 was a frame)
    assert (tracker.gaps, tracker.missed) == (1, 2)
    tracker.accept(_heartbeat(14))                            # 12..14 lost
    assert (tracker.gaps, tracker.missed) == (2, 5)
    # an event whose frame was never published: no false gap, the count resynchronises
    tracker.accept(_doc(15, "event", {"descriptor": "d"}))
    tracker.accept(_doc(16, "stop", {}))
    tracker.accept(_doc(17, "start", {}))
    assert (tracker.gaps, tracker.missed) == (2, 5)
    # a restarted publisher starts a new count
    tracker.accept(_doc(0, "start", {}, publisher="p2"))
    assert tracker.restarts == 1 and tracker.missed == 5


def test_sequence_tracker_without_skipping_counts_every_hole():
    tracker = SequenceTracker(frames_skipped=False)
    tracker.accept(_doc(5, "start", {}))
    tracker.accept(_doc(7, "stop", {}))
    assert (tracker.gaps, tracker.missed) == (1, 1)
