"""Render-time benchmark of the simulator: prints one JSON object.

Times :meth:`SimWorld.render_frame` (sample frame, flat, dark) at 512 and 2048 pixels,
the projection refresh after the chemistry moved, ``world.advance(3600)`` and the
ground truth, side by side with a numpy baseline of the frame noise alone
(``Generator.poisson`` on the expected counts), in the same run.
"""

from __future__ import annotations

import json
import platform
import time

import numpy as np

from thermoxanes.simulators.world import SimWorld


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench(size: int, repeat: int) -> dict[str, float]:
    t0 = time.perf_counter()
    world = SimWorld.from_preset("nmc622-gravel", size=size, seed=0)
    build_s = time.perf_counter() - t0
    world.render_frame(8350.0, exposure_s=0.3)  # JIT and caches warm
    energies = iter(np.linspace(8330.0, 8360.0, 10 * repeat))
    frame_s = _best(lambda: world.render_frame(next(energies), exposure_s=0.3), repeat)
    flat_s = _best(lambda: world.render_frame(8350.0, exposure_s=0.3, sample_in=False), repeat)
    dark_s = _best(
        lambda: world.render_frame(8350.0, exposure_s=0.3, shutter_open=False), repeat
    )
    world.heater.setpoint_c = 150.0
    advance_s = _best(lambda: world.advance(3600.0), 3)

    def refresh() -> None:
        world.advance(30.0)
        world.sample._cache.clear()
        world.render_frame(8350.0, exposure_s=0.3)

    refresh_s = _best(refresh, 3)
    truth_s = _best(lambda: world.truth(), 3)
    rng = np.random.default_rng(0)
    expected = world.flat_adu * 3.3
    numpy_poisson_s = _best(lambda: rng.poisson(expected), max(2, repeat // 3))
    return {
        "size": size,
        "model_px": world.sample.model_px,
        "build_s": round(build_s, 3),
        "render_sample_frame_ms": round(frame_s * 1e3, 2),
        "render_flat_ms": round(flat_s * 1e3, 2),
        "render_dark_ms": round(dark_s * 1e3, 2),
        "render_with_projection_refresh_ms": round(refresh_s * 1e3, 2),
        "advance_3600s_ms": round(advance_s * 1e3, 2),
        "truth_ms": round(truth_s * 1e3, 2),
        "baseline_numpy_poisson_only_ms": round(numpy_poisson_s * 1e3, 2),
    }


def main() -> None:
    results = [bench(512, 20), bench(2048, 10)]
    print(json.dumps({
        "benchmark": "simulator_render",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "target": "2048x2048 sample frame <= 50 ms",
        "results": results,
    }, indent=1))


if __name__ == "__main__":
    main()
