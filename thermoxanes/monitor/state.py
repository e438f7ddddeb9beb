"""What the monitor knows: a thread-safe model of the incoming streams, no plotting.

:class:`MonitorState` is fed by the receiver threads (:mod:`thermoxanes.monitor.feeds`)
with decoded wire-protocol messages and keeps what the page shows:

- the latest map update reduced for display (valence, differential valence, the
  pixels whose differential is significant), with its header;
- one :class:`SweepRecord` per fitted sweep (means against temperature and time, and the
  valence and differential histograms for the histogram evolution);
- the temperature trace from the acquisition's events (thinned, never unbounded);
- plan progress from start documents and primary events;
- stream health of both inputs (:class:`FeedHealth`).

Every change bumps a version counter and calls the registered listeners with the name of
the part that changed (``"maps"``, ``"series"`` or ``"data"``), so views push updates
as they happen.
Listeners are called from the receiver threads and must only schedule work.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from bokeh.palettes import RdBu11, Viridis256

from thermoxanes.monitor import _kernels

#: Colours of the valence map (low to high valence).
VALENCE_PALETTE: tuple[str, ...] = tuple(Viridis256)
#: Colours of the differential map: low (reduction) blue .. high (oxidation) red.
DIFFERENTIAL_PALETTE: tuple[str, ...] = tuple(RdBu11)
_VALENCE_LUT = _kernels.rgba_lut(VALENCE_PALETTE)
_DIFFERENTIAL_LUT = _kernels.rgba_lut(DIFFERENTIAL_PALETTE)
_NO_EDGES = np.zeros(1)
_NO_MASK = np.ones((1, 1), dtype=bool)

#: The valence colour range is rounded outwards to multiples of this (valence units).
SPAN_STEP = 0.05

#: Differential pixels with ``|z|`` above this are marked significant.
Z_THRESHOLD = 3.0


@dataclass(frozen=True)
class MonitorConfig:
    """Display settings of the monitor.

    Attributes
    ----------
    max_display_px : int
        Maps larger than this (per side) are block-averaged down for the browser.
    valence_range : tuple of float
        Range of the valence histograms (valence units).
    valence_bin : float
        Width of a valence histogram bin.
    delta_range : tuple of float
        Range of the differential histograms (valence units).
    delta_bin : float
        Width of a differential histogram bin.
    max_sweeps : int
        Sweeps kept for the histogram evolution and the series plots.
    max_trace_points : int
        Temperature trace points kept; beyond it the trace is thinned by two.
    pixel_size_um : float or None
        Pixel size for the scale bar; a ``pixel_size_um`` in the start document or the
        map-update header takes precedence.  ``None``: the scale bar counts pixels.
    z_threshold : float
        ``|z|`` above which a differential pixel is significant.
    """

    max_display_px: int = 512
    valence_range: tuple[float, float] = (1.5, 4.5)
    valence_bin: float = 0.02
    delta_range: tuple[float, float] = (-2.0, 2.0)
    delta_bin: float = 0.01
    max_sweeps: int = 500
    max_trace_points: int = 20000
    pixel_size_um: float | None = None
    z_threshold: float = Z_THRESHOLD

    def __post_init__(self) -> None:
        if self.max_display_px < 16:
            raise ValueError("max_display_px must be at least 16")
        for name in ("valence", "delta"):
            lo, hi = getattr(self, f"{name}_range")
            width = getattr(self, f"{name}_bin")
            if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo and 0 < width < hi - lo):
                raise ValueError(f"bad {name} histogram range {lo}..{hi} with bin {width}")
        if self.pixel_size_um is not None and not self.pixel_size_um > 0:
            raise ValueError(f"pixel size must be positive, got {self.pixel_size_um}")
        if self.max_sweeps < 1 or self.max_trace_points < 16:
            raise ValueError("max_sweeps must be >= 1 and max_trace_points >= 16")

    @property
    def valence_edges(self) -> np.ndarray:
        """Bin edges of the valence histograms."""
        return _edges(self.valence_range, self.valence_bin)

    @property
    def delta_edges(self) -> np.ndarray:
        """Bin edges of the differential histograms."""
        return _edges(self.delta_range, self.delta_bin)


def _edges(span: tuple[float, float], width: float) -> np.ndarray:
    n = max(1, int(round((span[1] - span[0]) / width)))
    return np.linspace(span[0], span[1], n + 1)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def block_reduce(image: np.ndarray, factor: int, how: str = "mean") -> np.ndarray:
    """Reduce an image by ``factor`` per side (NaN-aware mean, or max for masks).

    Parameters
    ----------
    image : numpy.ndarray
        2D array.
    factor : int
        Block side in pixels (1: returned as float32/bool copy).
    how : {"mean", "max"}
        ``"mean"`` ignores NaN (all-NaN blocks stay NaN); ``"max"`` is for booleans.

    Returns
    -------
    numpy.ndarray
        ``ceil(H / factor) x ceil(W / factor)``; float32 for ``"mean"``, bool for ``"max"``.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2D map, got shape {image.shape}")
    if how == "max":
        image = image.astype(bool)
    else:
        image = image.astype(np.float32)
    if factor <= 1:
        return image.copy()
    h, w = image.shape
    ph, pw = -h % factor, -w % factor
    fill = False if how == "max" else np.nan
    padded = np.pad(image, ((0, ph), (0, pw)), constant_values=fill) if ph or pw else image
    hb, wb = padded.shape[0] // factor, padded.shape[1] // factor
    # add the factor x factor strided sub-images: much faster than reducing small axes
    if how == "max":
        hit = np.zeros((hb, wb), dtype=bool)
        for k in range(factor):
            for m in range(factor):
                hit |= padded[k::factor, m::factor]
        return hit
    finite = np.isfinite(padded)
    values = np.where(finite, padded, np.float32(0.0))
    total = np.zeros((hb, wb), dtype=np.float32)
    count = np.zeros((hb, wb), dtype=np.int32)
    for k in range(factor):
        for m in range(factor):
            total += values[k::factor, m::factor]
            count += finite[k::factor, m::factor]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return out.astype(np.float32)


def density_histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Histogram of the finite ``values`` as a probability density (zeros if none).

    Values outside the edges are left out.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    counts, _ = np.histogram(values, bins=edges)
    total = counts.sum()
    if total == 0:
        return np.zeros(len(edges) - 1)
    return counts / (total * np.diff(edges))


def density_from_counts(counts: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin as a probability density (zeros if there are none)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return np.zeros(len(edges) - 1)
    return counts / (total * np.diff(edges))


def percentiles_from_counts(counts: np.ndarray, edges: np.ndarray,
                            q: tuple[float, float]) -> tuple[float, float] | None:
    """Percentiles (0..100) of a histogram, interpolated linearly within bins."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return None
    cum = np.concatenate([[0.0], np.cumsum(counts)]) / total
    lo, hi = (float(np.interp(p / 100.0, cum, edges)) for p in q)
    return lo, hi


def published_histogram(arrays: Mapping[str, np.ndarray], name: str
                        ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(counts, edges)`` of ``NAME_histogram`` / ``NAME_histogram_edges`` if valid."""
    counts = arrays.get(f"{name}_histogram")
    edges = arrays.get(f"{name}_histogram_edges")
    if counts is None or edges is None:
        return None
    counts = np.asarray(counts)
    edges = np.asarray(edges, dtype=np.float64)
    if counts.ndim != 1 or edges.shape != (counts.size + 1,) or counts.size == 0:
        return None
    if not (np.all(np.isfinite(edges)) and np.all(np.diff(edges) > 0)):
        return None
    return counts.astype(np.float64), edges


@dataclass
class DisplayMaps:
    """The latest map update, reduced for the browser.

    Everything a page needs is computed here once, in the receiver thread, for all
    viewers: the block-averaged maps, their RGBA colours, the colour ranges, the outline
    of the significant pixels and the extent in plot units.

    Attributes
    ----------
    sweep_index : int or None
        Sweep the maps belong to.
    header : dict
        The map update's header (sweep summary entry).
    shape : tuple of int
        Shape of the maps as published.
    factor : int
        Block size of the reduction (1: full resolution).
    pixel_size_um : float or None
        Size of a published pixel.
    valence : numpy.ndarray
        Display valence map (float32), NaN outside the mask.
    differential : numpy.ndarray or None
        Display differential valence (this sweep minus ``against_sweep``).
    significant : numpy.ndarray or None
        Display pixels with ``|z|`` above the threshold.
    n_significant : int
        Significant pixels at full resolution.
    against_sweep : int or None
        The sweep the differential map is taken against.
    valence_span : tuple of float or None
        Colour range of the valence map: the 1st to 99th percentile, widened over all
        sweeps of the series so far so that maps of successive sweeps compare by colour,
        rounded outwards to ``SPAN_STEP``.
    valence_rgba, differential_rgba : numpy.ndarray or None
        The display maps coloured (uint32 RGBA, transparent where NaN).
    differential_bound : float
        The differential colours span ``-bound .. +bound`` (99th percentile of ``|Δ|``,
        rounded up to a quarter of its power of ten).
    outline : dict
        ``{"xs": [...], "ys": [...]}``: contour lines around the significant pixels,
        in plot units.
    extent : tuple of float
        ``(width, height)`` of the map in plot units (µm with a pixel size, else pixels).
    """

    sweep_index: int | None
    header: dict[str, Any]
    shape: tuple[int, int]
    factor: int
    pixel_size_um: float | None
    valence: np.ndarray
    differential: np.ndarray | None = None
    significant: np.ndarray | None = None
    n_significant: int = 0
    against_sweep: int | None = None
    valence_span: tuple[float, float] | None = None
    valence_rgba: np.ndarray | None = None
    differential_rgba: np.ndarray | None = None
    differential_bound: float = 0.1
    outline: dict[str, list] = field(default_factory=lambda: {"xs": [], "ys": []})
    extent: tuple[float, float] = (1.0, 1.0)


@dataclass
class SweepRecord:
    """What the monitor keeps of one fitted sweep (from its map update).

    ``valence_density`` and ``delta_density`` are densities over ``valence_edges`` and
    ``delta_edges``: the publisher's full-resolution histograms when the map update
    carries them (``valence_histogram``, ...), else the monitor's own over its
    configured ranges.
    """

    sweep_index: int | None
    run_uid: str | None
    temperature_c: float | None
    time_s: float | None
    mean_edge_energy_ev: float | None
    mean_whiteline_energy_ev: float | None
    mean_valence: float | None
    median_valence_sigma: float | None
    std_valence: float | None
    valence_density: np.ndarray
    delta_density: np.ndarray | None
    against_sweep: int | None
    mean_delta_valence: float | None
    received_at: float
    analysis_lag_s: float | None
    valence_edges: np.ndarray | None = None
    delta_edges: np.ndarray | None = None

    @property
    def label(self) -> str:
        """Short label: sweep index and temperature."""
        text = f"sweep {self.sweep_index}" if self.sweep_index is not None else "sweep ?"
        if self.temperature_c is not None:
            text += f" ({self.temperature_c:.0f} °C)"
        return text


@dataclass
class FeedHealth:
    """Health of one input stream.

    Attributes
    ----------
    endpoint : str
        Endpoint(s) subscribed to.
    publisher : str or None
        Id of the publisher heard last.
    last_rx : float or None
        Unix time of the last message received.
    interval_s : float
        Heartbeat period announced by the publisher.
    messages : int
        Messages received.
    gaps, missed : int
        Separate gaps and messages missed in them (lost in transit, or dropped by the
        publisher: their sequence numbers stay holes).
    restarts : int
        Times a new publisher id appeared after the first.
    publisher_dropped : int
        ``dropped`` from the publisher's latest stats message.
    lags_s : collections.deque
        ``(received_at, receive time - publisher queue time)`` of recent messages.
    frame_rate_hz : float or None
        Frames per second the publisher sent (from ``sent_frames`` in its stats).
    event_rate_hz : float or None
        Event documents per second received.
    malformed : int
        Malformed messages the subscriber skipped.
    reconnects : int
        Times the subscriber recreated its socket after silence.
    """

    endpoint: str = ""
    publisher: str | None = None
    last_rx: float | None = None
    interval_s: float = 0.5
    messages: int = 0
    gaps: int = 0
    missed: int = 0
    restarts: int = 0
    publisher_dropped: int = 0
    lags_s: deque = field(default_factory=lambda: deque(maxlen=200))
    frame_rate_hz: float | None = None
    event_rate_hz: float | None = None
    malformed: int = 0
    reconnects: int = 0
    _stats_prev: tuple[float, int] | None = None
    _event_times: deque = field(default_factory=lambda: deque(maxlen=2000))

    def alive(self, now: float | None = None) -> bool:
        """Whether a message arrived within six heartbeat periods (at least 2 s)."""
        if self.last_rx is None:
            return False
        now = time.time() if now is None else now
        return now - self.last_rx <= max(2.0, 6.0 * self.interval_s)

    def lag_summary(self, window_s: float = 10.0, now: float | None = None) -> tuple[
            float | None, float | None]:
        """Latest and largest transport lag (s) of the last ``window_s`` seconds."""
        now = time.time() if now is None else now
        recent = [lag for t, lag in self.lags_s if now - t <= window_s]
        if not recent:
            return None, None
        return recent[-1], max(recent)


@dataclass
class Progress:
    """Plan progress from the acquisition's documents."""

    run_uid: str | None = None
    series_uid: str | None = None
    sweep_index: int | None = None
    num_sweeps: int | None = None
    n_energies: int | None = None
    n_primary: int = 0
    energy_ev: float | None = None
    setpoint_c: float | None = None
    temperature_c: float | None = None
    run_open: bool = False
    exit_status: str | None = None
    plan_name: str | None = None
    sweeps_done: int | None = None

    @property
    def fraction(self) -> float | None:
        """Fraction of the whole series done (0..1), when the start said how long."""
        if self.num_sweeps is None or self.num_sweeps <= 0:
            return None
        if self.sweep_index is None:
            # a run of the series that is not a sweep (e.g. heater_safe_state at the end)
            if self.sweeps_done is None:
                return None
            return min(1.0, self.sweeps_done / self.num_sweeps)
        within = 0.0
        if self.run_open and self.n_energies:
            within = min(1.0, self.n_primary / self.n_energies)
        elif not self.run_open and self.exit_status is not None:
            within = 1.0
        return min(1.0, (self.sweep_index + within) / self.num_sweeps)


Listener = Callable[[str], None]


class MonitorState:
    """Thread-safe model of everything the monitor shows.

    Parameters
    ----------
    config : MonitorConfig, optional
        Display settings.
    """

    def __init__(self, config: MonitorConfig | None = None) -> None:
        self.config = config or MonitorConfig()
        self.lock = threading.RLock()
        self._listeners: list[Listener] = []
        self.maps_version = 0
        self.series_version = 0
        self.data_version = 0
        self.maps: DisplayMaps | None = None
        self.sweeps: deque[SweepRecord] = deque(maxlen=self.config.max_sweeps)
        self.trace_time_s: list[float] = []
        self.trace_temperature_c: list[float] = []
        self.trace_epoch = 0  # bumped when the trace was thinned (views resend it whole)
        self._trace_step = 1
        self._trace_skip = 0
        self.time_origin_s: float | None = None
        self.progress = Progress()
        self.maps_health = FeedHealth()
        self.data_health = FeedHealth()
        self._descriptors: dict[str, tuple[str | None, str]] = {}
        self._stop_received_at: dict[str, float] = {}
        self._pixel_size_um: float | None = self.config.pixel_size_um
        self._valence_span: tuple[str | None, float, float] | None = None
        self._valence_edges = self.config.valence_edges
        self._delta_edges = self.config.delta_edges

    # -- listeners ----------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(part)`` after every change.

        ``part`` is ``"maps"`` (new display maps), ``"series"`` (histograms and series
        after a map update) or ``"data"`` (acquisition documents).
        """
        with self.lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``."""
        with self.lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _notify(self, part: str) -> None:
        with self.lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(part)
            except Exception:  # noqa: BLE001 - one broken view must not stop the feed
                continue

    # -- time axis ----------------------------------------------------------------------
    def elapsed_min(self, time_s: float | None) -> float | None:
        """Minutes since the first time seen on either input (the plots' time axis)."""
        if time_s is None:
            return None
        with self.lock:
            if self.time_origin_s is None:
                self.time_origin_s = time_s
            return (time_s - self.time_origin_s) / 60.0

    # -- map updates --------------------------------------------------------------------
    def handle_map_update(self, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                          received_at: float | None = None) -> None:
        """Take one map update (header: the sweep summary entry; arrays: the maps).

        In two steps, each followed by a notification: the display maps first
        (``"maps"``), then the histograms and the series entry (``"series"``), so that
        views can push the new map before the rest is handled.

        A map update without a ``valence`` map but with ``summary: true`` and a
        ``valence_histogram`` (a late joiner's snapshot of an earlier sweep,
        docs/protocol.md section 7) only adds its sweep to the series and histograms.
        """
        received_at = time.time() if received_at is None else received_at
        cfg = self.config
        pub_valence = published_histogram(arrays, "valence")
        pub_delta = published_histogram(arrays, "differential")
        valence = arrays.get("valence")
        if valence is None or np.ndim(valence) != 2 or min(np.shape(valence)) == 0:
            if header.get("summary") is True and pub_valence is not None:
                self._widen_span(header, percentiles_from_counts(*pub_valence, (1, 99)))
                self._add_record(header, pub_valence, pub_delta, received_at)
            return
        valence = _float32(valence)
        mask = arrays.get("mask")
        mask = np.asarray(mask, dtype=bool) if mask is not None and np.shape(mask) == \
            valence.shape else None
        use_mask = mask is not None
        kernel_mask = mask if use_mask else _NO_MASK
        factor = max(1, math.ceil(max(valence.shape) / cfg.max_display_px))
        # one pass per map: display block means and (unless published) the histogram
        display_valence, valence_counts = _kernels.reduce_map(
            valence, kernel_mask, use_mask, factor,
            _NO_EDGES if pub_valence is not None else self._valence_edges)
        diff = significant = None
        delta_counts = None
        n_significant = 0
        differential = arrays.get("differential_valence")
        has_diff = differential is not None and np.shape(differential) == valence.shape
        if has_diff:
            diff, delta_counts = _kernels.reduce_map(
                _float32(differential), kernel_mask, use_mask, factor,
                _NO_EDGES if pub_delta is not None else self._delta_edges)
            z = arrays.get("differential_z")
            if z is not None and np.shape(z) == valence.shape:
                significant, n_significant = _kernels.significance(
                    _float32(z), kernel_mask, use_mask, float(cfg.z_threshold), factor)
        differential_info = header.get("differential")
        against = None
        if isinstance(differential_info, Mapping):
            against_value = differential_info.get("against_sweep")
            against = int(against_value) if isinstance(against_value, int) else None
        sweep_value = header.get("sweep_index")
        sweep_index = int(sweep_value) if isinstance(sweep_value, int) else None
        run_uid = header.get("run_uid") if isinstance(header.get("run_uid"), str) else None
        pixel = _number(header.get("pixel_size_um")) or self._pixel_size_um
        unit = pixel if pixel else 1.0
        h, w = valence.shape
        width, height = w * unit, h * unit
        display = DisplayMaps(
            sweep_index=sweep_index, header=dict(header), shape=(h, w),
            factor=factor, pixel_size_um=pixel, valence=display_valence,
            differential=diff, significant=significant, n_significant=int(n_significant),
            against_sweep=against, extent=(width, height))
        finite = display_valence[np.isfinite(display_valence)]
        span = None
        if finite.size:
            lo, hi = np.percentile(finite, [1, 99])
            span = (float(lo), float(hi))
        widened = self._widen_span(header, span)
        # rounded outwards to 0.05: the colour bar (and its layout in the browser) then
        # changes only when the range grows past a step
        display.valence_span = None if widened is None else (
            round(math.floor(widened[0] / SPAN_STEP) * SPAN_STEP, 10),
            round(math.ceil(widened[1] / SPAN_STEP) * SPAN_STEP, 10))
        lo, hi = display.valence_span or (2.0, 4.0)
        display.valence_rgba = _kernels.colormap(display_valence, lo, hi, _VALENCE_LUT)
        if diff is not None:
            finite = np.abs(diff[np.isfinite(diff)])
            bound = float(np.percentile(finite, 99)) if finite.size else 0.1
            display.differential_bound = bound = _round_up(max(bound, 1e-3))
            display.differential_rgba = _kernels.colormap(diff, -bound, bound,
                                                          _DIFFERENTIAL_LUT)
            if significant is not None:
                display.outline = outline_lines(significant, width, height)
        with self.lock:
            self.maps = display
            self.maps_version += 1
            stop_at = self._stop_received_at.pop(run_uid, None) if run_uid else None
        self._notify("maps")
        if pub_valence is None:
            pub_valence = (valence_counts, self._valence_edges)
        if has_diff and pub_delta is None:
            pub_delta = (delta_counts, self._delta_edges)
        self._add_record(header, pub_valence, pub_delta if has_diff else None, received_at,
                         analysis_lag_s=(received_at - stop_at) if stop_at is not None
                         else None)

    def _widen_span(self, header: Mapping[str, Any], span: tuple[float, float] | None
                    ) -> tuple[float, float] | None:
        """Widen the series' valence colour range by ``span``; return the range."""
        series_uid = header.get("series_uid") if isinstance(header.get("series_uid"), str) \
            else None
        with self.lock:
            if span is not None:
                lo, hi = span
                old = self._valence_span
                if old is not None and old[0] == series_uid:
                    lo, hi = min(lo, old[1]), max(hi, old[2])
                self._valence_span = (series_uid, lo, max(hi, lo + 1e-3))
            return None if self._valence_span is None else self._valence_span[1:]

    def _add_record(self, header: Mapping[str, Any],
                    valence_hist: tuple[np.ndarray, np.ndarray],
                    delta_hist: tuple[np.ndarray, np.ndarray] | None, received_at: float,
                    analysis_lag_s: float | None = None) -> None:
        differential_info = header.get("differential")
        against = mean_delta = None
        if isinstance(differential_info, Mapping):
            against_value = differential_info.get("against_sweep")
            against = int(against_value) if isinstance(against_value, int) else None
            mean_delta = _number(differential_info.get("mean_delta_valence"))
        sweep_value = header.get("sweep_index")
        run_uid = header.get("run_uid") if isinstance(header.get("run_uid"), str) else None
        record = SweepRecord(
            sweep_index=int(sweep_value) if isinstance(sweep_value, int) else None,
            run_uid=run_uid,
            temperature_c=_number(header.get("temperature_c")),
            time_s=_number(header.get("time_s")),
            mean_edge_energy_ev=_number(header.get("mean_edge_energy_ev")),
            mean_whiteline_energy_ev=_number(header.get("mean_whiteline_energy_ev")),
            mean_valence=_number(header.get("mean_valence")),
            median_valence_sigma=_number(header.get("median_valence_sigma")),
            std_valence=_number(header.get("std_valence")),
            valence_density=density_from_counts(*valence_hist),
            valence_edges=valence_hist[1],
            delta_density=None if delta_hist is None else density_from_counts(*delta_hist),
            delta_edges=None if delta_hist is None else delta_hist[1],
            against_sweep=against, mean_delta_valence=mean_delta,
            received_at=received_at, analysis_lag_s=analysis_lag_s,
        )
        if record.time_s is not None:
            self.elapsed_min(record.time_s)
        with self.lock:
            if self.sweeps and run_uid is not None and self.sweeps[-1].run_uid == run_uid:
                self.sweeps[-1] = record  # the same sweep again (e.g. from a snapshot)
            else:
                self.sweeps.append(record)
            self.series_version += 1
        self._notify("series")

    # -- acquisition documents ----------------------------------------------------------
    def handle_document(self, name: str, doc: Mapping[str, Any],
                        received_at: float | None = None) -> None:
        """Take one bluesky document from the acquisition."""
        received_at = time.time() if received_at is None else received_at
        with self.lock:
            changed = self._document(name, doc, received_at)
            if changed:
                self.data_version += 1
        if changed:
            self._notify("data")

    def _document(self, name: str, doc: Mapping[str, Any], received_at: float) -> bool:
        if name == "start":
            energies = doc.get("energies_ev")
            n_energies = len(energies) if isinstance(energies, list) else None
            if n_energies is None and isinstance(doc.get("num_points"), int):
                n_energies = int(doc["num_points"])
            pixel = _number(doc.get("pixel_size_um"))
            if pixel:
                self._pixel_size_um = pixel
            self.progress = Progress(
                run_uid=doc.get("uid") if isinstance(doc.get("uid"), str) else None,
                series_uid=doc.get("series_uid") if isinstance(doc.get("series_uid"), str)
                else None,
                sweep_index=doc["sweep_index"] if isinstance(doc.get("sweep_index"), int)
                else None,
                num_sweeps=doc["num_sweeps"] if isinstance(doc.get("num_sweeps"), int) else None,
                n_energies=n_energies, setpoint_c=_number(doc.get("setpoint_c")),
                temperature_c=self.progress.temperature_c, run_open=True,
                plan_name=doc.get("plan_name") if isinstance(doc.get("plan_name"), str)
                else None,
                sweeps_done=len(doc["sweep_uids"]) if isinstance(doc.get("sweep_uids"), list)
                else None,
            )
            return True
        if name == "descriptor":
            uid = doc.get("uid")
            if isinstance(uid, str):
                run = doc.get("run_start")
                self._descriptors[uid] = (run if isinstance(run, str) else None,
                                          str(doc.get("name", "primary")))
                while len(self._descriptors) > 1000:
                    self._descriptors.pop(next(iter(self._descriptors)))
            return False
        if name == "event":
            self.data_health._event_times.append(received_at)
            data = doc.get("data")
            if not isinstance(data, Mapping):
                return False
            temperature = _pick(data, ("temperature_c",))
            clock = _pick(data, ("clock_time_s",))
            if clock is None:
                clock = _number(doc.get("time"))
            if temperature is not None:
                self.progress.temperature_c = temperature
                if clock is not None:
                    self._add_trace_point(clock, temperature)
            _, stream = self._descriptors.get(str(doc.get("descriptor")), (None, ""))
            if stream == "primary":
                self.progress.n_primary += 1
                energy = _pick(data, ("energy_ev",))
                if energy is not None:
                    self.progress.energy_ev = energy
            return True
        if name == "stop":
            run = doc.get("run_start")
            if isinstance(run, str):
                self._stop_received_at[run] = received_at
                while len(self._stop_received_at) > 100:
                    self._stop_received_at.pop(next(iter(self._stop_received_at)))
                if run == self.progress.run_uid:
                    self.progress.run_open = False
                    status = doc.get("exit_status")
                    self.progress.exit_status = status if isinstance(status, str) else None
            return True
        return False

    def _add_trace_point(self, time_s: float, temperature_c: float) -> None:
        if self.time_origin_s is None:
            self.time_origin_s = time_s
        self._trace_skip += 1
        if self._trace_skip < self._trace_step:
            return
        self._trace_skip = 0
        self.trace_time_s.append(time_s)
        self.trace_temperature_c.append(temperature_c)
        if len(self.trace_time_s) > self.config.max_trace_points:
            self.trace_time_s = self.trace_time_s[::2]
            self.trace_temperature_c = self.trace_temperature_c[::2]
            self._trace_step *= 2
            self.trace_epoch += 1

    # -- health -------------------------------------------------------------------------
    def update_health(self, feed: str, **changes: Any) -> None:
        """Update the counters of ``feed`` ("maps" or "data") without notifying."""
        health = self.maps_health if feed == "maps" else self.data_health
        with self.lock:
            for key, value in changes.items():
                setattr(health, key, value)

    def handle_stats(self, feed: str, stats: Mapping[str, Any], received_at: float) -> None:
        """Take a publisher stats message: publisher-side drops and the frame rate."""
        health = self.maps_health if feed == "maps" else self.data_health
        with self.lock:
            dropped = stats.get("dropped")
            if isinstance(dropped, int):
                health.publisher_dropped = dropped
            frames = stats.get("sent_frames")
            if isinstance(frames, int):
                if health._stats_prev is not None:
                    t0, f0 = health._stats_prev
                    if received_at > t0 and frames >= f0:
                        health.frame_rate_hz = (frames - f0) / (received_at - t0)
                health._stats_prev = (received_at, frames)
            times = health._event_times
            while times and received_at - times[0] > 5.0:
                times.popleft()
            health.event_rate_hz = len(times) / 5.0 if feed == "data" else None

    def health_rows(self, now: float | None = None) -> list[tuple[str, FeedHealth, bool]]:
        """``(name, copy of health, alive)`` for both inputs."""
        now = time.time() if now is None else now
        with self.lock:
            out = []
            for name, h in (("maps", self.maps_health), ("data", self.data_health)):
                copy = FeedHealth(**{k: getattr(h, k) for k in FeedHealth.__dataclass_fields__
                                     if not k.startswith("_")})
                copy.lags_s = deque(h.lags_s, maxlen=200)
                out.append((name, copy, h.alive(now)))
            return out


def _pick(data: Mapping[str, Any], suffixes: tuple[str, ...]) -> float | None:
    """The first numeric value whose key ends with one of ``suffixes``."""
    for suffix in suffixes:
        for key, value in data.items():
            if key.endswith(suffix):
                number = _number(value)
                if number is not None:
                    return number
    return None


def _round_up(value: float) -> float:
    """``value`` rounded up to a quarter of its power of ten (0.137 -> 0.15)."""
    step = 10.0 ** math.floor(math.log10(value)) / 4.0
    return round(math.ceil(value / step - 1e-9) * step, 12)


def _float32(array: Any) -> np.ndarray:
    array = np.asarray(array)
    return array if array.dtype == np.float32 else array.astype(np.float32)


def outline_lines(significant: np.ndarray, width: float, height: float) -> dict[str, list]:
    """Contour lines around the ``True`` pixels of a display mask, in plot units."""
    from bokeh.plotting.contour import contour_data

    if not significant.any():
        return {"xs": [], "ys": []}
    h, w = significant.shape
    padded = np.pad(significant.astype(np.float64), 1)
    x = (np.arange(-1, w + 1) + 0.5) * width / w
    y = (np.arange(-1, h + 1) + 0.5) * height / h
    lines = contour_data(x, y, padded, levels=[0.5], want_fill=False).line_data
    if lines is None:
        return {"xs": [], "ys": []}
    return {"xs": list(lines.xs), "ys": list(lines.ys)}
