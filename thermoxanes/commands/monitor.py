"""``thermoxanes monitor``: serve the live monitor page (docs/monitor.md)."""

from __future__ import annotations

import argparse
import logging
import sys
import time


def _cmd_monitor(args: argparse.Namespace) -> int:
    from thermoxanes.monitor import MonitorConfig, start_monitor

    if args.duration_s is not None and args.duration_s <= 0:
        raise ValueError(f"--duration-s must be positive, got {args.duration_s}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # the page's health panel counts socket re-creations; no log line every 10 s of silence
    logging.getLogger("thermoxanes.streaming.subscriber").setLevel(logging.WARNING)
    config = MonitorConfig(pixel_size_um=args.pixel_size_um,
                           max_display_px=args.max_display_px)
    handle = start_monitor(args.maps_endpoint, args.data_endpoint, host=args.host,
                           port=args.port, config=config, allow_remote=args.allow_remote,
                           maps_snapshot_endpoint=args.maps_snapshot_endpoint)
    print(f"thermoxanes monitor: serving {handle.url} (Ctrl-C to stop)", flush=True)
    if args.url_file:
        with open(args.url_file, "w", encoding="utf-8") as fh:
            fh.write(handle.url + "\n")
    deadline = None if args.duration_s is None else time.monotonic() + args.duration_s
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("thermoxanes monitor: stopped", file=sys.stderr)
    finally:
        handle.close()
    return 0


def add_subparser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``thermoxanes monitor``.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The ``thermoxanes`` command's subparsers.

    Returns
    -------
    argparse.ArgumentParser
        The new subcommand's parser.
    """
    parser = subparsers.add_parser(
        "monitor", help="serve a live browser page of maps, histograms, temperature, health")
    parser.add_argument("--maps-endpoint", action="append", default=None,
                        help="analysis service map updates (thermoxanes analyze "
                             "--maps-endpoint); repeatable")
    parser.add_argument("--maps-snapshot-endpoint", default=None,
                        help="analysis service map snapshot endpoint (thermoxanes analyze "
                             "--maps-snapshot-endpoint): show the sweeps before joining")
    parser.add_argument("--data-endpoint", action="append", default=None,
                        help="acquisition publisher (documents, stats); repeatable")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on")
    parser.add_argument("--port", type=int, default=8765, help="HTTP port (0: any free one)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="permit a non-loopback --host (the page has no login)")
    parser.add_argument("--pixel-size-um", type=float, default=None,
                        help="pixel size for the scale bar (default: pixels)")
    parser.add_argument("--max-display-px", type=int, default=512,
                        help="maps larger than this per side are binned for the browser")
    parser.add_argument("--duration-s", type=float, default=None,
                        help="stop after this many seconds (default: until Ctrl-C)")
    parser.add_argument("--url-file", default=None, help="write the page's URL here")
    parser.set_defaults(func=_cmd_monitor)
    return parser
