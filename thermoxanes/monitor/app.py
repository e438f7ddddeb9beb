"""The monitor page: one Bokeh document per browser session, all fed by one state.

Each viewer gets its own :class:`MonitorView` (Bokeh server sessions). A view registers
a listener on the :class:`~thermoxanes.monitor.state.MonitorState`; when a map update
arrives the listener schedules :meth:`MonitorView.refresh` on the session's event loop
(``Document.add_next_tick_callback``, the thread-safe entry point), so the new maps go
out over the session's websocket at once. Acquisition documents (temperature, progress,
health) are pushed by a periodic callback every 0.5 s, which also coalesces bursts.

Everything drawn is a Bokeh glyph or annotation (image with colour mapper, ColorBar,
ScaleBar, contour lines from :func:`bokeh.plotting.contour.contour_data`, patches,
lines); the health and progress panels are HTML in a ``Div``.
"""

from __future__ import annotations

import html
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from bokeh.document import Document
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    CustomJS,
    Div,
    HoverTool,
    LabelSet,
    LinearColorMapper,
    Range1d,
    ScaleBar,
    Span,
)
from bokeh.models.annotations.dimensional import Metric, MetricLength
from bokeh.palettes import Plasma256
from bokeh.plotting import figure

from thermoxanes.monitor.state import (
    DIFFERENTIAL_PALETTE,
    VALENCE_PALETTE,
    DisplayMaps,
    MonitorState,
    SweepRecord,
)

MAP_WIDTH_PX = 360
PUSH_PERIOD_MS = 500
SECONDARY_DELAY_MS = 150
SECONDARY_STEP_MS = 100
#: For this long after new maps went out, nothing else is pushed to that page (the
#: secondary panels, the trace, the status texts wait), so the browser draws the maps
#: without competing work of this page.
MAP_QUIET_S = 0.4
HEALTH_EVERY = 2  # the health panel is rebuilt every HEALTH_EVERY pushes (1 s)
_TOOLS = "pan,wheel_zoom,box_zoom,reset,save"


def _placeholder_image(width: float = 1.0, height: float = 1.0) -> dict[str, list]:
    """A clear 2x2 image (no value), in the layout of the map sources."""
    return {"image": [np.zeros((2, 2), np.uint32)],
            "value": [np.full((2, 2), np.nan, np.float32)], "sweep": [-1],
            "x": [0.0], "y": [0.0], "dw": [width], "dh": [height]}

#: The page: the roots (named panels) arranged in rows with plain CSS.
PAGE_TEMPLATE = """
{% block contents %}
<style>
  .txm-page { display: flex; flex-direction: column; gap: 6px; padding: 4px; }
  .txm-row { display: flex; flex-direction: row; gap: 6px; align-items: flex-start; }
</style>
<div class="txm-page">
  <div class="txm-row">{{ embed(roots['txm-header']) }}{{ embed(roots['progress']) }}</div>
  <div class="txm-row">{{ embed(roots['txm-valence-map']) }}
    {{ embed(roots['txm-differential-map']) }}{{ embed(roots['health']) }}</div>
  <div class="txm-row">{{ embed(roots['txm-histograms']) }}
    {{ embed(roots['txm-delta-histograms']) }}</div>
  <div class="txm-row">{% for name in series_figures %}{{ embed(roots[name]) }}{% endfor %}</div>
  <div class="txm-row">{{ embed(roots['txm-temperature']) }}</div>
</div>
{% endblock %}
"""

#: Browser-side: when the websocket is lost, poll the page until the server answers,
#: then reload (a restarted monitor gets a fresh session; nothing to click).
_RECONNECT_JS = """
if (window.__txm_reconnecting) { return; }
window.__txm_reconnecting = true;
const banner = document.createElement('div');
banner.id = 'txm-reconnecting';
banner.textContent = 'Connection to the monitor lost; reconnecting...';
banner.style.cssText = 'position:fixed;top:0;left:0;right:0;padding:6px;' +
    'background:#b00020;color:white;font:14px sans-serif;z-index:1000';
document.body.appendChild(banner);
const retry = () => {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 3000);
  fetch(window.location.href, {cache: 'no-store', signal: abort.signal})
    .then((r) => {
      clearTimeout(timer);
      if (r.ok) { window.location.reload(); } else { setTimeout(retry, 1000); }
    })
    .catch(() => { clearTimeout(timer); setTimeout(retry, 1000); });
};
setTimeout(retry, 1000);
"""


def _fit_range(rng: Range1d, values: list[float]) -> None:
    """Set ``rng`` to hold ``values``, changing it rarely (each change re-lays out axes).

    The range is left alone while it holds every value with a margin and is not more
    than three times wider than needed. Values that grew past the top move the top alone,
    with room for a quarter of the span more (times and temperatures grow during an
    experiment); otherwise the range becomes the values padded by 10 %.
    """
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return
    lo, hi = min(finite), max(finite)
    single = hi - lo < 1e-9
    if single:
        half = max(abs(lo) * 0.01, 0.5)
        lo, hi = lo - half, hi + half
    span = hi - lo
    start, end = rng.start, rng.end
    pad = 0.1 * span
    if not single and isinstance(start, int | float) and isinstance(end, int | float) \
            and end > start:
        margin = 0.04 * span
        if end - start <= 3.0 * span and start <= lo - margin:
            if end >= hi + margin:
                return
            rng.end = hi + 0.25 * span  # grew at the top only: move the end alone
            return
    rng.update(start=lo - pad, end=hi + pad)


def _ends(values: Any) -> list[float]:
    """The smallest and largest finite value (none if there are none)."""
    finite = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return [min(finite), max(finite)] if finite else []


def _pixels() -> Metric:
    return Metric(base_unit="px", include=["px"])


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:{spec}}{unit}"


def _percentiles(values: np.ndarray, lo: float, hi: float) -> tuple[float, float] | None:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    a, b = np.percentile(finite, [lo, hi])
    return float(a), float(b)


def _temperature_colour(temperature: float | None, lo: float, hi: float) -> str:
    if temperature is None:
        return "#808080"
    span = max(hi - lo, 1.0)
    index = int(round((temperature - lo) / span * 0.9 * 255))
    return Plasma256[min(255, max(0, index))]


def _ridgelines(records: list[SweepRecord], which: str, default_edges: np.ndarray,
                lo_t: float, hi_t: float) -> tuple[dict[str, list], tuple[float, float]]:
    """Patches (one per sweep) stacked by sweep order: the histogram evolution.

    Each sweep's density is drawn over its own bin edges (a publisher's histograms may
    differ from the monitor's own).  The sweep labels (at most 12 shown) are columns of
    the same data, drawn by a LabelSet: one data change per update, no axis re-layout.
    """
    edges_attr = "valence_edges" if which == "valence_density" else "delta_edges"
    chosen = []
    for r in records:
        density = getattr(r, which)
        if density is None:
            continue
        edges = getattr(r, edges_attr)
        edges = default_edges if edges is None else edges
        if len(edges) == len(density) + 1:
            chosen.append((r, density, edges))
    peak = max((float(d.max()) for _, d, _ in chosen if d.size), default=0.0)
    scale = 1.2 / peak if peak > 0 else 1.0
    data: dict[str, list] = {"xs": [], "ys": [], "color": [], "label": [], "mean": [],
                             "tick_label": [], "ly": []}
    lo_x, hi_x = math.inf, -math.inf
    for offset, (record, density, edges) in enumerate(chosen):
        centres = 0.5 * (edges[:-1] + edges[1:])
        used = np.flatnonzero(density > 0)
        if used.size:
            lo_x = min(lo_x, float(edges[used[0]]))
            hi_x = max(hi_x, float(edges[used[-1] + 1]))
        xs = np.concatenate([[centres[0]], centres, [centres[-1]]])
        ys = offset + np.concatenate([[0.0], density * scale, [0.0]])
        data["xs"].append(xs)
        data["ys"].append(ys)
        data["color"].append(_temperature_colour(record.temperature_c, lo_t, hi_t))
        label = record.label
        if which == "delta_density" and record.against_sweep is not None:
            label += f" − sweep {record.against_sweep}"
        data["label"].append(label)
        mean = record.mean_valence if which == "valence_density" else record.mean_delta_valence
        data["mean"].append(_fmt(mean, ".3f"))
        data["tick_label"].append(label if len(chosen) <= 12 or offset % max(
            1, len(chosen) // 12) == 0 else "")
        data["ly"].append(float(offset))
    if lo_x < hi_x:
        x_span = (lo_x, hi_x)
    else:
        x_span = (float(default_edges[0]), float(default_edges[-1]))
    return data, x_span


@dataclass
class _SeriesInputs:
    """What the secondary panels are drawn from (one snapshot of the sweeps)."""

    records: list[SweepRecord]
    lo_t: float
    hi_t: float
    data: dict[str, list]

    @classmethod
    def of(cls, records: list[SweepRecord], origin: float | None) -> _SeriesInputs:
        temps = [r.temperature_c for r in records if r.temperature_c is not None]
        lo_t, hi_t = (min(temps), max(temps)) if temps else (25.0, 250.0)
        if hi_t - lo_t < 1.0:
            hi_t = lo_t + 1.0
        nan = float("nan")

        def val(v: float | None) -> float:
            return nan if v is None else v

        data = {
            "temperature_c": [val(r.temperature_c) for r in records],
            "time_min": [nan if r.time_s is None or origin is None
                         else (r.time_s - origin) / 60.0 for r in records],
            "valence": [val(r.mean_valence) for r in records],
            "edge_ev": [val(r.mean_edge_energy_ev) for r in records],
            "whiteline_ev": [val(r.mean_whiteline_energy_ev) for r in records],
            "label": [r.label for r in records],
        }
        return cls(records=records, lo_t=lo_t, hi_t=hi_t, data=data)


class MonitorView:
    """The widgets of one browser session.

    Parameters
    ----------
    doc : bokeh.document.Document
        The session's document.
    state : MonitorState
        Shared state fed by the receiver threads.
    """

    def __init__(self, doc: Document, state: MonitorState) -> None:
        self.doc = doc
        self.state = state
        self._maps_version = -1
        self._series_version = -1
        self._sweeps_version = -1
        self._data_version = -1
        self._trace_epoch = -1
        self._trace_sent = 0
        self._pending = threading.Event()
        self._pending_series = threading.Event()
        self._shape: tuple[int, int] | None = None
        self._maps_pushed_at = -math.inf
        self._refreshes = 0
        self._trickling = False
        self._steps: list[Any] = []
        self._build()
        self._listener = self._on_state_change
        state.add_listener(self._listener)
        doc.add_periodic_callback(self.refresh, PUSH_PERIOD_MS)
        doc.on_session_destroyed(self._on_destroyed)
        doc.js_on_event("connection_lost", CustomJS(code=_RECONNECT_JS))
        doc.config.reconnect_session = False
        doc.config.notify_connection_status = False
        doc.title = "thermoxanes monitor"
        self._built = False
        self.refresh()
        self._built = True

    # -- building -----------------------------------------------------------------------
    def _map_figure(self, title: str, name: str) -> Any:
        fig = figure(title=title, name=name, tools=_TOOLS, match_aspect=True,
                     frame_width=MAP_WIDTH_PX, frame_height=MAP_WIDTH_PX,
                     x_range=Range1d(0, 1), y_range=Range1d(1, 0),
                     toolbar_location="right", css_classes=[name])
        fig.axis.visible = False
        fig.grid.visible = False
        fig.background_fill_color = "#f4f4f4"
        return fig

    def _build(self) -> None:
        # "image": the display map coloured in the monitor (RGBA), "value": its numbers
        # (for hover); the browser only draws, it never colour-maps
        # until the first map: a clear 2x2 image, so that the browser has set up (and
        # compiled) the image path before it matters
        empty_image = _placeholder_image()
        # latest valence map
        self.valence_source = ColumnDataSource(dict(empty_image), name="valence_source")
        # the colour bars' mappers: the same palettes and ranges the monitor colours with
        self.valence_mapper = LinearColorMapper(palette=list(VALENCE_PALETTE), low=2.0,
                                                high=4.0, nan_color=(0, 0, 0, 0))
        self.valence_fig = self._map_figure("Ni valence: waiting for a map update",
                                            "txm-valence-map")
        self.valence_fig.image_rgba(image="image", x="x", y="y", dw="dw", dh="dh",
                                    source=self.valence_source)
        self.valence_fig.add_layout(ColorBar(color_mapper=self.valence_mapper,
                                             title="Ni valence", width=12), "right")
        self.valence_fig.add_tools(HoverTool(tooltips=[("valence", "@value{0.000}")]))
        # in pixels until a map with a pixel size arrives (no model change for the first
        # map without one)
        self.valence_scale = ScaleBar(range=self.valence_fig.x_range, location="bottom_left",
                                      bar_length=0.25, background_fill_alpha=0.6, unit="px",
                                      dimensional=_pixels())
        self.valence_fig.add_layout(self.valence_scale)
        # differential map with significant pixels outlined
        self.diff_source = ColumnDataSource(_placeholder_image(), name="differential_source")
        self.diff_mapper = LinearColorMapper(palette=list(DIFFERENTIAL_PALETTE), low=-0.1,
                                             high=0.1, nan_color=(0, 0, 0, 0))
        self.diff_fig = self._map_figure("Differential: from the second sweep on",
                                         "txm-differential-map")
        self.diff_fig.image_rgba(image="image", x="x", y="y", dw="dw", dh="dh",
                                 source=self.diff_source)
        self.diff_fig.add_layout(ColorBar(color_mapper=self.diff_mapper, title="Δ valence",
                                          width=12), "right")
        self.diff_fig.add_tools(HoverTool(tooltips=[("Δ valence", "@value{+0.000}")]))
        self.sig_source = ColumnDataSource({"xs": [], "ys": []}, name="significant_source")
        self.diff_fig.multi_line(xs="xs", ys="ys", source=self.sig_source, line_color="black",
                                 line_width=1.2, legend_label="|z| > 3")
        self.diff_fig.legend.location = "top_right"
        self.diff_fig.legend.background_fill_alpha = 0.6
        self.diff_scale = ScaleBar(range=self.diff_fig.x_range, location="bottom_left",
                                   bar_length=0.25, background_fill_alpha=0.6, unit="px",
                                   dimensional=_pixels())
        self.diff_fig.add_layout(self.diff_scale)
        # status panels (fixed sizes, each its own root: a text change lays out only it)
        self.progress_div = Div(text="", width=900, height=60, name="progress",
                                css_classes=["txm-progress"])
        self.health_div = Div(text="", width=330, height=400, name="health",
                              css_classes=["txm-health"])
        # histogram evolution and differential histograms (ridgelines)
        self.temperature_mapper = LinearColorMapper(palette=Plasma256[:231], low=25, high=250)
        ridge_columns = ("xs", "ys", "color", "label", "mean", "tick_label", "ly")
        self.hist_source = ColumnDataSource({k: [] for k in ridge_columns},
                                            name="histogram_source")
        self.hist_fig = figure(title="Valence histograms by sweep", tools=_TOOLS, width=560,
                               height=360, x_axis_label="Ni valence", name="txm-histograms",
                               x_range=Range1d(2.0, 4.0), css_classes=["txm-histograms"])
        self.delta_source = ColumnDataSource({k: [] for k in ridge_columns},
                                             name="delta_histogram_source")
        self.delta_fig = figure(title="Differential histograms (against the previous sweep)",
                                tools=_TOOLS, width=560, height=360,
                                x_axis_label="Δ valence", name="txm-delta-histograms",
                                x_range=Range1d(-0.5, 0.5),
                                css_classes=["txm-delta-histograms"])
        for fig, source, what in ((self.hist_fig, self.hist_source, "mean valence"),
                                  (self.delta_fig, self.delta_source, "mean Δ")):
            renderer = fig.patches(xs="xs", ys="ys", source=source, fill_color="color",
                                   fill_alpha=0.55, line_color="color", line_width=1.5)
            fig.add_tools(HoverTool(renderers=[renderer],
                                    tooltips=[("", "@label"), (what, "@mean")]))
            fig.add_layout(ColorBar(color_mapper=self.temperature_mapper, title="°C",
                                    width=10), "right")
            # the sweeps are labelled inside the frame (no y axis to re-lay out)
            fig.add_layout(LabelSet(x=4, y="ly", x_units="screen", y_offset=3,
                                    text="tick_label", source=source,
                                    text_font_size="10px", text_color="#333333"))
            fig.yaxis.visible = False
            fig.ygrid.visible = False
        self.delta_fig.add_layout(Span(location=0.0, dimension="height", line_color="black",
                                       line_dash="dashed"))
        # series: mean valence / edge energy against temperature and time
        self.series_source = ColumnDataSource(
            {"temperature_c": [], "time_min": [], "valence": [], "edge_ev": [],
             "whiteline_ev": [], "label": []}, name="series_source")
        hover = [("", "@label"), ("T", "@temperature_c{0.0} °C"),
                 ("valence", "@valence{0.000}"), ("edge", "@edge_ev{0.00} eV")]
        self.series_figs = []
        self.series_fig_sources: list[ColumnDataSource] = []
        for y, ylabel, x, xlabel in (
                ("valence", "mean Ni valence", "temperature_c", "temperature (°C)"),
                ("edge_ev", "mean edge energy (eV)", "temperature_c", "temperature (°C)"),
                ("valence", "mean Ni valence", "time_min", "time (min)"),
                ("edge_ev", "mean edge energy (eV)", "time_min", "time (min)")):
            # explicit ranges that grow in steps (_fit_range): a new point inside them
            # repaints the glyphs only, no axis re-layout (auto-ranging re-ran it for
            # every point, the largest cost of an update in the browser)
            fig = figure(width=280, height=240, tools=_TOOLS, x_axis_label=xlabel,
                         y_axis_label=ylabel, name=f"txm-{y}-vs-{x}",
                         x_range=Range1d(0, 1), y_range=Range1d(0, 1), tags=[x, y])
            # a source per figure: the figures are updated one at a time (_series_steps)
            source = ColumnDataSource({k: [] for k in self.series_source.data},
                                      name=f"series_source-{y}-vs-{x}")
            fig.line(x=x, y=y, source=source, color="#1f77b4")
            fig.scatter(x=x, y=y, source=source, size=7, color="#1f77b4")
            self.series_fig_sources.append(source)
            fig.add_tools(HoverTool(tooltips=hover))
            self.series_figs.append(fig)
        # temperature trace with the sweeps marked
        self.trace_source = ColumnDataSource({"time_min": [], "temperature_c": []},
                                             name="trace_source")
        self.trace_fig = figure(title="Temperature", width=1140, height=240, tools=_TOOLS,
                                x_axis_label="time (min)", y_axis_label="heater (°C)",
                                name="txm-temperature", x_range=Range1d(0, 1),
                                y_range=Range1d(0, 1))
        self.trace_fig.line(x="time_min", y="temperature_c", source=self.trace_source,
                            color="#d62728", line_width=1.5)
        self.trace_fig.scatter(x="time_min", y="temperature_c", source=self.series_source,
                               size=9, marker="diamond", color="black",
                               legend_label="fitted sweeps")
        self.trace_fig.legend.location = "top_left"
        self.header_div = Div(text="<h2 style='margin:4px 0'>thermoxanes live monitor</h2>",
                              width=300, height=60)
        self.header_div.name = "txm-header"
        # Every panel is a root of its own, placed by the page template: a change in one
        # (a status text, a title, a colour range) re-runs only that panel's layout in
        # the browser, never the whole page's (which repainted every plot).
        for model in (self.header_div, self.progress_div, self.valence_fig, self.diff_fig,
                      self.health_div, self.hist_fig, self.delta_fig, *self.series_figs,
                      self.trace_fig):
            self.doc.add_root(model)
        self.doc.template = PAGE_TEMPLATE
        self.doc.template_variables["series_figures"] = [f.name for f in self.series_figs]

    # -- updates ------------------------------------------------------------------------
    def _on_state_change(self, part: str) -> None:
        """Called from a receiver thread: schedule a push (at most one of each pending)."""
        if part == "maps":
            flag, callback = self._pending, self._refresh_from_push
        elif part == "series":
            flag, callback = self._pending_series, self._schedule_series
        else:
            return  # documents: the periodic refresh takes them
        if flag.is_set():
            return
        flag.set()
        try:
            self.doc.add_next_tick_callback(callback)
        except Exception:  # noqa: BLE001 - the session may be closing
            flag.clear()

    def _schedule_series(self) -> None:
        # a moment after the maps, so the browser paints the map first
        self._pending_series.clear()
        if not self._trickling:
            self._trickling = True
            self.doc.add_timeout_callback(self._series_step, SECONDARY_DELAY_MS)

    def _series_step(self) -> None:
        """Update the next secondary panel; then schedule the one after it.

        Histograms, series and sweep markers are updated one panel per step,
        ``SECONDARY_STEP_MS`` apart: each redraw is a separate, short piece of work in the
        browser, so a map update arriving meanwhile waits behind one panel at most (all
        of them at once kept a loaded browser busy for a second or more).
        """
        if not self._steps:
            with self.state.lock:
                version = self.state.series_version
            if version == self._series_version:
                self._trickling = False
                return
            self._series_version = version
            self._steps = list(self._series_steps())
            if not self._steps:
                self._trickling = False
                return
        quiet = MAP_QUIET_S - (time.monotonic() - self._maps_pushed_at)
        if quiet > 0:  # new maps on their way: let the browser draw them first
            self.doc.add_timeout_callback(self._series_step, int(quiet * 1000) + 1)
            return
        step = self._steps.pop(0)
        with self.state.lock:
            records = list(self.state.sweeps)
            origin = self.state.time_origin_s
        step(_SeriesInputs.of(records, origin))
        self.doc.add_timeout_callback(self._series_step, SECONDARY_STEP_MS)

    def _refresh_from_push(self) -> None:
        # the maps first, on their own: the browser paints them before it has to redo
        # histograms and series, which follow a moment later
        self._pending.clear()
        with self.state.lock:
            maps_version = self.state.maps_version
            maps = self.state.maps
        if maps is not None and maps_version != self._maps_version:
            self._push_maps(maps_version, maps)

    def _push_maps(self, version: int, maps: DisplayMaps) -> None:
        self._maps_version = version
        self._maps_pushed_at = time.monotonic()
        self._update_maps(maps)

    def _on_destroyed(self, _context: Any) -> None:
        self.state.remove_listener(self._listener)

    def refresh(self) -> None:
        """Bring the widgets up to date with the state (runs on the session's loop)."""
        state = self.state
        with state.lock:
            maps_version = state.maps_version
            maps = state.maps
            series_version = state.series_version
            records = list(state.sweeps)
            data_version = state.data_version
            origin = state.time_origin_s
            epoch = state.trace_epoch
            trace_t = state.trace_time_s[self._trace_sent:] if epoch == self._trace_epoch \
                else list(state.trace_time_s)
            trace_c = state.trace_temperature_c[self._trace_sent:] \
                if epoch == self._trace_epoch else list(state.trace_temperature_c)
            trace_total = len(state.trace_time_s)
            progress = vars(state.progress).copy()
            fraction = state.progress.fraction
        if maps is not None and maps_version != self._maps_version:
            self._push_maps(maps_version, maps)
        if self._built and time.monotonic() - self._maps_pushed_at < MAP_QUIET_S:
            return  # the browser is drawing new maps: the rest waits for the next period
        # histograms and series: all at once only while the page is built; later one
        # panel at a time after the maps (_series_step)
        if series_version != self._series_version and not self._built:
            self._series_version = series_version
            self._update_series(records, origin)
        elif series_version != self._series_version and not self._trickling:
            self._trickling = True  # a change whose notification was missed
            self.doc.add_timeout_callback(self._series_step, SECONDARY_DELAY_MS)
        if epoch != self._trace_epoch:
            self._trace_epoch = epoch
            self.trace_source.data = self._trace_data(trace_t, trace_c, origin)
            self._fit_trace_ranges()
        elif trace_t:
            self.trace_source.stream(self._trace_data(trace_t, trace_c, origin))
            self._fit_trace_ranges()
        self._trace_sent = trace_total
        # status texts age (silence, rates): progress every period, health every other;
        # Bokeh sends only what changed
        self._data_version = data_version
        self.progress_div.text = self._progress_html(progress, fraction)
        self._refreshes += 1
        if self._refreshes % HEALTH_EVERY == 1 or HEALTH_EVERY == 1:
            self.health_div.text = self._health_html()

    def _fit_trace_ranges(self) -> None:
        """The trace's ranges hold the trace and the fitted sweeps' markers."""
        trace = self.trace_source.data
        marks = self.series_source.data
        _fit_range(self.trace_fig.x_range, [*_ends(trace["time_min"]),
                                            *_ends(marks["time_min"])])
        _fit_range(self.trace_fig.y_range, [*_ends(trace["temperature_c"]),
                                            *_ends(marks["temperature_c"])])

    @staticmethod
    def _trace_data(times: list[float], temps: list[float], origin: float | None) -> dict:
        origin = origin if origin is not None else (times[0] if times else 0.0)
        return {"time_min": [(t - origin) / 60.0 for t in times], "temperature_c": list(temps)}

    def _set_extent(self, maps: DisplayMaps) -> tuple[float, float]:
        width, height = maps.extent
        h, w = maps.shape
        if self._shape != (h, w) or self.valence_fig.x_range.end != width:
            self._shape = (h, w)
            for fig, bar in ((self.valence_fig, self.valence_scale),
                             (self.diff_fig, self.diff_scale)):
                fig.x_range.update(start=0, end=width)
                fig.y_range.update(start=height, end=0)
                fig.frame_height = max(120, int(round(MAP_WIDTH_PX * h / w)))
                in_um = bool(maps.pixel_size_um)
                if in_um != (bar.unit == "µm"):
                    bar.update(unit="µm" if in_um else "px",
                               dimensional=MetricLength() if in_um else _pixels())
        return width, height

    def _update_maps(self, maps: DisplayMaps) -> None:
        """Push the new maps: everything was computed once in the state, for all views.

        The image data go first (one event per map), so the browser draws them before
        it re-renders colour bars and titles.
        """
        width, height = self._set_extent(maps)
        header = maps.header
        temp = header.get("temperature_c")
        sweep = f"sweep {maps.sweep_index}" if maps.sweep_index is not None else "latest sweep"
        temp_text = f", {temp:.0f} °C" if isinstance(temp, int | float) else ""
        # flipped y range: row 0 at the top, as in the PNG figures
        index = -1 if maps.sweep_index is None else maps.sweep_index
        self.valence_source.data = {"image": [maps.valence_rgba], "value": [maps.valence],
                                    "sweep": [index], "x": [0.0], "y": [0.0],
                                    "dw": [width], "dh": [height]}
        if maps.valence_span is not None:
            self.valence_mapper.update(low=maps.valence_span[0], high=maps.valence_span[1])
        self.valence_fig.title.text = f"Ni valence, {sweep}{temp_text}"
        if maps.differential is None:
            self.diff_source.data = _placeholder_image(width, height)
            self.sig_source.data = {"xs": [], "ys": []}
            self.diff_fig.title.text = f"Differential: none yet ({sweep} is the first)"
            return
        self.diff_source.data = {"image": [maps.differential_rgba],
                                 "value": [maps.differential], "sweep": [index],
                                 "x": [0.0], "y": [0.0], "dw": [width], "dh": [height]}
        self.sig_source.data = maps.outline
        bound = maps.differential_bound
        self.diff_mapper.update(low=-bound, high=bound)
        against = f" − sweep {maps.against_sweep}" if maps.against_sweep is not None else ""
        self.diff_fig.title.text = (f"Δ valence, {sweep}{against}: "
                                    f"{maps.n_significant} px with |z| > 3")

    def _update_series(self, records: list[SweepRecord], origin: float | None) -> None:
        """Every secondary panel at once (building the page)."""
        inputs = _SeriesInputs.of(records, origin)
        for step in self._series_steps():
            step(inputs)

    def _series_steps(self) -> list[Any]:
        """The secondary panels' updates, each a callable taking :class:`_SeriesInputs`."""
        config = self.state.config

        def ridgelines(fig: Any, source: ColumnDataSource, which: str, edges: np.ndarray,
                       inputs: _SeriesInputs) -> None:
            if which == "valence_density":
                self.temperature_mapper.update(low=inputs.lo_t, high=inputs.hi_t)
            data, x_span = _ridgelines(inputs.records, which, edges, inputs.lo_t,
                                       inputs.hi_t)
            if which == "delta_density":  # symmetric about no change
                bound = max(abs(x_span[0]), abs(x_span[1]))
                x_span = (-bound, bound)
            _fit_range(fig.x_range, list(x_span))
            source.data = data

        def series(fig: Any, source: ColumnDataSource, inputs: _SeriesInputs) -> None:
            x, y = fig.tags
            _fit_range(fig.x_range, inputs.data[x])
            _fit_range(fig.y_range, inputs.data[y])
            source.data = dict(inputs.data)

        def markers(inputs: _SeriesInputs) -> None:
            self.series_source.data = dict(inputs.data)
            self._fit_trace_ranges()

        steps: list[Any] = [
            lambda i: ridgelines(self.hist_fig, self.hist_source, "valence_density",
                                 config.valence_edges, i),
            lambda i: ridgelines(self.delta_fig, self.delta_source, "delta_density",
                                 config.delta_edges, i),
        ]
        for fig, source in zip(self.series_figs, self.series_fig_sources, strict=True):
            steps.append(lambda i, fig=fig, source=source: series(fig, source, i))
        steps.append(markers)
        return steps

    @staticmethod
    def _progress_html(progress: dict[str, Any], fraction: float | None) -> str:
        rows = []
        if progress["sweep_index"] is not None:
            total = progress["num_sweeps"]
            rows.append(("Sweep", f"{progress['sweep_index'] + 1}"
                         + (f" of {total}" if total else "")))
        elif progress["plan_name"] is not None:  # a run of the plan that is not a sweep
            rows.append(("Run", html.escape(progress["plan_name"])))
            if progress["sweeps_done"] is not None and progress["num_sweeps"]:
                rows.append(("Sweeps done", f"{progress['sweeps_done']} of "
                             f"{progress['num_sweeps']}"))
        elif progress["run_uid"] is not None:
            rows.append(("Run", html.escape(str(progress["run_uid"])[:8])))
        if progress["n_energies"]:
            rows.append(("Energy", f"{min(progress['n_primary'], progress['n_energies'])} of "
                         f"{progress['n_energies']}"
                         + (f" ({progress['energy_ev']:.1f} eV)"
                            if progress["energy_ev"] is not None else "")))
        if progress["setpoint_c"] is not None:
            rows.append(("Setpoint", f"{progress['setpoint_c']:.0f} °C"))
        if progress["temperature_c"] is not None:
            rows.append(("Heater", f"{progress['temperature_c']:.1f} °C"))
        what = "sweep" if progress["sweep_index"] is not None else "run"
        state = ("running" if progress["run_open"] else
                 (f"{what} ended ({html.escape(progress['exit_status'])})"
                  if progress["exit_status"] else "no run yet"))
        rows.append(("State", state))
        bar = ""
        if fraction is not None:
            bar = (f"<progress id='txm-plan-progress' max='1' value='{fraction:.4f}' "
                   f"style='width:300px;vertical-align:middle'></progress> "
                   f"{100 * fraction:.0f} % of the plan")
        body = " &nbsp;·&nbsp; ".join(f"{k} <b>{v}</b>" for k, v in rows)
        return (f"<div style='font-size:15px;margin-top:6px'>{body}</div>"
                f"<div style='margin-top:4px'>{bar}</div>")

    def _health_html(self) -> str:
        now = time.time()
        with self.state.lock:
            records = list(self.state.sweeps)
        analysis_lag = next((r.analysis_lag_s for r in reversed(records)
                             if r.analysis_lag_s is not None), None)
        cells = []
        for name, health, alive in self.state.health_rows(now):
            last, worst = health.lag_summary(now=now)
            status = ("<span style='color:#2a2'>live</span>" if alive else
                      "<span style='color:#c22'>no messages</span>" if health.last_rx is None
                      else f"<span style='color:#c22'>silent {now - health.last_rx:.0f} s</span>")
            lines = [
                ("status", status),
                ("messages", f"{health.messages}"),
                ("gaps (missed)", f"{health.gaps} ({health.missed})"),
                ("dropped at publisher", f"{health.publisher_dropped}"),
                ("lag now / max 10 s", f"{_fmt(last, '.3f', ' s')} / {_fmt(worst, '.3f', ' s')}"),
            ]
            if name == "data":
                lines.insert(1, ("frames/s", _fmt(health.frame_rate_hz, ".1f")))
                lines.insert(2, ("events/s", _fmt(health.event_rate_hz, ".1f")))
            else:
                lines.append(("sweep end → map", _fmt(analysis_lag, ".2f", " s")))
            if health.restarts:
                lines.append(("publisher restarts", f"{health.restarts}"))
            body = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in lines)
            title = "map updates" if name == "maps" else "acquisition"
            endpoint = html.escape(health.endpoint or "not subscribed")
            cells.append(f"<div><b>{title}</b> <small>{endpoint}</small><table>{body}</table>"
                         "</div>")
        return "<h3 style='margin:2px 0'>Stream health</h3>" + "".join(cells)


def make_document(state: MonitorState):
    """A Bokeh application function building a :class:`MonitorView` per session."""

    def modify(doc: Document) -> None:
        MonitorView(doc, state)

    return modify
