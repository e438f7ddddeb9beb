"""The embedded tiled catalog: SQLite plus files under one folder, served in process.

Layout under ``directory``::

    catalog/   tiled's own storage (catalog.db SQLite, data/ for what tiled writes itself)
    raw/       HDF5 files written by the cameras, referenced by the run documents

Raw runs live in the container ``raw`` (spec ``CatalogOfBlueskyRuns`` 3.0), so they can
be looked up by uid, by scan id or by position (``runs[-1]``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

RUNS_CONTAINER = "raw"
RUNS_SPEC = ("CatalogOfBlueskyRuns", "3.0")


class EmbeddedCatalog:
    """Start (or re-open) a tiled server on loopback over an on-disk catalog.

    Parameters
    ----------
    directory : path
        Folder that holds ``catalog/`` and ``raw/``; created if missing, re-used if not.
    api_key : str, optional
        API key of the server (random by default; part of :attr:`uri`).

    Examples
    --------
    >>> cat = EmbeddedCatalog("demo_output")          # doctest: +SKIP
    >>> run = cat.runs[-1]                             # the latest run
    >>> run["primary"]["camera_image"].read().shape    # (68, 512, 512)
    """

    def __init__(self, directory: str | os.PathLike, api_key: str | None = None):
        from tiled.server import SimpleTiledServer

        self.directory = Path(directory).resolve()
        self.raw_dir = self.directory / "raw"
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        self._server = SimpleTiledServer(
            self.directory / "catalog", api_key=api_key, readable_storage=[self.raw_dir]
        )
        self.uri: str = self._server.uri
        self.client = connect(self.uri)
        self.runs = runs_container(self.client)

    def writer(self, batch_size: int = 1) -> Any:
        """A ``TiledWriter`` RunEngine callback writing into :attr:`runs`."""
        from bluesky_tiled_plugins import TiledWriter

        return TiledWriter(self.runs, batch_size=batch_size)

    def close(self) -> None:
        """Stop the server (the catalog stays on disk)."""
        self._server.close()

    def __enter__(self) -> EmbeddedCatalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(uri: str, api_key: str | None = None) -> Any:
    """A tiled client for ``uri`` (an existing server, e.g. a beamline's)."""
    from tiled.client import from_uri

    return from_uri(uri, api_key=api_key) if api_key else from_uri(uri)


def runs_container(client: Any) -> Any:
    """The ``raw`` container of bluesky runs under ``client``, created if missing."""
    from tiled.structures.core import Spec

    if RUNS_CONTAINER in client:
        return client[RUNS_CONTAINER]
    return client.create_container(
        RUNS_CONTAINER, specs=[Spec(RUNS_SPEC[0], version=RUNS_SPEC[1])]
    )


def how_to_open(directory: str | os.PathLike) -> str:
    """Python lines a user can paste to open the catalog under ``directory``."""
    directory = Path(directory).resolve()
    return (
        "from thermoxanes.storage.catalog import EmbeddedCatalog\n"
        f"cat = EmbeddedCatalog({str(directory)!r})   # serves it on 127.0.0.1 (tiled)\n"
        "run = cat.runs[-1]                            # or cat.runs[uid]\n"
        "frames = run['primary']['camera_image'].read()  # (energies, H, W) uint16\n"
        "print(run.metadata['start']['sweep_index'], frames.shape)"
    )
