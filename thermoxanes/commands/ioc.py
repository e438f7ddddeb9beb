"""``thermoxanes ioc --profile sim-epics``: serve a profile's PVs from simulated IOCs."""

from __future__ import annotations

import argparse
import logging


def _cmd_ioc(args: argparse.Namespace) -> int:
    from thermoxanes.profiles.beamline import build_sim_ioc
    from thermoxanes.profiles.schema import load_profile

    if args.size is not None and not 16 <= args.size <= 2048:
        raise ValueError(f"--size must be between 16 and 2048, got {args.size}")
    profile = load_profile(args.profile)
    ioc = build_sim_ioc(profile, size=args.size, seed=args.seed, preset=args.preset,
                        speed=args.speed)
    logging.basicConfig(level=logging.WARNING)
    print(f"thermoxanes ioc: profile {profile.name!r}: {len(ioc.pvdb)} PVs (plus motor-record "
          f"fields) on {args.interface}, simulated clock at {ioc.config.speed:g}x wall time",
          flush=True)
    ioc.run(interfaces=[args.interface])
    return 0


def add_subparser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``thermoxanes ioc``."""
    parser = subparsers.add_parser(
        "ioc", help="run the simulated EPICS IOCs (caproto) of a sim-epics profile",
        description="Serve the PVs of a profile with an [ioc] section from one caproto "
                    "process over a simulated world. Channel Access ports come from "
                    "EPICS_CA_SERVER_PORT / EPICS_CA_REPEATER_PORT.")
    parser.add_argument("--profile", default="sim-epics", help="profile name or TOML path")
    parser.add_argument("--size", type=int, default=None, help="frame side (pixels)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--preset", default=None, help="simulator preset")
    parser.add_argument("--speed", type=float, default=None,
                        help="simulated seconds per wall second (default: profile's)")
    parser.add_argument("--interface", default="127.0.0.1", help="interface to serve on")
    parser.set_defaults(func=_cmd_ioc)
    return parser
