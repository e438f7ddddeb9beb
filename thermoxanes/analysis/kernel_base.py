"""Constants and inline helpers shared by the numba kernels of the per-pixel fit.

Output rows of the kernels' ``out`` array (``OUT_*``), offsets of the variance sums in
the accumulator rows (``V_*``, in the order of :data:`fit_plan.VAR_PAIRS`), the
floating-point licence of the accumulation loops, and the vectorizable ``exp``
approximation of the variance model.
"""

import numpy as np
from numba import njit

from thermoxanes.analysis.fit_plan import N_LIN

#: Floating-point licence of the accumulation kernels (no NaN tests there): reassociation
#: and contraction. The read-out kernels test for NaN and run with contraction only
#: (``FM_READOUT``: fused multiply-adds, which keep NaN and infinity semantics).
FM = {"contract", "reassoc", "nsz", "arcp"}
FM_READOUT = {"contract"}
N_OUT = 8
OUT_EDGE, OUT_EDGE_S, OUT_WL, OUT_WL_S, OUT_JUMP, OUT_JUMP_S, OUT_VAL, OUT_VAL_S = range(N_OUT)
# Offsets of the variance sums (order of fit_plan.VAR_PAIRS).
V_AA, V_BB, V_AB, V_JJ, V_JA, V_JB = (N_LIN + i for i in range(6))
V_A23, V_B23, V_AB23, V_A34, V_B34, V_AB34 = (N_LIN + 6 + i for i in range(6))


@njit(fastmath=FM, cache=True, error_model="numpy", inline="always")
def _fexp(d):
    """exp(d) as (1 + d/256)^256, d clipped to [-20, 20]: relative error ~ d^2/512.

    Good to 0.2 % for |d| < 1, enough for a variance model; vectorizes (no libm call).
    """
    lim = np.float32(20.0)  # float32 constants keep float32 input in float32 lanes
    if d > lim:
        d = lim
    elif d < -lim:
        d = -lim
    v = d * np.float32(1.0 / 256.0) + np.float32(1.0)
    for _ in range(8):
        v = v * v
    return v
