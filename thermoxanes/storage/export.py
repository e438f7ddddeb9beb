"""Export stored sweeps for other programs: FXI / TXM-Sandbox HDF5, TIFF stacks (ImageJ,
Avizo), and the fitted maps as HDF5 or TIFF.

Formats (one set of files per sweep, named ``sweep_NNN_<uid8>``; plus ``series.csv``
listing the sweeps exported, with run uid and temperature):

``fxi``
    ``sweep_NNN_<uid8>.h5`` in the NSLS-II FXI / TXM-Sandbox 2D XANES layout:
    ``/img_xanes`` (E, H, W) raw sample counts, ``/img_bkg`` (E, H, W) flats (uint16
    when one flat per energy, their float32 mean otherwise), ``/img_dark`` (N, H, W),
    ``/X_eng`` (E,) keV, all sorted by increasing energy; beside them ``/energies_ev``
    (E,) eV (exact), ``/temperature_c`` (E,) °C and ``/time_s`` (E,) Unix s of each
    sample frame, ``/scan_id``, ``/note``, and root attributes ``raw_run_uid``,
    ``series_uid``, ``sweep_index``, ``temperature_c`` (mean), ``software_version``,
    ``start_doc`` (JSON). ``thermoxanes fit`` reads it back.
``tiff``
    ``sweep_NNN_<uid8>_xanes.tif``, ``_flat.tif``, ``_dark.tif``: ImageJ stacks (one
    page per energy, labelled with energy and temperature) that Avizo also opens, and
    ``sweep_NNN_<uid8>_energies.csv`` (frame, energy_ev, temperature_c, time_s).
``maps-h5``
    ``sweep_NNN_<uid8>_maps.h5``: the maps stored in the catalog for the run
    (:meth:`XanesMaps.to_hdf5` layout: float32 maps, ``mask``, ``energies_ev``,
    ``registration_shifts``), with the provenance as root attributes.
``maps-tiff``
    ``sweep_NNN_<uid8>_maps/<map>.tif`` (float32, ``mask.tif`` uint8) and
    ``sweep_NNN_<uid8>_maps/metadata.json`` (energies, temperature, uids, provenance).

Files are written into a temporary folder beside the output folder and moved in only
when every sweep was exported: a failure leaves nothing behind, and existing files are
never overwritten.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from thermoxanes import __version__
from thermoxanes.analysis.maps import MAP_NAMES, XanesMaps
from thermoxanes.storage.catalog import CatalogHandle
from thermoxanes.storage.results import json_safe, load_maps_with_metadata
from thermoxanes.storage.runs import StoredRun, StoredStream, read_run, resolve_runs

FORMATS = ("fxi", "tiff", "maps-h5", "maps-tiff")


def _key_ending(stream: StoredStream, suffix: str) -> str | None:
    return next((k for k in stream.data if k.endswith(suffix)), None)


@dataclass
class SweepStack:
    """The raw frames of one sweep, sorted by increasing energy.

    Attributes
    ----------
    sample : numpy.ndarray
        (E, H, W) raw sample counts (ADU), dtype as stored (uint16).
    flat : numpy.ndarray
        (E, H, W) flats: the stored frames with one flat per energy, else their float32
        mean per energy; (1, H, W) mean when the flats carry no energy.
    dark : numpy.ndarray
        (N, H, W) darks.
    energies_ev : numpy.ndarray
        (E,) float64 energies (eV).
    temperature_c, time_s : numpy.ndarray
        (E,) sample temperature (°C, NaN if not recorded) and event time (Unix s) of
        each sample frame.
    """

    sample: np.ndarray
    flat: np.ndarray
    dark: np.ndarray
    energies_ev: np.ndarray
    temperature_c: np.ndarray
    time_s: np.ndarray


def sweep_stack(run: StoredRun) -> SweepStack:
    """Read a stored sweep's frames (see :class:`SweepStack`).

    Raises
    ------
    ValueError
        The run is not a XANES sweep (no ``primary`` stream with frames and an energy
        column), a flat is missing for an energy, or a frame file is unreadable.
    """
    primary = run.streams.get("primary")
    if primary is None or not primary.external_keys or not len(primary):
        raise ValueError(f"run {run.uid}: not a XANES sweep (no primary stream with frames)")
    key = primary.external_keys[0]
    e_key = _key_ending(primary, "energy_ev")
    if e_key is None:
        raise ValueError(f"run {run.uid}: primary stream has no *energy_ev column")
    energies = np.asarray(primary.data[e_key], dtype=np.float64)
    order = np.argsort(energies, kind="stable")
    energies = energies[order]
    if np.any(np.diff(energies) <= 0):
        raise ValueError(f"run {run.uid}: repeated energies in the primary stream")
    sample = primary.read_external(key)[order]
    t_key = _key_ending(primary, "temperature_c")
    temperature = (np.asarray(primary.data[t_key], dtype=np.float64)[order] if t_key
                   else np.full(energies.size, np.nan))
    time_s = np.asarray(primary.time_s, dtype=np.float64)[order]
    shape = sample.shape[1:]

    dark_stream = run.streams.get("dark")
    if dark_stream is not None and len(dark_stream) and key in dark_stream.external_keys:
        dark = dark_stream.read_external(key)
    else:
        dark = np.zeros((1, *shape), dtype=sample.dtype)

    flat_stream = run.streams.get("flat")
    if flat_stream is None or not len(flat_stream) or key not in flat_stream.external_keys:
        raise ValueError(f"run {run.uid}: no flat frames")
    flats = flat_stream.read_external(key)
    fe_key = _key_ending(flat_stream, "energy_ev")
    if fe_key is None:
        flat = flats.astype(np.float32).mean(axis=0, keepdims=True)
    else:
        flat_e = np.asarray(flat_stream.data[fe_key], dtype=np.float64)
        tol = 0.25 * float(np.diff(energies).min()) if energies.size > 1 else 0.5
        groups: list[list[int]] = [[] for _ in energies]
        for j, e in enumerate(flat_e):
            i = int(np.argmin(np.abs(energies - e)))
            if abs(energies[i] - e) <= tol:
                groups[i].append(j)
        missing = [f"{energies[i]:g}" for i, g in enumerate(groups) if not g]
        if missing:
            raise ValueError(f"run {run.uid}: no flat at {', '.join(missing)} eV")
        if all(len(g) == 1 for g in groups):
            flat = flats[[g[0] for g in groups]]
        else:
            flat = np.stack([flats[g].astype(np.float64).mean(axis=0) for g in groups]
                            ).astype(np.float32)
    return SweepStack(sample=sample, flat=flat, dark=dark, energies_ev=energies,
                      temperature_c=temperature, time_s=time_s)


def _mean_temperature(stack: SweepStack) -> float | None:
    finite = stack.temperature_c[np.isfinite(stack.temperature_c)]
    return float(finite.mean()) if finite.size else None


# -- writers ------------------------------------------------------------------------------
def write_fxi(run: StoredRun, stack: SweepStack, path: Path) -> None:
    """Write one sweep in the FXI / TXM-Sandbox layout (see the module docstring)."""
    with h5py.File(path, "w") as fh:
        fh.create_dataset("img_xanes", data=stack.sample)
        fh.create_dataset("img_bkg", data=stack.flat)
        fh.create_dataset("img_dark", data=stack.dark)
        fh.create_dataset("X_eng", data=stack.energies_ev / 1000.0)
        fh["X_eng"].attrs["units"] = "keV"
        fh.create_dataset("energies_ev", data=stack.energies_ev)
        fh["energies_ev"].attrs["units"] = "eV"
        fh.create_dataset("temperature_c", data=stack.temperature_c)
        fh["temperature_c"].attrs["units"] = "degC"
        fh.create_dataset("time_s", data=stack.time_s)
        fh["time_s"].attrs["units"] = "s (Unix time)"
        fh.create_dataset("scan_id", data=int(run.start.get("scan_id", -1) or -1))
        fh.create_dataset("note", data=str(run.start.get("sample", "")))
        fh.attrs["raw_run_uid"] = run.uid
        fh.attrs["series_uid"] = run.series_uid or ""
        fh.attrs["sweep_index"] = run.sweep_index
        temp = _mean_temperature(stack)
        fh.attrs["temperature_c"] = np.nan if temp is None else temp
        fh.attrs["software_version"] = __version__
        fh.attrs["start_doc"] = json.dumps(json_safe(run.start))


def _labels(stack: SweepStack) -> list[str]:
    return [f"{e:.2f} eV, {t:.1f} C" for e, t in zip(stack.energies_ev, stack.temperature_c,
                                                      strict=True)]


def write_tiff(run: StoredRun, stack: SweepStack, folder: Path) -> list[Path]:
    """Write one sweep as ImageJ TIFF stacks plus an energies CSV."""
    import tifffile

    stem = folder / run.label
    info = json.dumps(json_safe({"raw_run_uid": run.uid, "series_uid": run.series_uid,
                                 "sweep_index": run.sweep_index,
                                 "energies_ev": stack.energies_ev}))
    paths = []
    for suffix, data, labels in (
        ("xanes", stack.sample, _labels(stack)),
        ("flat", stack.flat, _labels(stack) if len(stack.flat) == len(stack.sample) else None),
        ("dark", stack.dark, None),
    ):
        path = Path(f"{stem}_{suffix}.tif")
        md: dict[str, Any] = {"axes": "ZYX", "Info": info}
        if labels:
            md["Labels"] = labels
        arr = np.ascontiguousarray(data)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        tifffile.imwrite(path, arr, imagej=True, metadata=md)
        paths.append(path)
    csv_path = Path(f"{stem}_energies.csv")
    with open(csv_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["frame", "energy_ev", "temperature_c", "time_s"])
        for i, (e, t, s) in enumerate(zip(stack.energies_ev, stack.temperature_c,
                                          stack.time_s, strict=True)):
            writer.writerow([i, repr(float(e)), repr(float(t)), repr(float(s))])
    paths.append(csv_path)
    return paths


def _maps_attrs(md: dict[str, Any]) -> dict[str, Any]:
    keep = ("raw_run_uid", "series_uid", "sweep_index", "temperature_c", "setpoint_c",
            "software_version", "software", "fit_config", "calibration", "written_at",
            "fit_number")
    out = {k: md[k] for k in keep if k in md and md[k] is not None}
    if out.get("temperature_c") is None:
        out["temperature_c"] = np.nan
    return out


def write_maps_h5(run: StoredRun, maps: XanesMaps, md: dict[str, Any], folder: Path) -> Path:
    """Write the stored maps of one sweep as HDF5 (``XanesMaps.to_hdf5`` layout)."""
    path = folder / f"{run.label}_maps.h5"
    maps.to_hdf5(path, attrs=_maps_attrs(md))
    return path


def write_maps_tiff(run: StoredRun, maps: XanesMaps, md: dict[str, Any], folder: Path) -> Path:
    """Write the stored maps of one sweep as one float32 TIFF per map plus metadata."""
    import tifffile

    sub = folder / f"{run.label}_maps"
    sub.mkdir()
    for name in MAP_NAMES:
        unit = (md.get("units") or {}).get(name, "")
        tifffile.imwrite(sub / f"{name}.tif", getattr(maps, name).astype(np.float32),
                         imagej=True, metadata={"Info": f"{name} ({unit})"})
    tifffile.imwrite(sub / "mask.tif", maps.mask.astype(np.uint8), imagej=True)
    meta = {**_maps_attrs(md), "energies_ev": maps.energies_ev,
            "registration_shifts": maps.registration_shifts, "units": md.get("units")}
    (sub / "metadata.json").write_text(json.dumps(json_safe(meta), indent=2))
    return sub


# -- the command's core ---------------------------------------------------------------------
def export(
    handle: CatalogHandle,
    spec: str,
    fmt: str,
    out_dir: str | os.PathLike,
    *,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Export the run or series ``spec`` from a catalog into ``out_dir``.

    Parameters
    ----------
    handle : CatalogHandle
        The catalog (:func:`thermoxanes.storage.catalog.open_catalog`).
    spec : str
        Run uid (or unique prefix), series uid, or scan id.
    fmt : {"fxi", "tiff", "maps-h5", "maps-tiff"}
        Output format (see the module docstring).
    out_dir : path
        Output folder; created if missing; existing files are never overwritten.
    progress : callable, optional
        Called with one line per sweep exported.

    Returns
    -------
    list of Path
        Files and folders written (top level of ``out_dir``).

    Raises
    ------
    ValueError
        Unknown format or run, a run without stored maps (``maps-*``), an unreadable
        frame file, or an output name that already exists.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    nodes = resolve_runs(handle.runs, spec, handle.where)
    parent = out.parent if out.parent.exists() else Path(tempfile.gettempdir())
    tmp = Path(tempfile.mkdtemp(prefix=".thermoxanes-export-", dir=parent))
    rows = []
    try:
        for node in nodes:
            run = read_run(node)
            row: dict[str, Any] = {"sweep_index": run.sweep_index, "run_uid": run.uid,
                                   "series_uid": run.series_uid or ""}
            if fmt in ("fxi", "tiff"):
                stack = sweep_stack(run)
                row["temperature_c"] = _mean_temperature(stack)
                if fmt == "fxi":
                    path = tmp / f"{run.label}.h5"
                    write_fxi(run, stack, path)
                    row["file"] = path.name
                else:
                    row["file"] = write_tiff(run, stack, tmp)[0].name
            else:
                try:
                    maps, md = load_maps_with_metadata(handle.client, run.uid)
                except KeyError:
                    raise ValueError(
                        f"{handle.where}: no maps stored for run {run.uid} (store them with "
                        "thermoxanes analyze --catalog-dir/--catalog-uri)") from None
                row["temperature_c"] = md.get("temperature_c")
                writer = write_maps_h5 if fmt == "maps-h5" else write_maps_tiff
                row["file"] = writer(run, maps, md, tmp).name
            rows.append(row)
            if progress:
                temp = row.get("temperature_c")
                progress(f"sweep {run.sweep_index} (run {run.uid[:8]}"
                         + (f", {temp:.1f} C" if isinstance(temp, float) else "")
                         + f"): {row['file']}")
        with open(tmp / "series.csv", "w", newline="") as fh:
            writer_csv = csv.DictWriter(fh, fieldnames=["sweep_index", "run_uid", "series_uid",
                                                        "temperature_c", "file"])
            writer_csv.writeheader()
            writer_csv.writerows(rows)
        names = sorted(p.name for p in tmp.iterdir())
        clashes = [n for n in names if n != "series.csv" and (out / n).exists()]
        if clashes:
            raise ValueError(f"{out / clashes[0]}: exists; choose another output folder")
        out.mkdir(parents=True, exist_ok=True)
        if (out / "series.csv").exists():  # an earlier export there: keep its index
            n = 2
            while (out / f"series-{n}.csv").exists():
                n += 1
            (tmp / "series.csv").replace(tmp / f"series-{n}.csv")
            names = sorted(p.name for p in tmp.iterdir())
        written = []
        for name in names:
            shutil.move(str(tmp / name), str(out / name))
            written.append(out / name)
        return written
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["FORMATS", "SweepStack", "export", "sweep_stack", "write_fxi", "write_maps_h5",
           "write_maps_tiff", "write_tiff"]
