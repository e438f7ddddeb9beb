"""The ``thermoxanes`` command.

Subcommands: ``demo`` (simulated heating experiment end to end), ``analyze`` (the
analysis service), ``fit`` (maps from an FXI/TXM-Sandbox HDF5 file), ``simulate``
(write a simulated sweep in that layout), and those in :mod:`thermoxanes.commands`.
Bad input: one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _cmd_demo(args: argparse.Namespace) -> int:
    from thermoxanes.demo import DemoOptions, default_out, ensure_empty, run_demo

    if not 16 <= args.size <= 2048:
        raise ValueError(f"--size must be between 16 and 2048, got {args.size}")
    out = Path(args.out) if args.out else default_out()
    ensure_empty(out)
    summary = run_demo(DemoOptions(
        out=out, size=args.size, preset=args.preset, seed=args.seed, hold_s=args.hold_min * 60,
        sweeps_per_hold=args.sweeps_per_hold, rate_c_per_min=args.rate_c_per_min,
        monitor=args.monitor, monitor_port=args.monitor_port,
    ))
    fitted = [s for s in summary["sweeps"] if s.get("complete")]
    return 0 if len(fitted) == len(summary["sweeps"]) and fitted else 1


def _cmd_analyze(args: argparse.Namespace) -> int:
    from thermoxanes.analysis.config import FitConfig
    from thermoxanes.streaming.analysis_service import AnalysisService

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sinks = []
    if args.catalog_uri or args.catalog_dir:
        from thermoxanes.storage.results import TiledResultsWriter

        sinks.append(TiledResultsWriter(uri=args.catalog_uri, api_key=args.catalog_api_key,
                                        directory=args.catalog_dir))
    service = AnalysisService(
        args.endpoint, args.out, maps_endpoint=args.maps_endpoint, config=FitConfig(),
        truth_dir=args.truth_dir, snapshot_endpoint=args.snapshot_endpoint,
        maps_snapshot_endpoint=args.maps_snapshot_endpoint,
        figures=not args.no_figures, result_sinks=sinks,
    )
    service.run(max_sweeps=args.max_sweeps, idle_timeout_s=args.idle_timeout_s,
                ready_file=args.ready_file)
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from thermoxanes.analysis.fxi_io import fit_fxi_file

    maps = fit_fxi_file(args.input, args.output)
    n = int(maps.mask.sum())
    print(f"{args.output}: {maps.shape[0]}x{maps.shape[1]} maps, {n} pixels in the mask")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from thermoxanes.simulators.export import simulate_to_fxi

    simulate_to_fxi(args.preset, args.output, size=args.size, seed=args.seed,
                    temperature_c=args.temperature_c)
    print(f"{args.output}: simulated sweep of preset {args.preset!r} with its truth")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``thermoxanes`` command."""
    parser = argparse.ArgumentParser(
        prog="thermoxanes",
        description="Live acquisition and streaming analysis for in situ heating TXM XANES.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run a simulated in situ heating experiment end to end")
    demo.add_argument("--size", type=int, default=512, help="frame side in pixels (16-2048)")
    demo.add_argument("--out", help="output folder (default demo_output/run-<time>)")
    demo.add_argument("--preset", default=None, help="simulator preset (default: profile's)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--hold-min", type=float, default=20.0, help="hold length (minutes)")
    demo.add_argument("--sweeps-per-hold", type=int, default=1)
    demo.add_argument("--rate-c-per-min", type=float, default=5.0, help="ramp rate (C/min)")
    demo.add_argument("--monitor", action="store_true",
                      help="serve the live monitor page while the demo runs")
    demo.add_argument("--monitor-port", type=int, default=8765, help="port of the monitor")
    demo.set_defaults(func=_cmd_demo)

    analyze = sub.add_parser("analyze", help="the analysis service: fit sweeps as they stream")
    analyze.add_argument("--endpoint", default="tcp://127.0.0.1:5577",
                         help="publisher endpoint to subscribe to")
    analyze.add_argument("--snapshot-endpoint", default=None,
                         help="publisher snapshot endpoint (join a sweep in progress)")
    analyze.add_argument("--out", default="analysis_output", help="output folder")
    analyze.add_argument("--maps-endpoint", default=None,
                         help="bind here and publish a map update per sweep")
    analyze.add_argument("--maps-snapshot-endpoint", default=None,
                         help="bind a snapshot endpoint for the map updates (late joiners "
                              "such as a monitor get every earlier sweep's histograms)")
    analyze.add_argument("--truth-dir", default=None, help="ground-truth maps (simulations)")
    analyze.add_argument("--max-sweeps", type=int, default=None, help="exit after N sweeps")
    analyze.add_argument("--idle-timeout-s", type=float, default=None,
                         help="exit after this long without messages")
    analyze.add_argument("--ready-file", default=None,
                         help="created once the subscription receives messages")
    analyze.add_argument("--no-figures", action="store_true", help="skip PNG figures")
    analyze.add_argument("--catalog-uri", default=None,
                         help="store maps in this tiled server (e.g. a beamline's)")
    analyze.add_argument("--catalog-api-key", default=None, help="API key for --catalog-uri")
    analyze.add_argument("--catalog-dir", default=None,
                         help="store maps in the embedded catalog under this folder")
    analyze.set_defaults(func=_cmd_analyze)

    fit = sub.add_parser("fit", help="fit an FXI/TXM-Sandbox HDF5 XANES stack to maps")
    fit.add_argument("input", help="HDF5 with /img_xanes, /img_bkg, /img_dark, /X_eng")
    fit.add_argument("-o", "--output", required=True, help="maps HDF5 to write")
    fit.set_defaults(func=_cmd_fit)

    simulate = sub.add_parser("simulate", help="write a simulated sweep (FXI layout + truth)")
    simulate.add_argument("--preset", default="nmc622-gravel")
    simulate.add_argument("-o", "--output", required=True)
    simulate.add_argument("--size", type=int, default=256)
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--temperature-c", type=float, default=25.0)
    simulate.set_defaults(func=_cmd_simulate)

    from thermoxanes.commands import command_modules

    for module in command_modules():
        module.add_subparser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"thermoxanes {args.command}: error: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"thermoxanes {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
