import numpy as np
import pytest

from thermoxanes.plans.energy_grid import whiteline_energy_grid, xanes_energy_grid


def test_default_grid_is_the_68_point_ni_grid():
    grid = xanes_energy_grid()
    assert grid.size == 68
    assert grid[0] == 8200.0 and grid[-1] == 8630.0
    assert np.all(np.diff(grid) > 0)
    fine = grid[(grid >= 8330) & (grid <= 8355)]
    np.testing.assert_allclose(np.diff(fine), 1.0)
    assert fine.size == 26
    coarse_after = grid[grid > 8355]
    np.testing.assert_allclose(np.diff(coarse_after), 10.0)


def test_custom_grid_and_errors():
    grid = xanes_energy_grid(8300, 8400, 8330, 8350, 10, 2)
    assert grid[0] == 8300 and grid[-1] == 8400
    assert len(np.unique(grid)) == grid.size
    with pytest.raises(ValueError, match="fine_start_ev"):
        xanes_energy_grid(8300, 8200)
    with pytest.raises(ValueError, match="positive"):
        xanes_energy_grid(coarse_step_ev=0)
    assert whiteline_energy_grid().size == 21
