"""Bad input to fit_stack and the config: one-line ValueErrors naming the problem."""

from __future__ import annotations

import numpy as np
import pytest

from thermoxanes.analysis.config import FitConfig
from thermoxanes.analysis.fit import fit_stack


@pytest.fixture
def stack(energies_ev):
    return np.zeros((energies_ev.size, 4, 4), dtype=np.float32)


def _one_line(exc_info):
    assert "\n" not in str(exc_info.value)


def test_wrong_shape(stack, energies_ev):
    with pytest.raises(ValueError, match=r"expected shape \(E, H, W\)") as ei:
        fit_stack(stack[0], energies_ev)
    _one_line(ei)
    with pytest.raises(ValueError, match="frames but"):
        fit_stack(stack[1:], energies_ev)


def test_wrong_dtype(stack, energies_ev):
    with pytest.raises(ValueError, match="dtype"):
        fit_stack(stack.astype(complex), energies_ev)
    with pytest.raises(ValueError, match="numpy array"):
        fit_stack(stack.tolist(), energies_ev)


def test_energies_not_increasing_or_duplicate(stack, energies_ev):
    e = energies_ev.copy()
    e[[3, 4]] = e[[4, 3]]
    with pytest.raises(ValueError, match="not increasing") as ei:
        fit_stack(stack, e)
    _one_line(ei)
    e = energies_ev.copy()
    e[4] = e[3]
    with pytest.raises(ValueError, match="duplicate energies"):
        fit_stack(stack, e)
    with pytest.raises(ValueError, match="NaN"):
        fit_stack(stack, np.where(np.arange(e.size) == 2, np.nan, energies_ev))


def test_grid_not_covering_edge(energies_ev):
    e = energies_ev[energies_ev < 8335]
    with pytest.raises(ValueError, match="does not cover|white-line window|post-edge") as ei:
        fit_stack(np.zeros((e.size, 2, 2), dtype=np.float32), e)
    _one_line(ei)
    e = np.r_[energies_ev[energies_ev < 8330], energies_ev[energies_ev > 8360]]
    with pytest.raises(ValueError, match="edge window"):
        fit_stack(np.zeros((e.size, 2, 2), dtype=np.float32), e)


def test_variance_shape(stack, energies_ev):
    with pytest.raises(ValueError, match="variance"):
        fit_stack(stack, energies_ev, variance=np.zeros((2, 4, 4), dtype=np.float32))


def test_config_validation():
    with pytest.raises(ValueError, match="whiteline_method"):
        FitConfig(whiteline_method="cubic")
    with pytest.raises(ValueError, match="pre_edge_ev"):
        FitConfig(pre_edge_ev=(8200.0, 8340.0))
    with pytest.raises(ValueError, match="low"):
        FitConfig(edge_window_ev=(8350.0, 8330.0))
    cfg = FitConfig(whiteline_method="gaussian", calibration_shift_ev=0.7)
    assert FitConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        FitConfig.from_dict({"bogus": 1})
