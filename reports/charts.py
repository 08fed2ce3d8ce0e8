"""Inline SVG charts drawn with matplotlib (no hand-written SVG, no files, no network).

A chart is first a plain description of what it plots (`LineChart`, `BarChart`); `key` hashes that, so a
drawn chart can be cached by content (reports/render_cache.py) and drawn again only when its data changes.
Drawing is deterministic: the same description gives the same SVG bytes.
"""

from __future__ import annotations

import hashlib
import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, cached_property

# Bump when the drawing code changes what a chart looks like: every cached chart is then drawn again.
DRAWING_VERSION = 3

# Fixed margins (inches) instead of bbox_inches="tight": a tight bounding box draws every chart twice.
_LEFT, _RIGHT, _TOP, _BOTTOM = 0.85, 0.2, 0.35, 0.5
_LABEL_CHAR_WIDTH = 0.5 / 72  # inches per point of font size, per character: DejaVu Sans, generously
_BAR_LABEL_SIZE = 7


@dataclass(frozen=True)
class Series:
    label: str
    x: Sequence[float]
    y: Sequence[float]
    element_id: str = ""  # the line's id in the SVG, so pages and tests can find it; none when empty


@dataclass(frozen=True)
class LineChart:
    """One line per series, x against y."""

    series: tuple[Series, ...]
    title: str
    xlabel: str
    ylabel: str
    logy: bool = False

    @cached_property
    def key(self) -> str:
        """A hash of everything the chart shows, and of the drawing code's version."""
        digest = _digest("line", self.title, self.xlabel, self.ylabel, self.logy)
        for s in self.series:
            _add(digest, s.label, s.element_id)
            _add_floats(digest, s.x)
            _add_floats(digest, s.y)
        return digest.hexdigest()

    def draw(self) -> str:
        return _draw_lines(self)


@dataclass(frozen=True)
class BarChart:
    """Horizontal bars (one per label), optionally with reference markers (e.g. the base model)."""

    labels: tuple[str, ...]
    values: tuple[float, ...]
    title: str
    xlabel: str
    reference: tuple[float, ...] | None = None
    reference_label: str = "base"

    @cached_property
    def key(self) -> str:
        """A hash of everything the chart shows, and of the drawing code's version."""
        digest = _digest("bar", tuple(self.labels), self.title, self.xlabel, self.reference_label,
                         self.reference is None)
        _add_floats(digest, self.values)
        _add_floats(digest, self.reference or ())
        return digest.hexdigest()

    def draw(self) -> str:
        return _draw_bars(self)


Chart = LineChart | BarChart


@cache
def _matplotlib_version() -> str:
    # From the package metadata: computing a key must not import matplotlib (seconds of a report's budget).
    from importlib.metadata import version

    return version("matplotlib")


def _digest(kind: str, *texts: object):
    """A sha256 started with the chart's kind, the drawing code's version and `texts` (str, bool, None)."""
    digest = hashlib.sha256()
    _add(digest, kind, DRAWING_VERSION, _matplotlib_version(), *texts)
    return digest


def _add(digest, *texts: object) -> None:
    digest.update(repr(texts).encode())


def _add_floats(digest, values: Sequence[float]) -> None:
    # Packed as little-endian doubles, length first: exact, the same on every machine, and 3 hashes as 3.0
    # (steps are ints); twenty times faster than their repr on a thousand charts.
    digest.update(struct.pack(f"<q{len(values)}d", len(values), *values))


def _svg(figure) -> str:
    buffer = io.StringIO()
    # No date in the metadata: the same chart gives the same bytes.
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    # Drop the XML prologue and DOCTYPE: the SVG goes inline into an HTML page.
    return text[text.index("<svg"):]


def _figure(width: float, height: float, left: float = _LEFT):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    # Deterministic output: the same data gives the same SVG bytes.
    matplotlib.rcParams["svg.hashsalt"] = "tunelab"
    matplotlib.rcParams["svg.fonttype"] = "none"
    # The font text is measured with; the browser falls back to its sans-serif. Every label of every chart
    # repeats this list, so the default's dozen fallbacks cost a sixth of a bar chart's bytes.
    matplotlib.rcParams["font.sans-serif"] = ["DejaVu Sans"]
    # A plain hyphen for negative ticks: the typographic minus is the only non-ASCII character of a chart.
    matplotlib.rcParams["axes.unicode_minus"] = False
    figure = Figure(figsize=(width, height), dpi=100)
    figure.subplots_adjust(left=left / width, right=1 - _RIGHT / width, top=1 - _TOP / height,
                           bottom=_BOTTOM / height)
    return figure, figure.add_subplot()


def _title(axes, title: str) -> None:
    # An explicit y keeps matplotlib from measuring every tick label to place the title.
    axes.set_title(title, y=1.0, pad=6)


def _draw_lines(chart: LineChart) -> str:
    figure, axes = _figure(5.9, 3.0)  # two side by side on a page 1200 px wide
    drawable = [s for s in chart.series if len(s.x) > 0]
    for s in drawable:
        axes.plot(list(s.x), list(s.y), label=s.label, linewidth=1.4, gid=s.element_id or None)
    _title(axes, chart.title)
    axes.set_xlabel(chart.xlabel)
    axes.set_ylabel(chart.ylabel)
    if chart.logy:
        axes.set_yscale("log")
    axes.grid(alpha=0.3)
    if len(drawable) > 1:
        # A fixed place: "best" tries every position against every point, a third of the chart's time.
        axes.legend(loc="upper right")
    return _svg(figure)


def _draw_bars(chart: BarChart) -> str:
    labels = [label.replace("_", " ") for label in chart.labels]
    height = max(2.5, 0.18 * len(labels) + 1.0)
    longest = max(len(label) for label in labels)
    figure, axes = _figure(6.4, height, left=0.25 + longest * _BAR_LABEL_SIZE * _LABEL_CHAR_WIDTH)
    positions = list(range(len(labels)))
    axes.barh(positions, list(chart.values), color="#4c72b0", label="fine-tuned")
    if chart.reference is not None:
        axes.scatter(list(chart.reference), positions, color="#dd8452", marker="|", s=120,
                     label=chart.reference_label, zorder=3)
        axes.legend(loc="lower right")
    axes.set_yticks(positions, labels, fontsize=_BAR_LABEL_SIZE)
    axes.tick_params(axis="y", length=0)  # a label per bar says enough; the marks were a seventh of the SVG
    axes.set_ylim(len(labels) - 0.5, -0.5)  # first label on top
    axes.set_xlim(0, 1)
    axes.set_xlabel(chart.xlabel)
    _title(axes, chart.title)
    axes.grid(axis="x", alpha=0.3)
    return _svg(figure)


def line_chart(series: Sequence[Series], *, title: str, xlabel: str, ylabel: str, logy: bool = False) -> str | None:
    """One line per series; None when there is nothing to draw."""
    chart = line_spec(series, title=title, xlabel=xlabel, ylabel=ylabel, logy=logy)
    return chart.draw() if chart else None


def line_spec(series: Sequence[Series], *, title: str, xlabel: str, ylabel: str,
              logy: bool = False) -> LineChart | None:
    """The description of a line chart; None when no series has a point."""
    drawable = tuple(Series(s.label, tuple(s.x), tuple(s.y), s.element_id) for s in series if len(s.x) > 0)
    return LineChart(drawable, title, xlabel, ylabel, logy) if drawable else None


def bar_spec(labels: Sequence[str], values: Sequence[float], *, title: str, xlabel: str,
             reference: Sequence[float] | None = None, reference_label: str = "base") -> BarChart | None:
    """The description of a horizontal bar chart; None without labels."""
    if not labels:
        return None
    return BarChart(tuple(labels), tuple(values), title, xlabel,
                    tuple(reference) if reference is not None else None, reference_label)


def bar_chart(labels: Sequence[str], values: Sequence[float], *, title: str, xlabel: str,
              reference: Sequence[float] | None = None, reference_label: str = "base") -> str | None:
    """Horizontal bars (one per label), optionally with reference markers; None without labels."""
    chart = bar_spec(labels, values, title=title, xlabel=xlabel, reference=reference, reference_label=reference_label)
    return chart.draw() if chart else None
