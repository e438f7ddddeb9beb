"""Reading the FXI / TXM-Sandbox 2D XANES HDF5 layout, and fitting such a file.

Input layout: ``/img_xanes`` (E, H, W) raw counts, ``/img_bkg`` flats (E, H, W) or
(1, H, W), ``/img_dark`` (N, H, W), ``/X_eng`` (E,) energies in keV (values above 1000
are taken as eV). Output: see :meth:`thermoxanes.analysis.maps.XanesMaps.to_hdf5`.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike

import h5py
import numpy as np

from thermoxanes.analysis.config import FitConfig
from thermoxanes.analysis.correction import correct_counts
from thermoxanes.analysis.fit import fit_stack
from thermoxanes.analysis.maps import XanesMaps

REQUIRED = ("img_xanes", "img_bkg", "img_dark", "X_eng")


@dataclass
class FxiStack:
    """Raw arrays of one FXI 2D XANES file.

    Attributes
    ----------
    img_xanes : numpy.ndarray
        (E, H, W) raw sample counts (ADU).
    img_bkg : numpy.ndarray
        (E, H, W) or (1, H, W) flat-field counts (ADU).
    img_dark : numpy.ndarray
        (N, H, W) dark counts (ADU).
    energies_ev : numpy.ndarray
        (E,) float64 energies (eV).
    """

    img_xanes: np.ndarray
    img_bkg: np.ndarray
    img_dark: np.ndarray
    energies_ev: np.ndarray


def read_fxi(path: str | PathLike) -> FxiStack:
    """Read and check an FXI / TXM-Sandbox 2D XANES file.

    Raises
    ------
    ValueError
        ``"<file>: <problem>"`` for a missing dataset, wrong dimensions or mismatched
        shapes, a non-real dtype, or a file that is not HDF5.
    """
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from None
    with fh:
        missing = [name for name in REQUIRED if name not in fh]
        if missing:
            raise ValueError(f"{path}: missing datasets {', '.join('/' + m for m in missing)}")
        arrays = {name: fh[name][()] for name in REQUIRED}
    for name, arr in arrays.items():
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise ValueError(f"{path}: /{name} has non-real dtype {arr.dtype}")
    xanes, bkg, dark, eng = (arrays[n] for n in REQUIRED)
    if xanes.ndim != 3:
        raise ValueError(f"{path}: /img_xanes must be (E, H, W), got shape {xanes.shape}")
    n_e, n_h, n_w = xanes.shape
    if eng.ndim != 1 or eng.size != n_e:
        raise ValueError(f"{path}: /X_eng has shape {eng.shape}, expected ({n_e},)")
    if bkg.ndim != 3 or bkg.shape[1:] != (n_h, n_w) or bkg.shape[0] not in (1, n_e):
        raise ValueError(
            f"{path}: /img_bkg has shape {bkg.shape}, expected ({n_e}, {n_h}, {n_w}) or "
            f"(1, {n_h}, {n_w})"
        )
    if dark.ndim == 2:
        dark = dark[None]
    if dark.ndim != 3 or dark.shape[1:] != (n_h, n_w) or dark.shape[0] < 1:
        raise ValueError(f"{path}: /img_dark has shape {dark.shape}, expected (N, {n_h}, {n_w})")
    eng = eng.astype(np.float64)
    energies_ev = eng if np.nanmin(eng) > 1000.0 else eng * 1000.0
    return FxiStack(img_xanes=xanes, img_bkg=bkg, img_dark=dark, energies_ev=energies_ev)


def fit_fxi_file(
    input_path: str | PathLike,
    output_path: str | PathLike,
    config: FitConfig | None = None,
) -> XanesMaps:
    """Fit an FXI 2D XANES file and write the maps (``thermoxanes fit IN -o OUT``).

    The darks are averaged; each flat is one (averaged) frame; the Poisson variance of
    the raw counts (``config.gain_adu_per_photon``) is propagated to every map.

    Returns
    -------
    XanesMaps
        The maps written to ``output_path``.

    Raises
    ------
    ValueError
        ``"<file>: <problem>"`` for bad input (see :func:`read_fxi`), non-increasing or
        duplicate energies, or a grid that does not cover the edge.
    """
    cfg = config or FitConfig()
    raw = read_fxi(input_path)
    dark = raw.img_dark.astype(np.float64).mean(axis=0)
    try:
        mu, var, _ = correct_counts(
            raw.img_xanes, raw.img_bkg, dark, gain_adu_per_photon=cfg.gain_adu_per_photon
        )
        maps = fit_stack(mu, raw.energies_ev, cfg, variance=var)
    except ValueError as exc:
        raise ValueError(f"{input_path}: {exc}") from None
    maps.to_hdf5(output_path, attrs={"source": str(input_path)})
    return maps
