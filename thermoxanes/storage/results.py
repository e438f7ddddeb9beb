"""Derived maps in the tiled catalog, next to the raw runs they come from.

Layout (beside the ``raw`` container of bluesky runs)::

    maps/                         container, spec XanesMapsCatalog 1.0
      <raw run uid>/              one container per fitted sweep, spec XanesMaps 1.0
        edge_energy ... valence_sigma   float32 (H, W) arrays (NaN outside the mask)
        mask                            bool (H, W)
        energies_ev                     float64 (E,), eV
        registration_shifts             float64 (E, 2), pixels (row, column)

The sweep container's metadata links it to the raw run and records its provenance:
``raw_run_uid``, ``series_uid``, ``sweep_index``, ``scan_id``, ``temperature_c``,
``setpoint_c``, ``energies_ev``, ``fit_config`` (:meth:`FitConfig.to_dict`),
``calibration`` (energy offset and the reference spectra with their SHA-256),
``software_version`` and ``software`` (versions of the libraries that made the maps),
``summary`` (the analysis service's entry for the sweep), ``written_at`` (Unix time, s).

A sweep fitted again (a replay into the same catalog) gets a new container keyed
``<raw run uid>-2``, ``-3``, ...; nothing stored is overwritten, and :func:`load_maps`
returns the latest unless asked for another.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import platform
import time
from functools import lru_cache
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from thermoxanes import __version__
from thermoxanes.analysis.maps import MAP_NAMES, XanesMaps
from thermoxanes.storage.catalog import CatalogHandle, open_catalog

log = logging.getLogger(__name__)

MAPS_CONTAINER = "maps"
MAPS_CATALOG_SPEC = ("XanesMapsCatalog", "1.0")
SWEEP_SPEC = ("XanesMaps", "1.0")

#: Units of the stored arrays.
ARRAY_UNITS: dict[str, str] = {
    "edge_energy": "eV", "edge_energy_sigma": "eV",
    "whiteline_energy": "eV", "whiteline_energy_sigma": "eV",
    "edge_jump": "absorbance (natural log)", "edge_jump_sigma": "absorbance (natural log)",
    "valence": "elementary charge", "valence_sigma": "elementary charge",
    "mask": "bool", "energies_ev": "eV", "registration_shifts": "pixels (row, column)",
}

_LIBRARIES = ("numpy", "numba", "scipy", "scikit-image", "h5py", "tiled", "bluesky",
              "bluesky-tiled-plugins")


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars/arrays as plain numbers/lists and non-finite floats
    as ``None`` (tiled metadata must be strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


@lru_cache(maxsize=1)
def software_versions() -> dict[str, str]:
    """Versions of thermoxanes, Python and the libraries the maps depend on."""
    versions = {"thermoxanes": __version__, "python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


@lru_cache(maxsize=1)
def reference_spectra() -> list[dict[str, str]]:
    """File name and SHA-256 of every reference spectrum shipped for the valence fit."""
    folder = Path(__file__).resolve().parents[1] / "analysis" / "data" / "ni_k_edge"
    files = []
    for path in sorted(folder.glob("*")):
        if path.suffix in (".txt", ".xdi") and not path.name.startswith("LICENSE"):
            files.append({"file": path.name,
                          "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    return files


def provenance(maps: XanesMaps) -> dict[str, Any]:
    """Provenance metadata of ``maps``: fit configuration, calibration, software."""
    config = json_safe(maps.config)
    return {
        "software_version": __version__,
        "software": software_versions(),
        "fit_config": config,
        "calibration": {
            "calibration_shift_ev": config.get("calibration_shift_ev"),
            "reference_spectra": reference_spectra(),
            "provenance": "thermoxanes/analysis/data/ni_k_edge/PROVENANCE.md",
        },
    }


class TiledResultsWriter:
    """Store each fitted sweep's maps in a tiled catalog, linked to its raw run.

    A result sink of the analysis service (``sink(entry, maps, start_doc)``), or called
    directly through :meth:`write`. It connects on first use, so it can be built before
    the catalog's server is up.

    Parameters
    ----------
    uri : str, optional
        A tiled server: a beamline's (``https://tiled.nsls2.bnl.gov/...``) or the demo's
        embedded one (``EmbeddedCatalog.uri``, which carries its API key). Wins over
        ``directory``.
    api_key : str, optional
        API key for ``uri``.
    directory : path, optional
        Folder of an embedded catalog; a server already running over it (the demo's) is
        used through its URI, otherwise one is started in this process.
    client : tiled client, optional
        Use this root client (e.g. ``EmbeddedCatalog.client``) instead of connecting.
    container : str
        Name of the maps container under the root (``maps``).

    Raises
    ------
    ValueError
        None of ``uri``, ``directory`` or ``client`` given.
    """

    def __init__(
        self,
        uri: str | None = None,
        api_key: str | None = None,
        directory: str | os.PathLike | None = None,
        *,
        client: Any = None,
        container: str = MAPS_CONTAINER,
    ) -> None:
        if not (uri or directory or client is not None):
            raise ValueError("TiledResultsWriter needs a uri, a directory or a client")
        self.uri = uri
        self.api_key = api_key
        self.directory = Path(directory) if directory is not None else None
        self.container_name = container
        self._client = client
        self._handle: CatalogHandle | None = None
        self.written: list[str] = []

    # -- connection -----------------------------------------------------------------------
    def _root(self) -> Any:
        if self._client is None:
            self._handle = open_catalog(self.directory, self.uri, self.api_key, create=True)
            self._client = self._handle.client
        return self._client

    def maps_container(self) -> Any:
        """The ``maps`` container, created if missing."""
        return maps_container(self._root(), self.container_name, create=True)

    def close(self) -> None:
        """Stop the embedded server this writer started, if any."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self._client = None

    # -- writing --------------------------------------------------------------------------
    def __call__(self, entry: dict[str, Any], maps: XanesMaps, start_doc: dict[str, Any]) -> str:
        """Result-sink entry point of the analysis service; returns the stored key."""
        return self.write(
            maps,
            raw_run_uid=str(entry.get("run_uid") or start_doc["uid"]),
            series_uid=entry.get("series_uid", start_doc.get("series_uid")),
            sweep_index=entry.get("sweep_index", start_doc.get("sweep_index")),
            temperature_c=entry.get("temperature_c"),
            metadata={
                "setpoint_c": entry.get("setpoint_c", start_doc.get("setpoint_c")),
                "time_s": entry.get("time_s"),
                "scan_id": start_doc.get("scan_id"),
                "sample": start_doc.get("sample"),
                "summary": {k: v for k, v in entry.items() if k != "maps_file"},
            },
        )

    def write(
        self,
        maps: XanesMaps,
        *,
        raw_run_uid: str,
        series_uid: str | None = None,
        sweep_index: int | None = None,
        temperature_c: float | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Store ``maps`` of the run ``raw_run_uid``; returns the key under ``maps/``.

        Parameters
        ----------
        maps : XanesMaps
            The fitted maps.
        raw_run_uid : str
            uid of the raw run (its start document) the maps were fitted from.
        series_uid : str, optional
            Heating series the sweep belongs to.
        sweep_index : int, optional
            Index of the sweep in its series.
        temperature_c : float, optional
            Mean sample temperature during the sweep (°C).
        metadata : dict, optional
            Further metadata (JSON-safe after :func:`json_safe`).
        """
        from tiled.structures.core import Spec

        container = self.maps_container()
        key = raw_run_uid
        n = 1
        while key in container:
            n += 1
            key = f"{raw_run_uid}-{n}"
        md: dict[str, Any] = {
            "raw_run_uid": raw_run_uid,
            "series_uid": series_uid,
            "sweep_index": None if sweep_index is None else int(sweep_index),
            "temperature_c": temperature_c,
            "energies_ev": maps.energies_ev,
            "shape": list(maps.shape),
            "fit_number": n,
            "written_at": time.time(),
            "units": ARRAY_UNITS,
            **provenance(maps),
        }
        for k, v in (metadata or {}).items():
            md.setdefault(k, v)
        node = container.create_container(
            key, metadata=json_safe(md), specs=[Spec(SWEEP_SPEC[0], version=SWEEP_SPEC[1])])
        for name in MAP_NAMES:
            node.write_array(np.ascontiguousarray(getattr(maps, name), dtype=np.float32),
                             key=name, metadata={"units": ARRAY_UNITS[name]})
        node.write_array(np.ascontiguousarray(maps.mask, dtype=bool), key="mask",
                         metadata={"units": "bool"})
        node.write_array(np.ascontiguousarray(maps.energies_ev, dtype=np.float64),
                         key="energies_ev", metadata={"units": "eV"})
        node.write_array(np.ascontiguousarray(maps.registration_shifts, dtype=np.float64),
                         key="registration_shifts", metadata={"units": ARRAY_UNITS[
                             "registration_shifts"]})
        self.written.append(key)
        log.info("maps of run %s stored as %s/%s", raw_run_uid[:8], self.container_name, key)
        return key


# -- reading ----------------------------------------------------------------------------
def _root_of(source: Any) -> Any:
    """Root tiled client of an ``EmbeddedCatalog``, a ``CatalogHandle`` or a client."""
    return getattr(source, "client", source)


def maps_container(source: Any, name: str = MAPS_CONTAINER, *, create: bool = False) -> Any:
    """The ``maps`` container of a catalog (``source``: root client, EmbeddedCatalog,
    CatalogHandle, or the maps container itself).

    Raises
    ------
    KeyError
        No maps container and ``create`` is false.
    """
    from tiled.structures.core import Spec

    root = _root_of(source)
    specs = [s.name for s in getattr(root, "specs", [])]
    if MAPS_CATALOG_SPEC[0] in specs:
        return root
    if name in root:
        return root[name]
    if not create:
        raise KeyError(f"no {name!r} container in the catalog: no maps stored yet")
    return root.create_container(
        name, specs=[Spec(MAPS_CATALOG_SPEC[0], version=MAPS_CATALOG_SPEC[1])])


def find_maps(source: Any, raw_run_uid: str) -> list[Any]:
    """Every stored fit of the raw run ``raw_run_uid``, oldest first (tiled nodes)."""
    from tiled.queries import Key

    try:
        container = maps_container(source)
    except KeyError:
        return []
    nodes = list(container.search(Key("raw_run_uid") == raw_run_uid).values())
    return sorted(nodes, key=lambda node: node.metadata.get("written_at") or 0.0)


def load_maps_with_metadata(
    source: Any, raw_run_uid: str, which: int = -1
) -> tuple[XanesMaps, dict[str, Any]]:
    """Maps of a raw run and the metadata stored with them.

    Parameters
    ----------
    source : tiled client, EmbeddedCatalog or CatalogHandle
        The catalog (root) or its ``maps`` container.
    raw_run_uid : str
        uid of the raw run.
    which : int
        Which fit when the run was fitted more than once (``-1``: latest, ``0``: first).

    Raises
    ------
    KeyError
        No maps stored for ``raw_run_uid``.
    """
    nodes = find_maps(source, raw_run_uid)
    if not nodes:
        raise KeyError(f"no maps stored for run {raw_run_uid}")
    try:
        node = nodes[which]
    except IndexError:
        raise KeyError(f"run {raw_run_uid} has {len(nodes)} stored fits, not {which}") from None
    md = dict(node.metadata)
    arrays = {name: node[name].read() for name in (*MAP_NAMES, "mask", "energies_ev",
                                                   "registration_shifts") if name in node}
    maps = XanesMaps(config=dict(md.get("fit_config") or {}), **arrays)
    return maps, md


def load_maps(source: Any, raw_run_uid: str, which: int = -1) -> XanesMaps:
    """The maps fitted from the raw run ``raw_run_uid`` (see :func:`load_maps_with_metadata`).

    Examples
    --------
    >>> from thermoxanes.storage.catalog import EmbeddedCatalog      # doctest: +SKIP
    >>> cat = EmbeddedCatalog("demo_output/run-...")
    >>> run = cat.runs[-1]
    >>> maps = load_maps(cat, run.metadata["start"]["uid"])
    >>> maps.valence.shape
    """
    return load_maps_with_metadata(source, raw_run_uid, which)[0]


__all__ = [
    "MAPS_CONTAINER", "TiledResultsWriter", "find_maps", "json_safe", "load_maps",
    "load_maps_with_metadata", "maps_container", "provenance", "software_versions",
]
