"""``thermoxanes export RUN_OR_SERIES --format fxi|tiff|maps-h5|maps-tiff -o DIR``."""

from __future__ import annotations

import argparse
import sys

from thermoxanes.storage.export import FORMATS


def add_catalog_options(parser: argparse.ArgumentParser) -> None:
    """``--catalog DIR`` or ``--catalog-uri URI`` (with ``--catalog-api-key``)."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--catalog", metavar="DIR",
                       help="folder of an embedded catalog (a demo's output folder)")
    where.add_argument("--catalog-uri", metavar="URI",
                       help="a tiled server, e.g. a beamline's or EmbeddedCatalog.uri")
    parser.add_argument("--catalog-api-key", metavar="KEY", default=None,
                        help="API key for --catalog-uri (or set TILED_API_KEY)")


def _run(args: argparse.Namespace) -> int:
    from thermoxanes.storage.catalog import open_catalog
    from thermoxanes.storage.export import export

    with open_catalog(args.catalog, args.catalog_uri, args.catalog_api_key) as handle:
        written = export(handle, args.run, args.format, args.output,
                         progress=lambda line: print(f"  {line}", flush=True))
    print(f"{args.output}: {len(written)} files or folders written ({args.format})")
    sys.stdout.flush()
    return 0


def add_subparser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``thermoxanes export``."""
    parser = subparsers.add_parser(
        "export", help="export stored sweeps: FXI/TXM-Sandbox HDF5, TIFF stacks, maps",
        description="Export a stored run or a whole heating series. fxi: /img_xanes, "
                    "/img_bkg, /img_dark, /X_eng (keV) per sweep, read by TXM-Sandbox and "
                    "`thermoxanes fit`; tiff: ImageJ/Avizo stacks with an energies CSV; "
                    "maps-h5 / maps-tiff: the maps stored in the catalog.")
    parser.add_argument("run", metavar="RUN_OR_SERIES",
                        help="run uid (or unique prefix), series uid, or scan id")
    parser.add_argument("--format", choices=FORMATS, default="fxi")
    add_catalog_options(parser)
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    parser.set_defaults(func=_run)
    return parser
