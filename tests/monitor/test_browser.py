"""The monitor page in a real browser: headless Debian Chromium driven by playwright.

A real publisher sends map updates and acquisition documents; the monitor runs in this
process on a free port. Waits are generous (a loaded 2-core machine); nothing is timed.
"""

from __future__ import annotations

import io
import time
import uuid
from urllib.parse import urlsplit

import numpy as np
import pytest

from tests.monitor.conftest import SyntheticSeries
from thermoxanes.monitor import start_monitor

pytestmark = [pytest.mark.system, pytest.mark.slow]

TIMEOUT_S = 90.0

_TITLE_JS = """
() => {
  const docs = (window.Bokeh && window.Bokeh.documents) || [];
  if (!docs.length) { return null; }
  try {  // a document still loading (e.g. right after a reload) may not answer yet
    const fig = docs[0].get_model_by_name('txm-valence-map');
    return fig ? fig.title.text : null;
  } catch (e) { return null; }
}
"""

_STATE_JS = """
() => {
  const doc = window.Bokeh.documents[0];
  const finite = (name) => {  // the map's numbers (the image itself is RGBA)
    const data = doc.get_model_by_name(name).data;
    if (!data.value || !data.value.length) { return 0; }
    let n = 0;
    for (const v of data.value[0]) { if (Number.isFinite(v)) { n += 1; } }
    return n;
  };
  const opaque = (name) => {  // drawn pixels: alpha byte set (NaN pixels are clear)
    const data = doc.get_model_by_name(name).data;
    if (!data.image || !data.image.length) { return 0; }
    let n = 0;
    for (const v of data.image[0]) { if ((v >>> 24) === 255) { n += 1; } }
    return n;
  };
  const by = (name) => doc.get_model_by_name(name);
  return {
    valence_pixels: finite('valence_source'),
    valence_opaque: opaque('valence_source'),
    valence_sweep: by('valence_source').data.sweep,
    differential_pixels: finite('differential_source'),
    outlines: by('significant_source').data.xs.length,
    histograms: by('histogram_source').data.xs.length,
    delta_histograms: by('delta_histogram_source').data.xs.length,
    sweeps: by('series_source').data.label.length,
    trace_points: by('trace_source').data.temperature_c.length,
    progress: by('progress').text,
    health: by('health').text,
  };
}
"""


def _wait(predicate, what: str, timeout_s: float = TIMEOUT_S, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def _wait_title(page, text: str) -> None:
    page.wait_for_function(f"() => {{ const t = ({_TITLE_JS})(); "
                           f"return t !== null && t.includes({text!r}); }}",
                           timeout=TIMEOUT_S * 1000, polling=100)


def _map_pixels(page) -> np.ndarray:
    from PIL import Image

    page.bring_to_front()  # a background tab is not repainted (requestAnimationFrame)
    png = page.locator(".txm-valence-map").first.screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int32)


def _colours(pixels: np.ndarray) -> int:
    flat = pixels.reshape(-1, 3)
    return len(np.unique(flat[:, 0] * 65536 + flat[:, 1] * 256 + flat[:, 2]))


def _drawn(page, unlike: np.ndarray | None = None) -> tuple[np.ndarray] | None:
    """The map's pixels once it shows many colours (and differs from ``unlike``)."""
    pixels = _map_pixels(page)
    if _colours(pixels) <= 30:
        return None
    if unlike is not None:
        # the colour bar's width follows its labels: compare the common top-left part
        h, w = min(pixels.shape[0], unlike.shape[0]), min(pixels.shape[1], unlike.shape[1])
        if np.mean(np.any(pixels[:h, :w] != unlike[:h, :w], axis=-1)) < 0.02:
            return None
    return (pixels,)


def _complete(state: dict) -> tuple[dict] | None:
    """The page state once everything of the second sweep has arrived."""
    done = (state["differential_pixels"] > 0 and state["outlines"] >= 1
            and state["histograms"] >= 2 and state["delta_histograms"] >= 1
            and state["sweeps"] >= 2 and state["trace_points"] >= 10
            and "2 of 3" in state["progress"])
    return (state,) if done else None


def _send_sweep_documents(pub, sweep_index: int, num_sweeps: int, temperature_c: float) -> None:
    """Start, descriptor, a few primary events and stop, as the acquisition sends them."""
    run_uid = str(uuid.uuid4())
    now = time.time()
    pub("start", {"uid": run_uid, "time": now, "sweep_index": sweep_index,
                  "num_sweeps": num_sweeps, "energies_ev": list(np.linspace(8200, 8630, 68)),
                  "setpoint_c": temperature_c, "series_uid": "s"})
    desc = str(uuid.uuid4())
    pub("descriptor", {"uid": desc, "run_start": run_uid, "time": now, "name": "primary",
                       "data_keys": {
                           "camera_image": {"source": "sim", "dtype": "array",
                                            "shape": [64, 64], "external": "FILESTORE:"},
                           "heater_temperature_c": {"source": "sim", "dtype": "number",
                                                    "shape": []},
                           "clock_time_s": {"source": "sim", "dtype": "number", "shape": []},
                           "mono_energy_ev": {"source": "sim", "dtype": "number", "shape": []},
                       }})
    for k in range(5):
        pub("event", {"uid": str(uuid.uuid4()), "descriptor": desc, "time": now, "seq_num": k + 1,
                      "data": {"camera_image": f"datum-{k}",
                               "heater_temperature_c": temperature_c + 0.1 * k,
                               "clock_time_s": 1200.0 * sweep_index + 60.0 * k,
                               "mono_energy_ev": 8200.0 + k},
                      "timestamps": {}, "filled": {}})
    pub("stop", {"uid": str(uuid.uuid4()), "run_start": run_uid, "time": now,
                 "exit_status": "success", "num_events": {"primary": 5}})


def test_live_page_draws_maps_updates_and_reconnects(browser, publishers, tmp_path):
    maps_pub, data_pub = publishers
    series = SyntheticSeries(histograms=True)  # as the analysis service sends them
    handle = start_monitor(maps_pub.endpoint, data_pub.endpoint,
                           maps_snapshot_endpoint=maps_pub.snapshot_endpoint)
    second = None
    try:
        origin = f"{urlsplit(handle.url).scheme}://{urlsplit(handle.url).netloc}"
        requests: list[str] = []
        page = browser.new_page(viewport={"width": 1280, "height": 1500})
        page.on("request", lambda r: requests.append(r.url))
        page.goto(handle.url, timeout=TIMEOUT_S * 1000)
        page.wait_for_function(f"() => ({_TITLE_JS})() !== null", timeout=TIMEOUT_S * 1000)
        _wait(lambda: handle.state.maps_health.messages > 0
              and handle.state.data_health.messages > 0, "both subscriptions live")

        # sweep 0: documents, then its map update
        _send_sweep_documents(data_pub, 0, 3, 25.0)
        header, arrays = series.next()
        assert maps_pub.send_map_update(header, arrays)
        _wait_title(page, "sweep 0")
        first = _wait(lambda: _drawn(page), "the valence map drawn with data")[0]
        page.screenshot(path=str(tmp_path / "sweep0.png"), full_page=True)
        state = page.evaluate(_STATE_JS)
        # 64x64 is shown 1:1: one number and one coloured pixel per pixel of the particle
        assert state["valence_pixels"] == series.mask.sum()
        assert state["valence_opaque"] == series.mask.sum()
        assert state["valence_sweep"] == [0]
        assert state["differential_pixels"] == 0

        # a second viewer at the same time
        viewer = browser.new_page(viewport={"width": 1280, "height": 1500})
        viewer.goto(handle.url, timeout=TIMEOUT_S * 1000)
        _wait_title(viewer, "sweep 0")

        # sweep 1: the map changes in both viewers, the differential map appears
        _send_sweep_documents(data_pub, 1, 3, 100.0)
        header, arrays = series.next()
        assert maps_pub.send_map_update(header, arrays)
        _wait_title(page, "sweep 1")
        _wait_title(viewer, "sweep 1")
        changed = _wait(lambda: _drawn(page, unlike=first),
                        "the drawn map to change after the new sweep")[0]
        assert _colours(changed) > 30
        # maps, series and documents come on separate pushes (and the documents on
        # another socket): wait until all of them are in, then check each
        state = _wait(lambda: _complete(page.evaluate(_STATE_JS)),
                      "differential map, histograms, series, trace and progress")[0]
        assert state["differential_pixels"] > 0
        assert state["outlines"] == 1  # the significant patch is outlined
        assert state["histograms"] == 2 and state["delta_histograms"] == 1
        assert state["sweeps"] == 2
        assert state["trace_points"] >= 10
        assert "2 of 3" in state["progress"]
        assert "live" in state["health"]
        page.bring_to_front()
        page.screenshot(path=str(tmp_path / "monitor.png"), full_page=True)
        assert (tmp_path / "monitor.png").stat().st_size > 10_000

        # everything the page loaded came from the monitor itself (no CDN)
        foreign = [u for u in requests if not u.startswith((origin, "data:", "blob:"))]
        assert not foreign, foreign

        # the monitor restarts on the same port: the open page reconnects by itself, and
        # the new monitor, a late joiner, has the earlier sweeps from the snapshot
        port = handle.port
        handle.close()
        second = _wait(lambda: _try_start(maps_pub.endpoint, data_pub.endpoint, port,
                                          maps_pub.snapshot_endpoint),
                       "the port to be free again")
        _wait(lambda: len(second.state.sweeps) == 2, "sweeps 0 and 1 from the snapshot")
        assert [r.sweep_index for r in second.state.sweeps] == [0, 1]
        assert second.state.maps.sweep_index == 1  # the latest maps came in full
        _wait_title(page, "sweep 1")
        header, arrays = series.next()
        assert maps_pub.send_map_update(header, arrays)
        _wait_title(page, "sweep 2")
        state = _wait(lambda: (lambda st: (st,) if st["histograms"] == 3 else None)(
            page.evaluate(_STATE_JS)), "three histograms after the reconnect")[0]
        assert state["sweeps"] == 3 and state["delta_histograms"] == 2
        assert state["valence_sweep"] == [2]
        page.screenshot(path=str(tmp_path / "after_reconnect.png"), full_page=True)
    finally:
        handle.close()
        if second is not None:
            second.close()


def _try_start(maps_endpoint: str, data_endpoint: str, port: int, snapshot: str):
    try:
        return start_monitor(maps_endpoint, data_endpoint, port=port,
                             maps_snapshot_endpoint=snapshot)
    except ValueError:
        return None
