"""Fixtures for the monitor tests: synthetic maps, real publishers, a headless Chromium."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


class SyntheticSeries:
    """Map updates of a heating series on a 64x64 disk-shaped particle.

    The particle reduces from sweep to sweep; from sweep 1 on a square patch oxidises
    instead, with a large z-score there (the significant pixels).  With ``histograms``
    the updates also carry the full-resolution histograms and ``summary_arrays``, as the
    analysis service sends them.
    """

    def __init__(self, size: int = 64, seed: int = 0, histograms: bool = False) -> None:
        self.size = size
        self.histograms = histograms
        self.rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[:size, :size]
        c = size / 2
        self.mask = (xx - c) ** 2 + (yy - c) ** 2 < (0.44 * size) ** 2
        self.pattern = 0.15 * np.sin(xx / (size / 10)) * np.cos(yy / (size / 7))
        self.patch = (abs(xx - 0.35 * size) < size / 10) & (abs(yy - 0.4 * size) < size / 10)
        self.series_uid = str(uuid.uuid4())
        self.previous: np.ndarray | None = None
        self.index = 0

    def next(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Header and arrays of the next sweep's map update (as the analysis sends)."""
        i = self.index
        noise = self.rng.normal(0.0, 0.01, self.mask.shape)
        valence = 3.6 - 0.02 * i + self.pattern + noise
        if i > 0:
            valence = valence + np.where(self.patch, 0.12 * i + 0.12, 0.0)
        valence = np.where(self.mask, valence, np.nan).astype(np.float32)
        sigma = np.where(self.mask, 0.015, np.nan).astype(np.float32)
        edge = np.where(self.mask, 8340.0 + 2.0 * (valence - 2.0), np.nan).astype(np.float32)
        arrays: dict[str, np.ndarray] = {
            "valence": valence, "valence_sigma": sigma, "edge_energy": edge,
            "edge_energy_sigma": sigma * 2, "whiteline_energy": edge + 8.0,
            "edge_jump": np.where(self.mask, 1.0, 0.0).astype(np.float32), "mask": self.mask,
        }
        header: dict[str, Any] = {
            "sweep_index": i, "run_uid": str(uuid.uuid4()), "series_uid": self.series_uid,
            "temperature_c": 25.0 + 75.0 * i, "time_s": 1200.0 * i + 300.0,
            "mean_edge_energy_ev": float(np.nanmean(edge)),
            "mean_whiteline_energy_ev": float(np.nanmean(edge) + 8.0),
            "mean_valence": float(np.nanmean(valence)),
            "median_valence_sigma": 0.015, "complete": True, "n_frames": 150,
        }
        if self.previous is not None:
            delta = (valence - self.previous).astype(np.float32)
            z = (delta / np.float32(0.015 * np.sqrt(2))).astype(np.float32)
            inside = self.mask & np.isfinite(delta)
            header["differential"] = {
                "against_sweep": i - 1,
                "mean_delta_valence": float(delta[inside].mean()),
                "fraction_significant_oxidation": float(np.mean(z[inside] > 3)),
                "fraction_significant_reduction": float(np.mean(z[inside] < -3)),
            }
            arrays["differential_valence"] = delta
            arrays["differential_z"] = z
        if self.histograms:
            from thermoxanes.streaming.analysis_service import map_histograms

            extra = map_histograms(valence, arrays.get("differential_valence"), self.mask)
            arrays.update(extra)
            header["summary_arrays"] = list(extra)
        self.previous = valence
        self.index += 1
        return header, arrays


@pytest.fixture
def series() -> SyntheticSeries:
    """A fresh synthetic heating series."""
    return SyntheticSeries()


@pytest.fixture
def publishers():
    """``(maps_publisher, data_publisher)`` bound to free loopback ports.

    The maps publisher also has a snapshot endpoint (``maps.snapshot_endpoint``), as
    ``thermoxanes analyze --maps-snapshot-endpoint`` binds.
    """
    from thermoxanes.streaming.publisher import Publisher

    maps = Publisher("tcp://127.0.0.1:*", heartbeat_s=0.2,
                     snapshot_endpoint="tcp://127.0.0.1:*")
    data = Publisher("tcp://127.0.0.1:*", heartbeat_s=0.2)
    yield maps, data
    maps.close()
    data.close()


def chromium_or_skip() -> str:
    """The Debian Chromium; skipped where it is missing, except on CI."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} missing on CI (Debian package chromium, .ci/apt-packages.txt)")
    pytest.skip(f"{CHROMIUM} not installed")
    return ""


@pytest.fixture
def browser():
    """A headless Chromium driven by playwright (never downloads a browser)."""
    executable = chromium_or_skip()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS,
                                      headless=True)
        yield instance
        instance.close()


def have_chromium() -> bool:
    """Whether the Debian Chromium is there."""
    return shutil.which("chromium") is not None or Path(CHROMIUM).exists()
