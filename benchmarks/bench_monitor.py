"""Live monitor latency: map update to painted map in real browsers; prints JSON.

What is timed, per map size, with ``--viewers`` headless Chromium pages open (Debian
``/usr/bin/chromium``, one window each, driven over its DevTools protocol):

- **project**: ``thermoxanes monitor`` (``start_monitor``) fed by a real publisher in a
  separate process, as the analysis service is: map updates of synthetic heating sweeps
  with the nine full-resolution float32 maps and the histograms the analysis service
  sends (about 150 MB at 2048 x 2048);
- **baseline_raw_bokeh**: the raw cost of the same push with no processing: the same
  publisher process and wire protocol, a Bokeh server page with one figure whose image
  glyph gets the published ``valence`` map as it arrives (full resolution, colour-mapped
  by BokehJS in the browser), pushed to every session on the next tick.

Each page records, with a hook on the map's data source, when the new map was painted
(two animation frames after the source changed).  Latency = that time minus the
publisher's wall-clock time just before ``send_map_update``; it includes ZeroMQ, the
monitor's reduction, the Bokeh push and the browser's drawing.  Pages are open (and
settled) before the first update, as a monitor page is during an experiment.  For the
project, the JSON also gives the median of each stage: received by the monitor, display
maps ready, data in the browser, painted.

    .venv/bin/python benchmarks/bench_monitor.py [--sizes 64 512 2048] [--updates 10]
        [--viewers 2] [--spacing-s 1.5] [--no-baseline]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.monitor.conftest import CHROMIUM, CHROMIUM_ARGS, SyntheticSeries  # noqa: E402

#: In each page: note [sweep, data-change time, paint time] for every new valence map.
HOOK = """
() => {
  window.__txm_seen = [];
  const doc = window.Bokeh.documents[0];
  const src = doc.get_model_by_name('valence_source');
  src.change.connect(() => {
    const sweep = src.data.sweep && src.data.sweep.length ? Number(src.data.sweep[0]) : -1;
    const changed = Date.now();
    requestAnimationFrame(() => requestAnimationFrame(() => {
      window.__txm_seen.push([sweep, changed, Date.now()]);
    }));
  });
  return true;
}
"""
READY_JS = ("() => window.Bokeh && Bokeh.documents.length > 0 && "
            "Bokeh.documents[0].get_model_by_name('valence_source') !== null")


# -- the browser: Chromium driven over its DevTools protocol, nothing else -----------------
class _Chromium:
    """Headless Chromium with one window per viewer, driven by ``Runtime.evaluate`` only.

    Not playwright here: playwright enables the DevTools ``Network`` domain, so every
    websocket frame the page receives (megabytes per map update) is also base64-encoded
    and sent to its driver, CPU time a real viewer's browser never spends and that the
    pipeline measured here would lose on a 2-core machine.
    """

    def __init__(self) -> None:
        import asyncio
        import re
        import subprocess
        import tempfile

        from tornado.websocket import websocket_connect

        self._profile = tempfile.mkdtemp(prefix="bench-monitor-chromium-")
        self.proc = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_ARGS, "--remote-debugging-port=0",
             f"--user-data-dir={self._profile}", "--window-size=1280,1400", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                break
            match = re.search(r"DevTools listening on (ws://\S+)", line)
            url = match.group(1) if match else None
        if url is None:
            self.proc.kill()
            raise RuntimeError("Chromium did not start its DevTools endpoint")
        threading.Thread(target=lambda: self.proc.stderr.read(), daemon=True).start()
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        self._next_id = 0
        self._pending: dict[int, Any] = {}

        async def connect():
            return await websocket_connect(url, max_message_size=1 << 28)

        self._ws = asyncio.run_coroutine_threadsafe(connect(), self._loop).result(60)
        asyncio.run_coroutine_threadsafe(self._read(), self._loop)

    async def _read(self) -> None:
        while True:
            message = await self._ws.read_message()
            if message is None:
                return
            data = json.loads(message)
            future = self._pending.pop(data.get("id"), None)
            if future is not None and not future.done():
                future.set_result(data)

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout_s: float = 120.0) -> dict:
        """One DevTools command; its result."""
        import asyncio

        async def send() -> dict:
            self._next_id += 1
            ident = self._next_id
            future = self._loop.create_future()
            self._pending[ident] = future
            message = {"id": ident, "method": method, "params": params or {}}
            if session is not None:
                message["sessionId"] = session
            await self._ws.write_message(json.dumps(message))
            return await asyncio.wait_for(future, timeout_s)

        reply = asyncio.run_coroutine_threadsafe(send(), self._loop).result(timeout_s + 5)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def new_page(self, url: str) -> _Page:
        """A page in a window of its own (a background tab would not be painted)."""
        context = self.call("Target.createBrowserContext")["browserContextId"]
        target = self.call("Target.createTarget", {"url": "about:blank", "newWindow": True,
                                                   "browserContextId": context})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target,
                                                      "flatten": True})["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", {
            "width": 1280, "height": 1400, "deviceScaleFactor": 1, "mobile": False},
            session)
        self.call("Page.navigate", {"url": url}, session)
        return _Page(self, session)

    def close(self) -> None:
        import shutil

        try:
            self.call("Browser.close", timeout_s=10)
        except Exception:  # noqa: BLE001 - killed below anyway
            pass
        try:
            self.proc.wait(10)
        except Exception:  # noqa: BLE001 - still running
            self.proc.kill()
        self._loop.call_soon_threadsafe(self._loop.stop)
        shutil.rmtree(self._profile, ignore_errors=True)


class _Page:
    def __init__(self, browser: _Chromium, session: str) -> None:
        self.browser = browser
        self.session = session

    def evaluate(self, function: str) -> Any:
        """Call a JavaScript function expression in the page; its JSON value."""
        result = self.browser.call("Runtime.evaluate", {
            "expression": f"({function})()", "returnByValue": True, "awaitPromise": True},
            self.session)
        if "exceptionDetails" in result:
            raise RuntimeError(str(result["exceptionDetails"])[:300])
        return result["result"].get("value")

    def wait_for(self, function: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self.evaluate(function):
                    return
            except RuntimeError:
                pass  # still loading
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {function}")
            time.sleep(0.2)


# -- the publisher, in its own process (as the analysis service is) ----------------------
def _acquisition(pub: Any, rate_hz: float, stop: threading.Event) -> None:
    """Documents as the acquisition sends them during a sweep: events at ``rate_hz``."""
    import uuid

    run = str(uuid.uuid4())
    pub("start", {"uid": run, "time": time.time(), "sweep_index": 0, "num_sweeps": 4,
                  "energies_ev": [8200.0 + i for i in range(68)], "setpoint_c": 150.0})
    pub("descriptor", {"uid": "primary", "run_start": run, "name": "primary",
                       "time": time.time(), "data_keys": {
                           "heater_temperature_c": {"dtype": "number", "source": "sim",
                                                    "shape": []},
                           "clock_time_s": {"dtype": "number", "source": "sim", "shape": []},
                           "mono_energy_ev": {"dtype": "number", "source": "sim",
                                              "shape": []}}})
    k = 0
    while not stop.wait(1.0 / rate_hz):
        k += 1
        pub("event", {"uid": str(uuid.uuid4()), "descriptor": "primary", "time": time.time(),
                      "seq_num": k, "timestamps": {},
                      "data": {"heater_temperature_c": 150.0 + 0.01 * k,
                               "clock_time_s": 2.0 * k, "mono_energy_ev": 8200.0 + k % 68}})


def _publisher_main(conn, size: int, updates: int, acquisition_hz: float) -> None:
    from thermoxanes.streaming.publisher import Publisher

    series = SyntheticSeries(size=size, histograms=True)
    prepared = [series.next() for _ in range(updates)]
    pub = Publisher("tcp://127.0.0.1:*", heartbeat_s=0.2)
    data = Publisher("tcp://127.0.0.1:*", heartbeat_s=0.2) if acquisition_hz > 0 else None
    conn.send((pub.endpoint, None if data is None else data.endpoint))
    stop = threading.Event()
    if data is not None:
        threading.Thread(target=_acquisition, args=(data, acquisition_hz, stop),
                         daemon=True).start()
    try:
        while True:
            command = conn.recv()
            if command == "stop":
                break
            header, arrays = prepared[int(command)]
            sent = time.time()
            pub.send_map_update(header, arrays)
            conn.send(sent)
        pub.flush(timeout_s=30.0)
    finally:
        stop.set()
        if data is not None:
            data.close()
        pub.close()
        conn.close()


class _PublisherProcess:
    def __init__(self, size: int, updates: int, acquisition_hz: float = 0.0) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_publisher_main, args=(child, size, updates,
                                                                   acquisition_hz),
                                daemon=True)
        self.proc.start()
        if not self.conn.poll(600):
            raise RuntimeError("publisher process did not start")
        self.endpoint, self.data_endpoint = self.conn.recv()

    def send(self, index: int) -> float:
        self.conn.send(index)
        return float(self.conn.recv())

    def close(self) -> None:
        try:
            self.conn.send("stop")
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(60)
        if self.proc.is_alive():
            self.proc.kill()


# -- the baseline: raw Bokeh, the published map pushed as it is ---------------------------
class _RawBokehServer:
    """One figure with an image glyph; every map update's ``valence`` goes out as is."""

    def __init__(self, endpoint: str) -> None:
        import asyncio

        from bokeh.application import Application
        from bokeh.application.handlers.function import FunctionHandler
        from bokeh.models import ColumnDataSource, LinearColorMapper
        from bokeh.palettes import Viridis256
        from bokeh.plotting import figure
        from bokeh.server.server import BaseServer
        from bokeh.server.tornado import BokehTornado
        from bokeh.server.util import bind_sockets
        from tornado.httpserver import HTTPServer
        from tornado.ioloop import IOLoop

        from thermoxanes.streaming.protocol import MapUpdateMessage
        from thermoxanes.streaming.subscriber import Subscriber

        self.sessions: list[tuple[Any, Any]] = []
        self.messages = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        sockets, port = bind_sockets("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{port}/"

        def make(doc) -> None:
            source = ColumnDataSource({"image": [], "sweep": [], "x": [], "y": [], "dw": [],
                                       "dh": []}, name="valence_source")
            mapper = LinearColorMapper(palette=Viridis256, low=2.0, high=4.5,
                                       nan_color=(0, 0, 0, 0))
            fig = figure(frame_width=360, frame_height=360, x_range=(0, 1), y_range=(1, 0),
                         name="txm-valence-map", title="raw Bokeh baseline")
            fig.image(image="image", x="x", y="y", dw="dw", dh="dh", source=source,
                      color_mapper=mapper)
            doc.add_root(fig)
            with self._lock:
                self.sessions.append((doc, source))

        started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            app = BokehTornado({"/": Application(FunctionHandler(make))},
                               extra_websocket_origins=[f"127.0.0.1:{port}"])
            http = HTTPServer(app)
            http.add_sockets(sockets)
            server = BaseServer(IOLoop.current(), app, http)
            server.start()
            started.set()
            try:
                loop.run_forever()
            finally:
                server.stop(wait=False)
                loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        started.wait(30)
        self._sub = Subscriber(endpoint, rcvhwm=100)

        def receive() -> None:
            while not self._stop.is_set():
                message = self._sub.recv(timeout_s=0.2)
                if message is None:
                    continue
                self.messages += 1
                if not isinstance(message, MapUpdateMessage):
                    continue
                valence = message.arrays["valence"]
                sweep = int(message.header.get("sweep_index", -1))
                with self._lock:
                    sessions = list(self.sessions)
                for doc, source in sessions:
                    def push(source=source, valence=valence, sweep=sweep) -> None:
                        source.data = {"image": [valence], "sweep": [sweep], "x": [0],
                                       "y": [0], "dw": [1], "dh": [1]}
                    try:
                        doc.add_next_tick_callback(push)
                    except Exception:  # noqa: BLE001 - a closed session
                        continue

        self._receiver = threading.Thread(target=receive, daemon=True)
        self._receiver.start()

    def close(self) -> None:
        self._stop.set()
        self._receiver.join(5)
        self._sub.close()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


# -- one measurement ---------------------------------------------------------------------
def _cpu_seconds(publisher_pid: int) -> dict[str, float]:
    """CPU time (user + system) used so far by the publisher, this process and Chromium."""
    import psutil

    def used(proc: psutil.Process) -> float:
        try:
            t = proc.cpu_times()
            return t.user + t.system
        except psutil.Error:
            return 0.0

    me = psutil.Process()
    browser = sum(used(p) for p in me.children(recursive=True)
                  if "chrom" in (p.name() or "").lower())
    return {"publisher": used(psutil.Process(publisher_pid)), "monitor_process": used(me),
            "browser": browser}


def _summary(latencies: list[float], expected: int) -> dict[str, Any]:
    values = sorted(latencies)
    missing = expected - len(values)
    out: dict[str, Any] = {"painted": len(values), "expected": expected, "missing": missing}
    if values:
        out.update(
            median_s=round(statistics.median(values), 3),
            p90_s=round(float(np.percentile(values, 90)), 3),
            max_s=round(values[-1], 3),
            over_1s=sum(v > 1.0 for v in values) + missing,
        )
    return out


def measure(variant: str, size: int, updates: int, viewers: int, spacing_s: float,
            settle_s: float = 3.0, drain_s: float = 15.0,
            acquisition_hz: float = 0.0) -> dict[str, Any]:
    """Send ``updates`` map updates of ``size``^2 maps; latencies in every viewer.

    With ``acquisition_hz`` the monitor also follows an acquisition stream (events at
    that rate: temperature trace, progress), as during an experiment.
    """
    from thermoxanes.monitor import start_monitor

    publisher = _PublisherProcess(size, updates,
                                  acquisition_hz if variant == "project" else 0.0)
    handle = raw = None
    display_ready: dict[int, float] = {}
    try:
        if variant == "project":
            handle = start_monitor(publisher.endpoint, publisher.data_endpoint)
            url = handle.url

            def note(part: str) -> None:
                if part == "maps" and handle.state.maps is not None:
                    index = handle.state.maps.sweep_index
                    display_ready.setdefault(-1 if index is None else index, time.time())

            handle.state.add_listener(note)

            def subscribed() -> bool:
                return handle.state.maps_health.messages > 0
        else:
            raw = _RawBokehServer(publisher.endpoint)
            url = raw.url

            def subscribed() -> bool:
                return raw.messages > 0
        sent: dict[int, float] = {}
        browser = _Chromium()
        try:
            pages = []
            for _ in range(viewers):
                page = browser.new_page(url)
                page.wait_for(READY_JS)
                page.evaluate(HOOK)
                pages.append(page)
            deadline = time.monotonic() + 60
            while not subscribed() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(settle_s)
            load_before = os.getloadavg()
            cpu_before = _cpu_seconds(publisher.proc.pid)
            for index in range(updates):
                sent[index] = publisher.send(index)
                time.sleep(spacing_s)
            cpu_after = _cpu_seconds(publisher.proc.pid)
            deadline = time.monotonic() + drain_s
            seen: list[list] = []
            while time.monotonic() < deadline:
                seen = [page.evaluate("() => window.__txm_seen") for page in pages]
                if all(len({e[0] for e in s}) >= updates for s in seen):
                    break
                time.sleep(0.25)
            load_after = os.getloadavg()
        finally:
            browser.close()
    finally:
        if handle is not None:
            received = {r.sweep_index: r.received_at for r in handle.state.sweeps}
            handle.close()
        if raw is not None:
            raw.close()
        publisher.close()
    latencies: list[float] = []
    changes: list[float] = []
    by_update: dict[int, list[float]] = {i: [] for i in sent}
    change_by_update: dict[int, list[float]] = {i: [] for i in sent}
    for events in seen:
        first: dict[int, tuple[float, float]] = {}
        for sweep, changed_ms, painted_ms in events:
            if sweep in sent and sweep not in first:
                first[sweep] = (changed_ms / 1000.0, painted_ms / 1000.0)
        for sweep, (changed, painted) in first.items():
            latencies.append(painted - sent[sweep])
            changes.append(changed - sent[sweep])
            by_update[sweep].append(round(painted - sent[sweep], 3))
            change_by_update[sweep].append(round(changed - sent[sweep], 3))
    out: dict[str, Any] = {
        "load_avg_1min": [round(load_before[0], 2), round(load_after[0], 2)],
        **_summary(latencies, updates * viewers),
        # CPU time per update while the updates were sent (one spacing each): what the
        # push path costs whatever the load
        "cpu_s_per_update": {k: round((cpu_after[k] - cpu_before[k]) / updates, 3)
                             for k in cpu_before},
        "by_update_s": [by_update[i] for i in sorted(by_update)],
        "data_in_browser_by_update_s": [change_by_update[i] for i in sorted(change_by_update)],
    }
    if variant == "project":
        out["received_by_update_s"] = [round(received[i] - sent[i], 3) if i in received
                                       else None for i in sorted(sent)]
        out["display_ready_by_update_s"] = [round(display_ready[i] - sent[i], 3)
                                            if i in display_ready else None
                                            for i in sorted(sent)]
    if variant == "project" and display_ready:
        out["stages_median_s"] = {
            "received_by_monitor": round(statistics.median(
                received[i] - sent[i] for i in sent if i in received), 3),
            "display_maps_ready": round(statistics.median(
                display_ready[i] - sent[i] for i in sent if i in display_ready), 3),
            "data_in_browser": round(statistics.median(changes), 3) if changes else None,
            "painted": out.get("median_s"),
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 512, 2048])
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--viewers", type=int, default=2)
    parser.add_argument("--spacing-s", type=float, default=1.5)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--acquisition-hz", type=float, default=0.0,
                        help="also feed the monitor acquisition events at this rate")
    args = parser.parse_args(argv)
    np.seterr(all="ignore")
    results: dict[str, Any] = {
        "benchmark": "monitor map update -> painted map, latency (s)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]},
        "settings": {"updates": args.updates, "viewers": args.viewers,
                     "spacing_s": args.spacing_s, "acquisition_hz": args.acquisition_hz,
                     "browser": CHROMIUM},
        "sizes": {},
    }
    for size in args.sizes:
        entry: dict[str, Any] = {}
        print(f"bench_monitor: {size}x{size} project", file=sys.stderr, flush=True)
        entry["project"] = measure("project", size, args.updates, args.viewers,
                                   args.spacing_s, acquisition_hz=args.acquisition_hz)
        if not args.no_baseline:
            print(f"bench_monitor: {size}x{size} baseline", file=sys.stderr, flush=True)
            entry["baseline_raw_bokeh"] = measure("baseline", size, args.updates,
                                                  args.viewers, args.spacing_s)
        results["sizes"][str(size)] = entry
    results["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
