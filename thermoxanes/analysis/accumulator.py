"""Live accumulation of one XANES sweep, frame by frame, in any energy order.

Each sample frame is dark/flat corrected, registered and added to per-pixel weighted sums
as soon as its flat is there. Each read-out is computed as soon as every frame it
depends on is in (white line: pre-edge and white-line windows; valence: pre-edge and
linear-combination windows; edge energy: pre-edge, edge and post-edge windows), and
again only if one of those frames changes; :meth:`SweepAccumulator.finish` then only
computes what is left (in an ascending sweep: the edge jump, mask and edge energy).
Repeated frames at one energy are averaged (and reported); a flat or dark arriving
after its frames were used replaces their contribution (the sums are linear: the old
contribution is computed again from the inputs before they change, and subtracted).
Corrected frames are not kept: only the raw sums, the weighted sums and the block of
frames that the edge and white-line read-outs need (at 2048x2048, 2.2 GB less a sweep).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from thermoxanes.analysis.config import FitConfig
from thermoxanes.analysis.correction import correct_counts
from thermoxanes.analysis.fit import maps_from_out
from thermoxanes.analysis.fit_kernels import (
    _accumulate_frame_kernel,
    _lines_edge_kernel,
    _mask_in_place_kernel,
    _valence_kernel,
    _whiteline_kernel,
)
from thermoxanes.analysis.fit_plan import N_ACC, ROW_REF, make_plan
from thermoxanes.analysis.kernel_base import (
    N_OUT,
    OUT_EDGE,
    OUT_EDGE_S,
    OUT_JUMP,
    OUT_JUMP_S,
    OUT_VAL,
    OUT_VAL_S,
    OUT_WL,
    OUT_WL_S,
)
from thermoxanes.analysis.maps import XanesMaps
from thermoxanes.analysis.registration import RunningRegistration, _shift_bilinear
from thermoxanes.analysis.validation import check_frame_shape


class _Sum:
    """Running sum of frames and their count (float32: exact for integer counts up to
    2**24, i.e. 256 frames of 16-bit counts)."""

    __slots__ = ("total", "n", "_mean")

    def __init__(self) -> None:
        self.total: np.ndarray | None = None  # allocated by the first frame
        self.n = 0
        self._mean: np.ndarray | None = None

    def add(self, frame: np.ndarray) -> None:
        if self.total is None:
            # One pass (a copy in float32), not zeros plus an add: the first frame of
            # each energy is on the path from the last frame to the maps.
            self.total = np.array(frame, dtype=np.float32)
        else:
            self.total += frame
        self.n += 1
        self._mean = None

    def mean(self) -> np.ndarray:
        """Mean frame (cached until the next ``add``)."""
        if self._mean is None:
            self._mean = self.total if self.n == 1 else self.total / np.float32(self.n)
        return self._mean


class SweepAccumulator:
    """Accumulate one XANES sweep frame by frame and fit it when the last frame is in.

    Parameters
    ----------
    energies_ev : array_like
        (E,) the sweep's energy grid (eV), distinct values, any order.
    frame_shape : tuple of int
        (H, W) of every frame.
    config : FitConfig, optional
        Fit settings; ``gain_adu_per_photon`` sets the Poisson variance of the counts.
    energy_tolerance_ev : float, optional
        A frame matches a grid energy within this distance (eV); default a quarter of
        the smallest grid step.
    saturation_adu : float, optional
        Saturation level of the raw counts (ADU); default the integer dtype's maximum.

    Raises
    ------
    ValueError
        On duplicate energies, a grid that does not cover the fit windows, or a bad
        frame shape.
    """

    def __init__(
        self,
        energies_ev: np.ndarray,
        frame_shape: tuple[int, int],
        config: FitConfig | None = None,
        *,
        energy_tolerance_ev: float | None = None,
        saturation_adu: float | None = None,
    ) -> None:
        self.config = config or FitConfig()
        e = np.asarray(energies_ev, dtype=np.float64)
        if e.ndim != 1:
            raise ValueError(f"energies_ev: expected a 1-D array, got shape {e.shape}")
        order = np.argsort(e, kind="stable")
        self.plan = make_plan(e[order], self.config)
        self.energies_ev = self.plan.energies_ev
        shape = tuple(int(n) for n in frame_shape)
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"frame_shape: expected (H, W), got {frame_shape}")
        self.frame_shape = shape
        steps = np.diff(self.energies_ev)
        self.energy_tolerance_ev = (
            float(energy_tolerance_ev) if energy_tolerance_ev is not None
            else 0.25 * float(steps.min())
        )
        self.saturation_adu = saturation_adu
        n_e = self.energies_ev.size
        # float32 sums: half the memory traffic per frame and at the finish; the pre-edge
        # scatter is the only difference of large sums (it sets the mask, not a sigma).
        self._lin = np.ascontiguousarray(self.plan.lin_coef.T, dtype=np.float32)
        self._var = np.ascontiguousarray(self.plan.var_coef.T, dtype=np.float32)
        self._acc = np.zeros((shape[0], N_ACC, shape[1]), dtype=np.float32)
        n_blk = self.plan.blk_hi - self.plan.blk_lo
        # Frames of the edge / white-line block, (H, n_blk, W): contiguous per row.
        self._blk_mu = np.full((shape[0], n_blk, shape[1]), np.nan, dtype=np.float32)
        self._blk_var = np.full((shape[0], n_blk, shape[1]), np.nan, dtype=np.float32)
        self._dark: _Sum | None = None
        self._flat_all: _Sum | None = None
        self._flats: dict[int, _Sum] = {}
        self._samples: dict[int, _Sum] = {}
        self._used: set[int] = set()  # energies whose contribution is in the sums
        self._saturation_used: dict[int, float] = {}  # the level each one was made with
        self._shifts = np.zeros((n_e, 2))
        self._registration = (
            RunningRegistration(shape, self.config.upsample) if self.config.register else None
        )
        self._registered: set[int] = set()
        self._ref_set = False
        self._zero = np.zeros(shape, dtype=np.float32)
        self._dtype_saturation = np.inf
        plan = self.plan
        blk = np.arange(plan.blk_lo, plan.blk_hi)
        pre, post = set(plan.pre_index.tolist()), set(plan.post_index.tolist())
        self._deps = {
            "edge": pre | post | set(blk[plan.edge_lo:plan.edge_hi + 1].tolist()),
            "wl": pre | set(blk[plan.wl_lo:plan.wl_hi + 1].tolist()),
            "val": pre | set(plan.lcf_index.tolist()),
        }
        self._dirty = {"edge", "wl", "val"}
        self._out: np.ndarray | None = None  # allocated when a read-out is computed
        self._sv = np.ones(shape)
        self._mask = np.zeros(shape, dtype=bool)
        self._all = np.ones(shape, dtype=bool)
        self._e_blk = plan.energies_ev[plan.blk_lo:plan.blk_hi].copy()
        self._t_blk = plan.t[plan.blk_lo:plan.blk_hi].copy()
        self._n_frames = 0
        self._n_flats = 0
        self._n_darks = 0
        self._duplicates: list[float] = []
        self._unexpected: list[float] = []

    # ------------------------------------------------------------------ input
    def _index(self, energy_ev: float) -> int | None:
        i = int(np.argmin(np.abs(self.energies_ev - energy_ev)))
        if abs(self.energies_ev[i] - energy_ev) > self.energy_tolerance_ev:
            return None
        return i

    def add_dark(self, frame: np.ndarray) -> None:
        """Add a dark frame (raw counts, ADU); darks are averaged."""
        frame = np.asarray(frame)
        check_frame_shape(frame, self.frame_shape, name="dark")
        self._note_dtype(frame)
        used = sorted(self._used)
        for i in used:
            self._withdraw(i)
        if self._dark is None:
            self._dark = _Sum()
        self._dark.add(frame)
        self._n_darks += 1
        for i in used:
            self._refresh(i)

    def add_flat(self, frame: np.ndarray, energy_ev: float | None = None) -> None:
        """Add a flat frame (raw counts, ADU) for one energy (eV), or for all (None)."""
        frame = np.asarray(frame)
        check_frame_shape(frame, self.frame_shape, name="flat")
        self._note_dtype(frame)
        self._n_flats += 1
        if energy_ev is None:
            targets = [i for i in self._samples if i not in self._flats]
            for i in targets:
                self._withdraw(i)
            if self._flat_all is None:
                self._flat_all = _Sum()
            self._flat_all.add(frame)
        else:
            i = self._index(float(energy_ev))
            if i is None:
                self._unexpected.append(float(energy_ev))
                return
            targets = [i] if i in self._samples else []
            # Also a first flat of its own, which replaces the common flat here.
            self._withdraw(i)
            self._flats.setdefault(i, _Sum()).add(frame)
        for i in targets:
            self._refresh(i)

    def add_frame(self, frame: np.ndarray, energy_ev: float) -> None:
        """Add a sample frame (raw counts, ADU) at ``energy_ev`` (eV).

        Frames at an energy already seen are averaged with it and reported as duplicates;
        frames at energies not on the grid are ignored and reported.
        """
        frame = np.asarray(frame)
        check_frame_shape(frame, self.frame_shape, name="frame")
        self._note_dtype(frame)
        self._n_frames += 1
        i = self._index(float(energy_ev))
        if i is None:
            self._unexpected.append(float(energy_ev))
            return
        if i in self._samples:
            self._duplicates.append(float(self.energies_ev[i]))
        self._withdraw(i)
        self._samples.setdefault(i, _Sum()).add(frame)
        self._refresh(i)

    # ------------------------------------------------------------- processing
    def _flat_for(self, i: int) -> _Sum | None:
        return self._flats.get(i, self._flat_all)

    def _contribution(self, i: int, saturation_adu: float
                      ) -> tuple[np.ndarray, np.ndarray] | None:
        """Corrected (and registered) absorbance and variance of energy ``i`` from its
        current inputs and ``saturation_adu``; None without a flat. Deterministic (the
        shift is found once): computed again from the same inputs, it gives the same
        values, so that a contribution can be taken back out of the sums without
        keeping it."""
        flat = self._flat_for(i)
        if flat is None:
            return None
        sample = self._samples[i]
        dark = self._dark.mean() if self._dark is not None else self._zero
        mu, var, bad = correct_counts(
            sample.mean(), flat.mean(), dark,
            gain_adu_per_photon=self.config.gain_adu_per_photon,
            n_flat=flat.n, n_sample=sample.n,
            saturation_adu=saturation_adu,
        )
        if self._registration is not None:
            if i not in self._registered:
                self._shifts[i] = self._registration.shift_for(mu)
                self._registered.add(i)
            if np.any(self._shifts[i]):
                mu_s = np.empty_like(mu)
                var_s = np.empty_like(var)
                _shift_bilinear(mu, self._shifts[i, 0], self._shifts[i, 1], False, mu_s)
                _shift_bilinear(var, self._shifts[i, 0], self._shifts[i, 1], True, var_s)
                mu, var = mu_s, var_s
        return mu, var

    def _withdraw(self, i: int) -> None:
        """Take energy ``i``'s contribution out of the sums, before its inputs change."""
        if i not in self._used:
            return
        mu, var = self._contribution(i, self._saturation_used.pop(i))
        _accumulate_frame_kernel(mu, var, -self._lin[i], -self._var[i],
                                 -self.plan.in_pre[i], self._acc)
        self._used.discard(i)

    def _refresh(self, i: int) -> None:
        """Add energy ``i``'s contribution to the sums from its current inputs (an earlier
        one was withdrawn before they changed) and compute the read-outs it completes."""
        saturation = self._saturation()
        got = self._contribution(i, saturation)
        if got is None:
            return
        mu, var = got
        if not self._ref_set and self.plan.in_pre[i]:
            # Per-pixel offset of the pre-edge sums (keeps the float32 scatter exact).
            self._acc[:, ROW_REF, :] = np.nan_to_num(mu)
            self._ref_set = True
        _accumulate_frame_kernel(mu, var, self._lin[i], self._var[i], self.plan.in_pre[i],
                                 self._acc)
        self._used.add(i)
        self._saturation_used[i] = saturation
        k = i - self.plan.blk_lo
        if 0 <= k < self._blk_mu.shape[1]:
            self._blk_mu[:, k, :] = mu
            self._blk_var[:, k, :] = var
        for stage, deps in self._deps.items():
            if i in deps:
                self._dirty.add(stage)
        for stage in ("wl", "val", "edge"):
            if stage in self._dirty and self._deps[stage].issubset(self._used):
                self._compute(stage)

    def _outputs(self) -> np.ndarray:
        if self._out is None:
            self._out = np.full((N_OUT, *self.frame_shape), np.nan, dtype=np.float32)
        return self._out

    def _compute(self, stage: str) -> None:
        """Compute one read-out for every pixel (the white line and the valence unmasked,
        as the mask may still change; the mask is applied last)."""
        p = self.plan
        out = self._outputs()
        if stage == "edge":
            # The lines (edge jump, mask) need the same frames as the edge energy: one
            # kernel computes both; pixels outside the mask, NaN in the maps anyway, are
            # skipped chunk by chunk.
            _lines_edge_kernel(self._acc, p.n_pre, p.pre_st, p.pre_stt, p.jump_k_sigma,
                               self._blk_mu, self._blk_var, self._e_blk, self._t_blk,
                               p.norm_e0_ev, p.edge_lo, p.edge_hi, out[OUT_JUMP],
                               out[OUT_JUMP_S], self._sv, self._mask, out[OUT_EDGE],
                               out[OUT_EDGE_S])
        elif stage == "wl":
            _whiteline_kernel(self._blk_mu, self._blk_var, self._acc, self._sv, self._all,
                              self._t_blk, self._e_blk, p.wl_lo, p.wl_hi, p.wl_method,
                              p.wl_fit_lo, p.wl_fit_n, p.wl_pinv, p.wl_center_ev,
                              p.wl_scale_ev, out[OUT_WL], out[OUT_WL_S])
        else:
            _valence_kernel(self._acc, self._sv, self._all, out[OUT_VAL], out[OUT_VAL_S])
        self._dirty.discard(stage)

    def _saturation(self) -> float:
        if self.saturation_adu is not None:
            return float(self.saturation_adu)
        return self._dtype_saturation

    def _note_dtype(self, frame: np.ndarray) -> None:
        if np.issubdtype(frame.dtype, np.integer):
            self._dtype_saturation = min(self._dtype_saturation,
                                         float(np.iinfo(frame.dtype).max))

    # ----------------------------------------------------------------- output
    @property
    def missing_energies(self) -> list[float]:
        """Grid energies (eV) that have no corrected frame yet."""
        return [float(e) for i, e in enumerate(self.energies_ev) if i not in self._used]

    @property
    def report(self) -> dict[str, Any]:
        """JSON-serializable summary of what arrived."""
        return {
            "n_frames": self._n_frames,
            "n_flats": self._n_flats,
            "n_darks": self._n_darks,
            "duplicates": sorted(set(self._duplicates)),
            "missing_energies": self.missing_energies,
            "unexpected_energies": list(self._unexpected),
            "frames_without_flat": [
                float(self.energies_ev[i]) for i in self._samples if self._flat_for(i) is None
            ],
            "n_bad_flat_pixels": int(self._bad_flat_pixels().sum()),
        }

    def _bad_flat_pixels(self) -> np.ndarray:
        """Pixels whose flat (any energy) is not above the dark, saturated or NaN."""
        dark = self._dark.mean() if self._dark is not None else self._zero
        bad = np.zeros(self.frame_shape, dtype=bool)
        flats = [*self._flats.values()] + ([self._flat_all] if self._flat_all else [])
        for flat in flats:
            mean = flat.mean()
            bad |= ~(mean - dark > 0) | ~(mean < self._saturation())
        return bad

    def finish(self, allow_partial: bool = False) -> XanesMaps:
        """Fit the sweep and return its maps.

        Parameters
        ----------
        allow_partial : bool
            Fit an incomplete sweep on the energies present (re-planned; raises
            ``ValueError`` if they no longer cover the fit windows).

        Raises
        ------
        ValueError
            Naming the missing energies, if the sweep is incomplete and not
            ``allow_partial``.
        """
        missing = self.missing_energies
        if missing and not allow_partial:
            shown = ", ".join(f"{e:g}" for e in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise ValueError(f"sweep incomplete: missing energies {shown}{more} eV")
        if missing:
            return self._finish_partial()
        for stage in ("wl", "val", "edge"):
            if stage in self._dirty:
                self._compute(stage)
        # Jump and mask are current: any later pre- or post-edge frame re-dirties "edge".
        # The maps take the output array itself (masked in place, no copy); the
        # accumulator starts a fresh one and recomputes everything if asked again.
        out = self._outputs()
        mask = self._mask.copy()
        _mask_in_place_kernel(out, mask, self.config.max_valence_sigma)
        self._out = None
        self._dirty = {"edge", "wl", "val"}
        return maps_from_out(out, mask, self.plan, self._shifts.copy(), self.config)

    def _finish_partial(self) -> XanesMaps:
        from thermoxanes.analysis.fit import fit_stack

        present = sorted(self._used)
        if len(present) < 2:
            raise ValueError(f"sweep incomplete: only {len(present)} energies have frames")
        parts = [self._contribution(i, self._saturation_used[i]) for i in present]
        mu = np.stack([part[0] for part in parts])
        var = np.stack([part[1] for part in parts])
        cfg = FitConfig.from_dict({**self.config.to_dict(), "register": False})
        maps = fit_stack(mu, self.energies_ev[present], cfg, variance=var)
        maps.registration_shifts = self._shifts[present].copy()
        maps.config = self.config.to_dict()
        return maps
