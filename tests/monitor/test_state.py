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


def _random_map(shape, seed=3):
    rng = np.random.default_rng(seed)
    values = rng.normal(3.0, 0.6, shape).astype(np.float32)
    values[rng.random(shape) < 0.1] = np.nan
    values[0, :3] = [np.inf, -np.inf, np.nan]
    mask = rng.random(shape) > 0.2
    return values, mask


def test_reduce_kernel_equals_numpy_reference():
    from thermoxanes.monitor import _kernels

    values, mask = _random_map((67, 50))
    edges = np.linspace(1.5, 4.5, 151)
    values[5, 5], values[6, 6], values[7, 7] = 1.5, 4.5, 4.52  # edges and beyond
    mask[5, 5] = mask[6, 6] = mask[7, 7] = True
    for factor in (1, 3, 4):
        display, counts = _kernels.reduce_map(values, mask, True, factor, edges)
        masked = np.where(mask & np.isfinite(values), values, np.nan)
        reference = block_reduce(masked, factor)
        assert display.shape == reference.shape
        np.testing.assert_array_equal(np.isnan(display), np.isnan(reference))
        np.testing.assert_allclose(display, reference, rtol=1e-5, equal_nan=True)
        expected, _ = np.histogram(masked[np.isfinite(masked)], bins=edges)
        np.testing.assert_array_equal(counts, expected)
    # without a mask, and without a histogram (published by the analysis service)
    display, counts = _kernels.reduce_map(values, np.ones((1, 1), bool), False, 2,
                                          np.zeros(1))
    finite = np.where(np.isfinite(values), values, np.nan)
    np.testing.assert_allclose(display, block_reduce(finite, 2), rtol=1e-5, equal_nan=True)
    assert counts.size == 0


def test_significance_and_colour_kernels():
    from thermoxanes.monitor import _kernels

    z, mask = _random_map((33, 40))
    z = (z - 3.0) * 6.0
    sig, n = _kernels.significance(z, mask, True, 3.0, 4)
    full = (np.abs(np.nan_to_num(z, nan=0.0)) > 3.0) & mask
    assert n == full.sum() > 0
    np.testing.assert_array_equal(sig, block_reduce(full, 4, how="max"))
    lut = _kernels.rgba_lut(["#000000", "#ff0000", "#00ff00", "#0000ff"])
    assert lut[1] == 0xFF0000FF and lut[3] == 0xFFFF0000  # R in the lowest byte
    values = np.array([[np.nan, -1.0, 0.0, 0.24, 0.26, 0.5, 0.99, 1.0, 7.0]], np.float32)
    rgba = _kernels.colormap(values, 0.0, 1.0, lut)
    # as Bokeh's LinearColorMapper: 4 equal bins, clamped at both ends; NaN transparent
    assert rgba[0].tolist() == [0] + [int(lut[k]) for k in (0, 0, 0, 1, 2, 3, 3, 3)]


def test_display_maps_are_coloured_and_outlined(series):
    state = MonitorState(MonitorConfig(max_display_px=32))
    for _ in range(2):
        state.handle_map_update(*series.next())
    maps = state.maps
    inside = np.isfinite(maps.valence)
    assert maps.valence_rgba.shape == (32, 32) and maps.valence_rgba.dtype == np.uint32
    np.testing.assert_array_equal((maps.valence_rgba >> 24) == 255, inside)
    assert maps.differential_rgba is not None and maps.differential_bound > 0
    assert maps.extent == (64.0, 64.0)  # pixels: no pixel size known
    # one contour level (lines separated by NaN) around the oxidised patch, in the map
    assert len(maps.outline["xs"]) == 1
    xs = np.asarray(maps.outline["xs"][0])
    patch_x = 0.35 * 64
    assert 0 < np.nanmin(xs) < patch_x < np.nanmax(xs) < 64


def test_published_histograms_are_used_and_summaries_join_the_series(series):
    state = MonitorState()
    seen: list[str] = []
    state.add_listener(seen.append)
    header, arrays = series.next()
    edges = np.linspace(2.0, 4.0, 5)
    arrays["valence_histogram"] = np.array([0, 10, 30, 0], np.int64)
    arrays["valence_histogram_edges"] = edges
    state.handle_map_update(header, arrays)
    record = state.sweeps[-1]
    np.testing.assert_array_equal(record.valence_edges, edges)
    np.testing.assert_allclose(record.valence_density, [0, 0.5, 1.5, 0])  # not recomputed
    # an earlier sweep as a late joiner's snapshot offers it: histograms only
    summary = {"sweep_index": 7, "run_uid": "r7", "series_uid": "other", "summary": True,
               "temperature_c": 150.0, "mean_valence": 3.1,
               "differential": {"against_sweep": 6, "mean_delta_valence": -0.1}}
    seen.clear()
    maps_before = state.maps
    state.handle_map_update(summary, {
        "valence_histogram": np.array([5, 5], np.int64),
        "valence_histogram_edges": np.array([3.0, 3.1, 3.2]),
        "differential_histogram": np.array([1, 3], np.int64),
        "differential_histogram_edges": np.array([-0.2, -0.1, 0.0])})
    assert seen == ["series"] and state.maps is maps_before
    record = state.sweeps[-1]
    assert (record.sweep_index, record.temperature_c, record.against_sweep) == (7, 150.0, 6)
    np.testing.assert_allclose(record.delta_density, [2.5, 7.5])
    # a summary without histograms, or a broken histogram, is ignored
    state.handle_map_update(dict(summary, sweep_index=8), {})
    state.handle_map_update(dict(summary, sweep_index=9), {
        "valence_histogram": np.ones(3), "valence_histogram_edges": np.ones(4)})
    assert len(state.sweeps) == 2


def test_percentiles_from_counts():
    from thermoxanes.monitor.state import percentiles_from_counts

    edges = np.linspace(0.0, 10.0, 11)
    lo, hi = percentiles_from_counts(np.ones(10), edges, (1, 99))
    assert lo == pytest.approx(0.1) and hi == pytest.approx(9.9)
    assert percentiles_from_counts(np.zeros(10), edges, (1, 99)) is None


def test_progress_names_a_run_that_is_not_a_sweep():
    state = MonitorState()
    state.handle_document("start", {"uid": "abcdef123456", "plan_name": "heater_safe_state",
                                    "num_sweeps": 4, "sweep_uids": ["a", "b", "c", "d"]})
    p = state.progress
    assert p.plan_name == "heater_safe_state" and p.sweep_index is None
    assert p.fraction == 1.0
    from thermoxanes.monitor.app import MonitorView

    text = MonitorView._progress_html(vars(p).copy(), p.fraction)
    assert "heater_safe_state" in text and "abcdef12" not in text
    assert "4 of 4" in text


def test_plot_ranges_hold_the_data_and_change_rarely():
    from bokeh.models import Range1d

    from thermoxanes.monitor.app import _fit_range

    rng = Range1d(0, 1)
    times = [0.0]
    _fit_range(rng, times)
    assert rng.start < 0.0 < rng.end
    changes = 0
    for k in range(1, 30):
        times.append(20.0 * k)
        before = (rng.start, rng.end)
        _fit_range(rng, times)
        span = max(times) - min(times)
        # every point inside, clear of the edges
        assert rng.start <= min(times) - 0.04 * span and rng.end >= max(times) + 0.04 * span
        changes += (rng.start, rng.end) != before
    assert changes <= 15  # grows in steps, not with every point
    _fit_range(rng, [3.0, 3.1])  # far narrower data: the range follows
    assert rng.start < 3.0 and 3.1 < rng.end < 3.5
