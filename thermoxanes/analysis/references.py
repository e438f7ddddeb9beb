"""Real Ni K-edge reference spectra shipped with the package, and valence mixing.

The spectra are in ``thermoxanes/analysis/data/ni_k_edge`` with their licenses and
provenance (PROVENANCE.md): NiO (Ni2+) and LiNiO2 (Ni3+), normalized, energies in keV on
disk; a Ni metal foil in transmission (the energy-calibration standard, edge 8333.0 eV).

Ni4+ has no measured standard here: it is modelled as the LiNiO2 spectrum shifted up by
:data:`NI4_SHIFT_EV`, the ~1.5-2 eV per unit of valence seen between NiO and LiNiO2.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import numpy as np

#: Tabulated Ni K-edge energy of the metal foil (eV), used for energy calibration.
NI_FOIL_EDGE_EV = 8333.0
#: Edge shift (eV) applied to LiNiO2 to stand for Ni4+.
NI4_SHIFT_EV = 1.8
#: Valences of the three basis spectra returned by :func:`valence_basis`.
BASIS_VALENCES = (2.0, 3.0, 4.0)

_FILES = {
    "NiO": "NiO_normalized.txt",
    "LiNiO2": "LiNiO2_normalized.txt",
    "Ni_foil": "Ni_foil_transmission.xdi",
}


@cache
def _load(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name not in _FILES:
        raise ValueError(f"unknown reference {name!r}; known: {', '.join(_FILES)}")
    path = resources.files("thermoxanes.analysis") / "data" / "ni_k_edge" / _FILES[name]
    with path.open("r") as fh:
        table = np.loadtxt(fh, comments="#")
    energy = table[:, 0].astype(np.float64)
    if name != "Ni_foil":
        energy = energy * 1000.0  # keV on disk
    mu = table[:, 1].astype(np.float64)
    energy.setflags(write=False)
    mu.setflags(write=False)
    return energy, mu


def load_reference(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(energy_ev, mu)`` of a stored reference spectrum.

    Parameters
    ----------
    name : {"NiO", "LiNiO2", "Ni_foil"}
        Which spectrum. NiO and LiNiO2 are normalized (pre-edge 0, post-edge ~1);
        ``Ni_foil`` is raw transmission absorbance (arbitrary offset).

    Returns
    -------
    energy_ev, mu : numpy.ndarray
        Read-only float64 arrays; energy in eV, increasing.
    """
    return _load(name)


def reference_on_grid(name: str, energies_ev: np.ndarray, shift_ev: float = 0.0) -> np.ndarray:
    """Interpolate reference ``name`` onto ``energies_ev`` (eV), shifted by ``shift_ev`` (eV).

    Outside the tabulated range the end values are held constant.
    """
    energy, mu = _load(name)
    return np.interp(np.asarray(energies_ev, dtype=np.float64) - shift_ev, energy, mu)


def valence_basis(energies_ev: np.ndarray, shift_ev: float = 0.0) -> np.ndarray:
    """Normalized basis spectra for Ni2+, Ni3+ and Ni4+ on ``energies_ev``.

    Parameters
    ----------
    energies_ev : array_like, shape (E,)
        Energies (eV).
    shift_ev : float
        Energy-calibration offset (eV) added to every basis spectrum.

    Returns
    -------
    numpy.ndarray, shape (3, E)
        Rows in the order of :data:`BASIS_VALENCES`.
    """
    return np.stack(
        [
            reference_on_grid("NiO", energies_ev, shift_ev),
            reference_on_grid("LiNiO2", energies_ev, shift_ev),
            reference_on_grid("LiNiO2", energies_ev, shift_ev + NI4_SHIFT_EV),
        ]
    )


def valence_weights(valence: np.ndarray | float) -> np.ndarray:
    """Mixing weights of the three basis spectra for a Ni valence (clipped to 2..4).

    Piecewise linear: 2..3 mixes NiO and LiNiO2, 3..4 mixes LiNiO2 and the shifted
    LiNiO2. The weights sum to one and their valence-weighted mean is the valence.

    Returns
    -------
    numpy.ndarray, shape (..., 3)
    """
    v = np.clip(np.asarray(valence, dtype=np.float64), 2.0, 4.0)
    w = np.zeros(v.shape + (3,), dtype=np.float64)
    low = v <= 3.0
    w[..., 0] = np.where(low, 3.0 - v, 0.0)
    w[..., 1] = np.where(low, v - 2.0, 4.0 - v)
    w[..., 2] = np.where(low, 0.0, v - 3.0)
    return w


def spectrum_for_valence(
    energies_ev: np.ndarray, valence: np.ndarray | float, shift_ev: float = 0.0
) -> np.ndarray:
    """Normalized Ni K-edge spectrum for a valence (or an array of valences).

    Returns
    -------
    numpy.ndarray, shape (..., E)
        ``valence_weights(valence) @ valence_basis(energies_ev, shift_ev)``.
    """
    return valence_weights(valence) @ valence_basis(energies_ev, shift_ev)
