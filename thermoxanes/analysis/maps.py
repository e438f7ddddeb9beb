"""The per-pixel result of a XANES fit, and its HDF5 form (the FXI/TXM-Sandbox contract)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import h5py
import numpy as np

#: Float32 (H, W) maps, in the order they are written.
MAP_NAMES = (
    "edge_energy",
    "edge_energy_sigma",
    "whiteline_energy",
    "whiteline_energy_sigma",
    "edge_jump",
    "edge_jump_sigma",
    "valence",
    "valence_sigma",
)


@dataclass
class XanesMaps:
    """Maps of one XANES sweep.

    Energies are in eV, the edge jump in absorbance units (natural log), the valence in
    units of elementary charge. Every ``*_sigma`` map is the 1-sigma uncertainty from
    the counting statistics. All maps except ``edge_jump`` and ``edge_jump_sigma`` are
    NaN outside ``mask``.

    Attributes
    ----------
    edge_energy, edge_energy_sigma, whiteline_energy, whiteline_energy_sigma, edge_jump,
    edge_jump_sigma, valence, valence_sigma : numpy.ndarray
        float32, shape (H, W).
    mask : numpy.ndarray
        bool, shape (H, W): edge jump above ``jump_k_sigma`` times the pre-edge noise.
    energies_ev : numpy.ndarray
        float64, shape (E,): the energies fitted (eV, increasing).
    registration_shifts : numpy.ndarray
        float64, shape (E, 2): (row, column) shift in pixels applied to each energy's
        frame; zeros when registration is off.
    config : dict
        :meth:`FitConfig.to_dict` of the settings used.
    """

    edge_energy: np.ndarray
    edge_energy_sigma: np.ndarray
    whiteline_energy: np.ndarray
    whiteline_energy_sigma: np.ndarray
    edge_jump: np.ndarray
    valence: np.ndarray
    valence_sigma: np.ndarray
    mask: np.ndarray
    energies_ev: np.ndarray
    registration_shifts: np.ndarray
    config: dict[str, Any] = field(default_factory=dict)
    edge_jump_sigma: np.ndarray | None = None

    def __post_init__(self) -> None:
        shape = np.shape(self.edge_energy)
        for name in MAP_NAMES:
            value = getattr(self, name)
            if value is None and name == "edge_jump_sigma":
                value = np.full(shape, np.nan, dtype=np.float32)
            value = np.asarray(value, dtype=np.float32)
            if value.shape != shape or value.ndim != 2:
                raise ValueError(f"XanesMaps.{name}: shape {value.shape}, expected {shape}")
            setattr(self, name, value)
        self.mask = np.asarray(self.mask, dtype=bool)
        if self.mask.shape != shape:
            raise ValueError(f"XanesMaps.mask: shape {self.mask.shape}, expected {shape}")
        self.energies_ev = np.asarray(self.energies_ev, dtype=np.float64)
        self.registration_shifts = np.asarray(self.registration_shifts, dtype=np.float64)
        if self.registration_shifts.shape != (self.energies_ev.size, 2):
            raise ValueError(
                f"XanesMaps.registration_shifts: shape {self.registration_shifts.shape}, "
                f"expected ({self.energies_ev.size}, 2)"
            )

    @property
    def shape(self) -> tuple[int, int]:
        """Frame shape (H, W)."""
        return self.edge_energy.shape

    def to_hdf5(self, path: str | PathLike, attrs: dict[str, Any] | None = None) -> None:
        """Write the maps to ``path`` (HDF5), replacing the file.

        Datasets at the root: the float32 maps of :data:`MAP_NAMES`, ``mask`` (bool),
        ``energies_ev`` (float64, eV) and ``registration_shifts`` (float64, pixels).
        Root attributes: ``config`` (JSON) and the entries of ``attrs`` (JSON-encoded
        when not a number or a string).
        """
        with h5py.File(path, "w") as fh:
            for name in MAP_NAMES:
                fh.create_dataset(name, data=getattr(self, name), dtype=np.float32)
            fh.create_dataset("mask", data=self.mask, dtype=bool)
            fh.create_dataset("energies_ev", data=self.energies_ev)
            fh.create_dataset("registration_shifts", data=self.registration_shifts)
            fh.attrs["config"] = json.dumps(self.config)
            for key, value in (attrs or {}).items():
                if isinstance(value, (str, int, float, np.integer, np.floating)):
                    fh.attrs[key] = value
                else:
                    fh.attrs[key] = json.dumps(value)

    @classmethod
    def from_hdf5(cls, path: str | PathLike) -> XanesMaps:
        """Read maps written by :meth:`to_hdf5`."""
        with h5py.File(path, "r") as fh:
            missing = [
                n for n in (*MAP_NAMES, "mask", "energies_ev", "registration_shifts")
                if n not in fh and n != "edge_jump_sigma"
            ]
            if missing:
                raise ValueError(f"{path}: missing datasets {', '.join(missing)}")
            kwargs: dict[str, Any] = {n: fh[n][()] for n in MAP_NAMES if n in fh}
            kwargs["mask"] = fh["mask"][()]
            kwargs["energies_ev"] = fh["energies_ev"][()]
            kwargs["registration_shifts"] = fh["registration_shifts"][()]
            raw = fh.attrs.get("config", "{}")
            kwargs["config"] = json.loads(raw if isinstance(raw, str) else raw.decode())
        return cls(**kwargs)
