"""Spectra of the sample: Ni valence mixing, monochromator resolution, backgrounds.

The Ni part of the absorbance is a mixture of the real NiO / LiNiO2 reference spectra
(:mod:`thermoxanes.analysis.references`; Ni4+ is shifted LiNiO2) convolved with the
monochromator bandwidth (Si(111), ~1.2 eV FWHM at 8.3 keV) and shifted by the energy
calibration offset. Because the mixing weights are linear in the basis, a projection only
needs three Ni-weighted path lengths ``W_k`` (um) per pixel::

    OD(E) = jump_per_um * sum_k W_k b_k(E)            Ni K-edge (normalized basis b_k)
          + mu_nmc(E) * t_nmc + mu_li(E) * t_li + mu_cap(E) * t_cap   non-resonant

Non-resonant coefficients fall as ``(E / 8333 eV) ** -2.8`` (photo-absorption of the
other elements: Mn, Co, O, Li, Si).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numba
import numpy as np
from scipy.ndimage import gaussian_filter1d

from thermoxanes.analysis.references import BASIS_VALENCES, valence_basis

#: Reference energy of the non-resonant power laws (eV).
REFERENCE_ENERGY_EV = 8333.0
#: White-line and edge windows (eV) of the ground truth (the analysis defaults).
WHITELINE_WINDOW_EV = (8340.0, 8360.0)
EDGE_WINDOW_EV = (8330.0, 8350.0)
_FINE_STEP_EV = 0.05


@dataclass(frozen=True)
class OpticalConstants:
    """Linear attenuation of the sample's materials (1/um) at 8333 eV, and the edge jump."""

    #: Ni K-edge jump of dense NMC (1/um): normalized Ni absorbance per um of solid.
    ni_jump_per_um: float = 0.032
    #: Non-resonant attenuation of NMC below the Ni edge (1/um).
    nmc_background_per_um: float = 0.045
    #: Li compounds (Li2CO3, LiOH, Li2O): no Ni edge, weak absorption (1/um).
    li_compound_per_um: float = 0.006
    #: Quartz capillary wall (1/um).
    capillary_per_um: float = 0.011
    #: Power-law exponent of the non-resonant attenuation with energy.
    energy_exponent: float = -2.8
    #: Monochromator bandwidth (eV, FWHM).
    resolution_fwhm_ev: float = 1.2


def background_scale(energies_ev: np.ndarray, exponent: float = -2.8) -> np.ndarray:
    """Energy dependence of non-resonant attenuation, 1 at 8333 eV."""
    return (np.asarray(energies_ev, dtype=np.float64) / REFERENCE_ENERGY_EV) ** exponent


@lru_cache(maxsize=16)
def _fine_basis(shift_ev: float, fwhm_ev: float) -> tuple[np.ndarray, np.ndarray]:
    grid = np.arange(8100.0, 9000.0, _FINE_STEP_EV)
    basis = valence_basis(grid, shift_ev)
    if fwhm_ev > 0:
        sigma = fwhm_ev / 2.3548 / _FINE_STEP_EV
        basis = gaussian_filter1d(basis, sigma, axis=1, mode="nearest")
    grid.setflags(write=False)
    basis.setflags(write=False)
    return grid, basis


def basis_spectra(
    energies_ev: np.ndarray | float, shift_ev: float = 0.0, fwhm_ev: float = 1.2
) -> np.ndarray:
    """Ni2+/3+/4+ basis spectra as the instrument records them.

    Parameters
    ----------
    energies_ev : array_like, shape (E,) or scalar
        Energies (eV).
    shift_ev : float
        Energy-calibration offset (eV): the recorded spectra sit this much higher.
    fwhm_ev : float
        Monochromator bandwidth (eV, FWHM); 0 for the bare references.

    Returns
    -------
    numpy.ndarray, shape (3, E)
        Normalized (edge jump 1) spectra, rows Ni2+, Ni3+, Ni4+.
    """
    grid, basis = _fine_basis(round(float(shift_ev), 6), round(float(fwhm_ev), 6))
    e = np.atleast_1d(np.asarray(energies_ev, dtype=np.float64))
    return np.stack([np.interp(e, grid, b) for b in basis])


def _crossing_and_peak(
    spectra: np.ndarray, grid: np.ndarray, edge_window: tuple, wl_window: tuple
) -> tuple[np.ndarray, np.ndarray]:
    """Half-height crossing and white-line peak (eV) of normalized spectra (..., G)."""
    in_edge = (grid >= edge_window[0]) & (grid <= edge_window[1])
    ge = grid[in_edge]
    se = spectra[..., in_edge]
    above = se >= 0.5
    first = np.argmax(above, axis=-1)
    first = np.clip(first, 1, len(ge) - 1)
    s1 = np.take_along_axis(se, first[..., None], -1)[..., 0]
    s0 = np.take_along_axis(se, first[..., None] - 1, -1)[..., 0]
    frac = np.clip((0.5 - s0) / np.where(s1 != s0, s1 - s0, 1.0), 0.0, 1.0)
    edge = ge[first - 1] + frac * (ge[first] - ge[first - 1])
    in_wl = (grid >= wl_window[0]) & (grid <= wl_window[1])
    gw = grid[in_wl]
    sw = spectra[..., in_wl]
    k = np.clip(np.argmax(sw, axis=-1), 1, len(gw) - 2)
    ym = np.take_along_axis(sw, k[..., None] - 1, -1)[..., 0]
    y0 = np.take_along_axis(sw, k[..., None], -1)[..., 0]
    yp = np.take_along_axis(sw, k[..., None] + 1, -1)[..., 0]
    denom = ym - 2 * y0 + yp
    off = np.where(denom < 0, 0.5 * (ym - yp) / np.where(denom < 0, denom, -1.0), 0.0)
    peak = gw[k] + np.clip(off, -1, 1) * (gw[1] - gw[0])
    return edge, peak


class FeatureTable:
    """Edge and white-line energies of every Ni2+/3+/4+ mixture, for the ground truth.

    A projected pixel's normalized spectrum is ``sum_k f_k b_k(E)`` with fractions
    ``f = W / sum(W)``; the table holds the half-step crossing and the white-line peak of
    that noise-free spectrum on a 2D grid of ``(f_2+, f_4+)`` and interpolates bilinearly.

    Parameters
    ----------
    shift_ev, fwhm_ev : float
        As in :func:`basis_spectra`.
    n : int
        Grid points per fraction axis.
    """

    def __init__(
        self,
        shift_ev: float = 0.0,
        fwhm_ev: float = 1.2,
        n: int = 81,
        edge_window_ev: tuple[float, float] = EDGE_WINDOW_EV,
        whiteline_window_ev: tuple[float, float] = WHITELINE_WINDOW_EV,
    ) -> None:
        grid = np.arange(8320.0, 8370.0, _FINE_STEP_EV)
        basis = basis_spectra(grid, shift_ev, fwhm_ev)
        f = np.linspace(0.0, 1.0, n)
        f2, f4 = np.meshgrid(f, f, indexing="ij")
        f3 = 1.0 - f2 - f4
        spectra = f2[..., None] * basis[0] + f3[..., None] * basis[1] + f4[..., None] * basis[2]
        edge, peak = _crossing_and_peak(spectra, grid, edge_window_ev, whiteline_window_ev)
        self.n = n
        self.edge_ev = edge.astype(np.float64)
        self.whiteline_ev = peak.astype(np.float64)

    def lookup(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Edge and white-line energies (eV) for Ni-weighted path lengths ``weights`` (3, ...).

        NaN where the total weight is not positive. Returns float64 arrays.
        """
        w = np.ascontiguousarray(weights, dtype=np.float32)
        flat = w.reshape(3, -1)
        edge = np.empty(flat.shape[1], dtype=np.float64)
        wl = np.empty(flat.shape[1], dtype=np.float64)
        _lookup_kernel(flat, self.edge_ev, self.whiteline_ev, edge, wl)
        return edge.reshape(w.shape[1:]), wl.reshape(w.shape[1:])


@numba.njit(cache=True, nogil=True)
def _lookup_kernel(w, table_edge, table_wl, out_edge, out_wl):
    n = table_edge.shape[0]
    for p in range(w.shape[1]):
        total = w[0, p] + w[1, p] + w[2, p]
        if not total > 0.0:
            out_edge[p] = np.nan
            out_wl[p] = np.nan
            continue
        x = min(max(w[0, p] / total, 0.0), 1.0) * (n - 1)
        y = min(max(w[2, p] / total, 0.0), 1.0) * (n - 1)
        i = min(int(x), n - 2)
        j = min(int(y), n - 2)
        fx = x - i
        fy = y - j
        a = (1 - fx) * (1 - fy)
        b = fx * (1 - fy)
        c = (1 - fx) * fy
        d = fx * fy
        out_edge[p] = (table_edge[i, j] * a + table_edge[i + 1, j] * b
                       + table_edge[i, j + 1] * c + table_edge[i + 1, j + 1] * d)
        out_wl[p] = (table_wl[i, j] * a + table_wl[i + 1, j] * b
                     + table_wl[i, j + 1] * c + table_wl[i + 1, j + 1] * d)


def valence_of_weights(weights: np.ndarray) -> np.ndarray:
    """Ni-weighted mean valence from the three path lengths ``weights`` (3, ...); NaN if 0."""
    w = np.asarray(weights, dtype=np.float64)
    total = w.sum(axis=0)
    v = np.tensordot(np.asarray(BASIS_VALENCES), w, axes=(0, 0))
    return np.where(total > 0, v / np.where(total > 0, total, 1.0), np.nan)
