"""Measure map update -> browser latency of the monitor (prints JSON; not a test).

A real publisher sends synthetic map updates; the monitor runs in this process; a
headless Chromium (playwright, /usr/bin/chromium) has the page open. In the page a hook
on the valence map's data source records ``Date.now()`` after the next two animation
frames (i.e. once the new map was painted). Latency = that time minus the wall-clock
time just before ``send_map_update``.

    .venv/bin/python tests/monitor/measure_latency.py [--sizes 64 512 2048] [--n 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from playwright.sync_api import sync_playwright

from tests.monitor.conftest import CHROMIUM, CHROMIUM_ARGS, SyntheticSeries
from thermoxanes.monitor import start_monitor
from thermoxanes.streaming.publisher import Publisher

HOOK = """
() => {
  window.__txm_seen = [];
  const doc = window.Bokeh.documents[0];
  const src = doc.get_model_by_name('valence_source');
  const fig = doc.get_model_by_name('txm-valence-map');
  src.change.connect(() => {
    requestAnimationFrame(() => requestAnimationFrame(() => {
      window.__txm_seen.push([Date.now(), fig.title.text]);
    }));
  });
  return true;
}
"""


def measure(size: int, n: int, viewers: int, spacing_s: float) -> dict:
    maps_pub = Publisher("tcp://127.0.0.1:*")
    handle = start_monitor(maps_pub.endpoint, None)
    series = SyntheticSeries(size=size)
    sent: dict[int, float] = {}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pages = []
            for _ in range(viewers):
                page = browser.new_page(viewport={"width": 1280, "height": 1400})
                page.goto(handle.url)
                page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0 && "
                                       "Bokeh.documents[0].get_model_by_name('valence_source')",
                                       timeout=60000)
                page.evaluate(HOOK)
                pages.append(page)
            deadline = time.monotonic() + 30
            while handle.state.maps_health.messages == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            for _ in range(n):
                header, arrays = series.next()
                sent[header["sweep_index"]] = time.time()
                maps_pub.send_map_update(header, arrays)
                time.sleep(spacing_s)
            time.sleep(2.0)
            seen = [page.evaluate("() => window.__txm_seen") for page in pages]
            browser.close()
    finally:
        handle.close()
        maps_pub.close()
    latencies = []
    for events in seen:
        for t_ms, title in events:
            if "sweep " not in title:
                continue
            index = int(title.split("sweep ")[1].split(",")[0])
            latencies.append(t_ms / 1000.0 - sent[index])
    return {
        "map_size": size, "updates": n, "viewers": viewers,
        "received": len(latencies),
        "median_s": round(statistics.median(latencies), 3) if latencies else None,
        "max_s": round(max(latencies), 3) if latencies else None,
        "min_s": round(min(latencies), 3) if latencies else None,
        "all_s": [round(x, 3) for x in sorted(latencies)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 512, 2048])
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--viewers", type=int, default=2)
    parser.add_argument("--spacing-s", type=float, default=1.5)
    args = parser.parse_args()
    np.seterr(all="ignore")
    results = [measure(s, args.n, args.viewers, args.spacing_s) for s in args.sizes]
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
