"""PNG figures the analysis service writes after every sweep (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

VALENCE_RANGE = (2.0, 4.0)


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).ravel()
    return values[np.isfinite(values)]


def valence_map_png(path: Path, valence: np.ndarray, *, title: str,
                    pixel_size_um: float | None = None) -> Path:
    """Valence map with a colour bar (and a 1 µm scale bar when the pixel size is known)."""
    fig, ax = plt.subplots(figsize=(5.2, 4.4), dpi=100)
    finite = _finite(valence)
    lo, hi = (np.percentile(finite, [1, 99]) if finite.size else VALENCE_RANGE)
    image = ax.imshow(valence, cmap="viridis", vmin=lo, vmax=max(hi, lo + 1e-3))
    fig.colorbar(image, ax=ax, label="Ni valence")
    if pixel_size_um:
        length_px = 1.0 / pixel_size_um
        h, w = valence.shape
        ax.plot([w * 0.05, w * 0.05 + length_px], [h * 0.94, h * 0.94], color="white", lw=3)
        ax.text(w * 0.05, h * 0.91, "1 µm", color="white")
    ax.set_title(title)
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def differential_png(path: Path, delta: np.ndarray, z: np.ndarray, *, title: str,
                     z_threshold: float = 3.0) -> Path:
    """Differential map (after - before) with pixels beyond ``z_threshold`` outlined."""
    fig, (ax, axh) = plt.subplots(1, 2, figsize=(9.5, 4.2), dpi=100)
    finite = _finite(delta)
    bound = float(np.percentile(np.abs(finite), 99)) if finite.size else 0.1
    bound = max(bound, 1e-3)
    image = ax.imshow(delta, cmap="RdBu_r", vmin=-bound, vmax=bound)
    fig.colorbar(image, ax=ax, label="Δ valence")
    significant = np.nan_to_num(np.abs(z), nan=0.0) > z_threshold
    if significant.any():
        ax.contour(significant, levels=[0.5], colors="k", linewidths=0.5)
    ax.set_title(title)
    ax.set_axis_off()
    if finite.size:
        axh.hist(finite, bins=80, color="0.4")
    axh.axvline(0.0, color="k", lw=0.8)
    axh.set_xlabel("Δ valence")
    axh.set_ylabel("pixels")
    axh.set_title(f"{int(significant.sum())} pixels with |z| > {z_threshold:g}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def histogram_evolution_png(path: Path, valence_maps: Sequence[np.ndarray],
                            temperatures_c: Sequence[float], labels: Sequence[str]) -> Path:
    """Valence histograms of every sweep so far, coloured by temperature, and the means."""
    fig, (ax, axm) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=100)
    cmap = plt.get_cmap("plasma")
    temps = np.asarray(temperatures_c, dtype=np.float64)
    t_lo, t_hi = (np.nanmin(temps), np.nanmax(temps)) if temps.size else (0.0, 1.0)
    span = max(t_hi - t_lo, 1.0)
    all_values = [_finite(v) for v in valence_maps]
    joined = np.concatenate(all_values) if all_values else np.zeros(0)
    edges = (np.linspace(*np.percentile(joined, [0.5, 99.5]), 81) if joined.size
             else np.linspace(*VALENCE_RANGE, 81))
    for values, temp, label in zip(all_values, temps, labels, strict=True):
        if values.size:
            ax.hist(values, bins=edges, histtype="step", density=True,
                    color=cmap((temp - t_lo) / span * 0.9), label=f"{label} ({temp:.0f} °C)")
    ax.set_xlabel("Ni valence")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    means = [float(v.mean()) if v.size else np.nan for v in all_values]
    axm.plot(temps, means, "o-")
    axm.set_xlabel("temperature (°C)")
    axm.set_ylabel("mean Ni valence")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
