"""Energy calibration against the Ni metal foil.

The stored foil spectrum (APS 13-ID-C, ``Ni_foil``) is the standard: its edge is, by
definition, :data:`~thermoxanes.analysis.references.NI_FOIL_EDGE_EV` (8333.0 eV). A foil
measured on the beamline's energy axis is matched to it by a shift; that shift is the
beamline's calibration offset, to be set as ``FitConfig.calibration_shift_ev``.
"""

from __future__ import annotations

import numpy as np

from thermoxanes.analysis.references import NI_FOIL_EDGE_EV, load_reference
from thermoxanes.analysis.validation import check_energies

#: Energy range (eV) over which the foil spectra are matched.
MATCH_WINDOW_EV = (8310.0, 8380.0)


def _ssr(energies_ev: np.ndarray, mu: np.ndarray, shift_ev: float) -> float:
    e_ref, mu_ref = load_reference("Ni_foil")
    ref = np.interp(energies_ev - shift_ev, e_ref, mu_ref)
    design = np.stack([np.ones_like(energies_ev), energies_ev - energies_ev.mean(), ref], axis=1)
    coef, *_ = np.linalg.lstsq(design, mu, rcond=None)
    r = mu - design @ coef
    return float(r @ r)


def calibrate_from_foil(
    energies_ev: np.ndarray,
    mu_foil: np.ndarray,
    *,
    max_shift_ev: float = 15.0,
) -> float:
    """Energy offset (eV) of a measured Ni foil spectrum against the standard.

    The measured absorbance is fitted, for each trial shift ``s``, as
    ``a + b * E + c * mu_standard(E - s)`` over :data:`MATCH_WINDOW_EV` (so offsets,
    slopes and scale of the measurement do not matter); the shift with the smallest
    residual is refined on a 0.005 eV grid.

    Parameters
    ----------
    energies_ev : numpy.ndarray
        (E,) energies (eV) of the beamline's axis, strictly increasing.
    mu_foil : numpy.ndarray
        (E,) foil absorbance on those energies.
    max_shift_ev : float
        Largest offset searched (eV).

    Returns
    -------
    float
        ``shift_ev``: the foil edge appears at ``NI_FOIL_EDGE_EV + shift_ev`` on the
        beamline's axis. Use it as ``FitConfig(calibration_shift_ev=shift_ev)``.

    Raises
    ------
    ValueError
        On mismatched lengths, too few points near the edge, or non-finite values.
    """
    e = check_energies(energies_ev)
    mu = np.asarray(mu_foil, dtype=np.float64)
    if mu.shape != e.shape:
        raise ValueError(f"mu_foil: shape {mu.shape} does not match energies {e.shape}")
    sel = (e >= MATCH_WINDOW_EV[0]) & (e <= MATCH_WINDOW_EV[1]) & np.isfinite(mu)
    if sel.sum() < 8:
        raise ValueError(
            f"energy grid has {int(sel.sum())} finite points in {MATCH_WINDOW_EV[0]:.0f}-"
            f"{MATCH_WINDOW_EV[1]:.0f} eV, the foil calibration needs at least 8"
        )
    e, mu = e[sel], mu[sel]
    coarse = np.arange(-max_shift_ev, max_shift_ev + 1e-9, 0.1)
    best = coarse[int(np.argmin([_ssr(e, mu, s) for s in coarse]))]
    fine = np.arange(best - 0.1, best + 0.1 + 1e-9, 0.005)
    return float(fine[int(np.argmin([_ssr(e, mu, s) for s in fine]))])


def foil_edge_ev(shift_ev: float) -> float:
    """Foil edge energy (eV) on the beamline's axis for a calibration ``shift_ev``."""
    return NI_FOIL_EDGE_EV + shift_ev
