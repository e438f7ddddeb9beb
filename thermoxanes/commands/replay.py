"""``thermoxanes replay RUN_OR_SERIES --to ENDPOINT [--speed X]``: re-publish stored runs
through the wire protocol (``docs/protocol.md``), timed by their event times."""

from __future__ import annotations

import argparse
import math
import time

from thermoxanes.commands.export import add_catalog_options


def parse_speed(text: str) -> float:
    """``1`` real time, ``10`` ten times faster, ``max`` (or ``inf``) full speed."""
    if text.strip().lower() in ("max", "inf", "full"):
        return math.inf
    try:
        speed = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a speed: {text!r} (a number > 0 or 'max')"
                                         ) from None
    if not speed > 0:
        raise argparse.ArgumentTypeError(f"speed must be > 0, got {text!r}")
    return speed


def _header_keys(pairs: list[str]) -> dict[str, str] | None:
    out = {}
    for pair in pairs or []:
        field, sep, key = pair.partition("=")
        if not sep or field not in ("energy_ev", "temperature_c", "theta_deg") or not key:
            raise ValueError(f"--header-key {pair!r}: expected energy_ev|temperature_c|"
                             "theta_deg=DATA_KEY")
        out[field] = key
    return out or None


def _run(args: argparse.Namespace) -> int:
    import zmq

    from thermoxanes.storage.catalog import open_catalog
    from thermoxanes.storage.replay import Replayer
    from thermoxanes.storage.runs import read_run, resolve_runs

    header_keys = _header_keys(args.header_key)
    with open_catalog(args.catalog, args.catalog_uri, args.catalog_api_key) as handle:
        nodes = resolve_runs(handle.runs, args.run, handle.where)
        try:
            replayer = Replayer(args.to, speed=args.speed, header_keys=header_keys,
                                hwm=args.hwm, snapshot_endpoint=args.snapshot_endpoint)
        except zmq.ZMQError as exc:
            raise ValueError(f"{args.to}: cannot bind ({exc})") from None
        try:
            speed = "full speed" if math.isinf(args.speed) else f"speed x{args.speed:g}"
            print(f"replaying {len(nodes)} run(s) on {replayer.endpoint} at {speed}",
                  flush=True)
            time.sleep(args.wait_s)  # let subscribers connect (PUB drops before that)
            for node in nodes:
                done = replayer.replay_run(read_run(node))
                print(f"  sweep {done['sweep_index']} (run {done['run_uid'][:8]}): "
                      f"{done['events']} events, {done['frames']} frames in "
                      f"{done['duration_s']:.1f} s", flush=True)
            replayer.flush(timeout_s=120.0)
        finally:
            replayer.close()
    return 0


def add_subparser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``thermoxanes replay``."""
    parser = subparsers.add_parser(
        "replay", help="re-publish stored runs through the wire protocol",
        description="Re-publish a stored run or a heating series (documents and frames) "
                    "on a ZeroMQ endpoint, timed by the stored event times, so that "
                    "`thermoxanes analyze` fits it as if it were live.")
    parser.add_argument("run", metavar="RUN_OR_SERIES",
                        help="run uid (or unique prefix), series uid, or scan id")
    parser.add_argument("--to", required=True, metavar="ENDPOINT",
                        help="endpoint to bind and publish on, e.g. tcp://127.0.0.1:5577")
    parser.add_argument("--speed", type=parse_speed, default=math.inf,
                        help="1: real time, 10: ten times faster, max: full speed (default)")
    add_catalog_options(parser)
    parser.add_argument("--wait-s", type=float, default=1.0,
                        help="seconds between binding and the first message (default 1)")
    parser.add_argument("--snapshot-endpoint", default=None,
                        help="also serve late joiners here (docs/protocol.md section 7)")
    parser.add_argument("--hwm", type=int, default=1000, help="publisher high-water mark")
    parser.add_argument("--header-key", action="append", metavar="FIELD=KEY",
                        help="frame header field from this event data key, e.g. "
                             "theta_deg=rotation (repeatable)")
    parser.set_defaults(func=_run)
    return parser
