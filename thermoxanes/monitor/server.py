"""Serve the monitor page: a Bokeh server on its own thread and event loop.

:func:`start_monitor` binds the HTTP port first (so ``port=0`` gives a free port and
the websocket origin allow-list names the real one), starts the receiver threads and the
Bokeh server, and returns a :class:`MonitorHandle` with the page's ``url``.
The page is read-only: it has no widget that sends anything to the acquisition or the
analysis; viewers only pan, zoom and save pictures of their own copy.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from thermoxanes.monitor.feeds import THREAD_PREFIX, Feed
from thermoxanes.monitor.state import MonitorConfig, MonitorState

log = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_endpoint(endpoint: str) -> None:
    if not isinstance(endpoint, str) or "://" not in endpoint:
        raise ValueError(f"bad endpoint {endpoint!r}: expected e.g. tcp://127.0.0.1:5577")
    transport, _, address = endpoint.partition("://")
    if transport not in ("tcp", "ipc", "inproc") or not address:
        raise ValueError(f"bad endpoint {endpoint!r}: expected e.g. tcp://127.0.0.1:5577")
    if transport == "tcp":
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad endpoint {endpoint!r}: expected tcp://HOST:PORT")


@dataclass
class MonitorHandle:
    """A running monitor.

    Attributes
    ----------
    url : str
        The page, e.g. ``http://127.0.0.1:8765/``.
    host : str
        Address the HTTP server listens on.
    port : int
        Its port.
    state : MonitorState
        What the page shows (for tests and embedding).
    """

    url: str
    host: str
    port: int
    state: MonitorState
    _feeds: list[Feed] = field(default_factory=list, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _shutdown: Callable[[], Any] | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _closed: bool = field(default=False, repr=False)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the server and the receiver threads (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for feed in self._feeds:
            feed.close()
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            if self._shutdown is not None:
                self._loop.call_soon_threadsafe(self._shutdown)
            else:
                self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout_s)

    def __enter__(self) -> MonitorHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_monitor(
    maps_endpoint: str | Sequence[str] | None,
    data_endpoint: str | Sequence[str] | None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    config: MonitorConfig | None = None,
    allow_remote: bool = False,
    maps_snapshot_endpoint: str | None = None,
) -> MonitorHandle:
    """Start the live monitor and return once its page can be loaded.

    Parameters
    ----------
    maps_endpoint : str, sequence of str or None
        The analysis service's map-update endpoint(s) (``--maps-endpoint`` of
        ``thermoxanes analyze``).
    data_endpoint : str, sequence of str or None
        The acquisition publisher's endpoint(s) (documents, stats and heartbeats are
        read; frames are not subscribed to).
    host : str
        Address to serve on; loopback by default.
    port : int
        HTTP port; 0 picks a free one (see ``handle.port``).
    config : MonitorConfig, optional
        Display settings.
    allow_remote : bool
        Permit a non-loopback ``host`` (the page has no authentication).
    maps_snapshot_endpoint : str, optional
        The analysis service's map snapshot endpoint (``--maps-snapshot-endpoint`` of
        ``thermoxanes analyze``): a monitor started mid-series then shows every earlier
        sweep too (histograms, means) and the latest maps.

    Returns
    -------
    MonitorHandle
        With ``.url`` and ``.close()``.

    Raises
    ------
    ValueError
        No endpoint, a malformed endpoint, a bad port, a remote host without
        ``allow_remote``, or the port cannot be bound.
    """
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import BaseServer
    from bokeh.server.tornado import BokehTornado
    from bokeh.server.util import bind_sockets
    from tornado.httpserver import HTTPServer
    from tornado.ioloop import IOLoop

    from thermoxanes.monitor.app import make_document

    endpoints = {}
    for kind, value in (("maps", maps_endpoint), ("data", data_endpoint)):
        if value:
            values = [value] if isinstance(value, str) else list(value)
            for ep in values:
                _check_endpoint(ep)
            endpoints[kind] = values
    if not endpoints:
        raise ValueError("give --maps-endpoint and/or --data-endpoint")
    if maps_snapshot_endpoint is not None:
        if "maps" not in endpoints:
            raise ValueError("a maps snapshot endpoint needs a maps endpoint")
        _check_endpoint(maps_snapshot_endpoint)
    if not isinstance(port, int) or not 0 <= port < 65536:
        raise ValueError(f"bad port {port!r}")
    if not _is_loopback(host) and not allow_remote:
        raise ValueError(f"refusing to serve on {host} (not loopback) without allow_remote; "
                         "the page has no authentication")
    try:
        sockets, actual_port = bind_sockets(host, port)
    except OSError as exc:
        raise ValueError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from exc

    state = MonitorState(config)
    feeds = [Feed(kind, eps if len(eps) > 1 else eps[0], state,
                  snapshot_endpoint=maps_snapshot_endpoint if kind == "maps" else None)
             for kind, eps in endpoints.items()]
    display_host = f"[{host}]" if ":" in host else host
    origins = [f"{display_host}:{actual_port}", f"localhost:{actual_port}",
               f"127.0.0.1:{actual_port}"]
    ready = threading.Event()
    failure: list[BaseException] = []
    loop_box: list[asyncio.AbstractEventLoop] = []
    shutdown_box: list[Callable[[], Any]] = []

    def serve() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loop_box.append(loop)
        server = None
        try:
            io_loop = IOLoop.current()
            app = Application(FunctionHandler(make_document(state)))
            tornado_app = BokehTornado({"/": app}, extra_websocket_origins=origins,
                                       absolute_url=f"http://{display_host}:{actual_port}")
            http_server = HTTPServer(tornado_app, xheaders=False)
            http_server.add_sockets(sockets)
            server = BaseServer(io_loop, tornado_app, http_server)
            server.start()
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            failure.append(exc)
            for s in sockets:
                s.close()
            ready.set()
            return
        async def shutdown() -> None:
            # stop listening, then close the open websockets so that viewers notice
            # at once and reconnect to the next monitor on this port
            http_server.stop()
            for connection in list(getattr(tornado_app, "_clients", ())):
                try:
                    connection._socket.close()
                except Exception:  # noqa: BLE001 - closing anyway
                    log.debug("websocket close failed", exc_info=True)
            try:
                await asyncio.wait_for(http_server.close_all_connections(), 2.0)
            except Exception:  # noqa: BLE001 - closing anyway (timeout included)
                log.debug("HTTP connections not closed in time", exc_info=True)
            loop.stop()

        shutdown_box.append(lambda: loop.create_task(shutdown()))
        ready.set()
        try:
            loop.run_forever()
        finally:
            try:
                server.stop(wait=False)
            except Exception:  # noqa: BLE001 - shutting down anyway
                log.debug("monitor server stop failed", exc_info=True)
            for s in sockets:
                s.close()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    thread = threading.Thread(target=serve, name=f"{THREAD_PREFIX}-http", daemon=True)
    thread.start()
    ready.wait()
    if failure:
        for feed in feeds:
            feed.subscriber.close()
        raise ValueError(f"monitor server failed to start: {failure[0]}")
    for feed in feeds:
        feed.start()
    url = f"http://{display_host}:{actual_port}/"
    log.info("monitor serving %s", url)
    return MonitorHandle(url=url, host=host, port=actual_port, state=state, _feeds=feeds,
                         _loop=loop_box[0], _shutdown=shutdown_box[0], _thread=thread)
