"""Charts as data: what each chart plots, put into the page as JSON and drawn there by the browser.

Python prepares every point (the series of a line chart on one shared x axis, bars in display order, gaps as
null); reports/charts.js maps a chart to the options of uPlot, the chart library vendored in reports/vendor/uplot/
(its version and licence in the NOTICE there). Both scripts and uPlot's stylesheet are inlined into the pages that
have charts, so a page opens from disk with no network; drawing costs the report nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from markupsafe import Markup

# A line with at most this many points has each one marked; a longer one is drawn as a line alone.
MARK_POINTS_UP_TO = 30


@dataclass(frozen=True)
class Series:
    label: str
    x: Sequence[float]
    y: Sequence[float]


@dataclass(frozen=True)
class LineChart:
    """One line per series, x against y."""

    series: tuple[Series, ...]
    title: str
    xlabel: str
    ylabel: str
    logy: bool = False

    def payload(self) -> dict:
        """The chart as charts.js reads it: every series on the union of their x values, null where one has none."""
        xs = sorted({x for s in self.series for x in s.x})
        lines = []
        for s in self.series:
            # A step logged twice (the steps after a resumed checkpoint) shows its last value.
            by_x = dict(zip(s.x, s.y, strict=True))
            y = [_number(by_x.get(x)) for x in xs]
            # A series of a few points (validation loss, measured every so often) marks each one: a line alone
            # would not show a point that has no neighbour, such as the single end-of-training evaluation.
            points = sum(value is not None for value in y) <= MARK_POINTS_UP_TO
            lines.append({"label": s.label, "y": y, "points": points})
        return {"kind": "line", "title": self.title, "xlabel": self.xlabel, "ylabel": self.ylabel,
                "logy": self.logy, "x": [_number(x) for x in xs], "series": lines}


@dataclass(frozen=True)
class BarChart:
    """Horizontal bars (one per label, the first on top), optionally with reference markers (e.g. the base model)."""

    labels: tuple[str, ...]
    values: tuple[float, ...]
    title: str
    xlabel: str
    series_label: str = "fine-tuned"
    reference: tuple[float | None, ...] | None = None
    reference_label: str = "base"

    def payload(self) -> dict:
        series = [{"label": self.series_label, "values": [_number(v) for v in self.values]}]
        if self.reference is not None:
            series.append({"label": self.reference_label, "values": [_number(v) for v in self.reference],
                           "marker": True})
        return {"kind": "bars", "title": self.title, "xlabel": self.xlabel, "labels": list(self.labels),
                "series": series}


@dataclass(frozen=True)
class ScatterChart:
    """Points, x against y, no line: one point per run (a swept parameter against the objective). Text values of x
    are placed at 0, 1, ... in the order given and labelled with themselves."""

    x: tuple[float | str, ...]
    y: tuple[float | None, ...]
    labels: tuple[str, ...]  # each point's name, shown when the cursor is on it
    title: str
    xlabel: str
    ylabel: str

    def payload(self) -> dict:
        numeric = all(isinstance(value, int | float) and not isinstance(value, bool) for value in self.x)
        categories = [] if numeric else list(dict.fromkeys(str(value) for value in self.x))
        xs = [float(v) if numeric else float(categories.index(str(v))) for v in self.x]
        order = sorted(range(len(xs)), key=lambda i: xs[i])  # uPlot reads x in ascending order
        positive = numeric and xs and min(xs) > 0
        return {"kind": "scatter", "title": self.title, "xlabel": self.xlabel, "ylabel": self.ylabel,
                "x": [_number(xs[i]) for i in order], "y": [_number(self.y[i]) for i in order],
                "labels": [self.labels[i] for i in order], "categories": categories,
                "logx": bool(positive and max(xs) / min(xs) >= 100)}


Chart = LineChart | BarChart | ScatterChart


def _number(value: float | None) -> float | None:
    # JSON has no NaN or infinity: a missing or undefined value is a gap (null) in the chart.
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


def line_spec(series: Sequence[Series], *, title: str, xlabel: str, ylabel: str,
              logy: bool = False) -> LineChart | None:
    """A line chart of the series that have points; None when none has."""
    drawable = tuple(Series(s.label, tuple(s.x), tuple(s.y)) for s in series if len(s.x) > 0)
    return LineChart(drawable, title, xlabel, ylabel, logy) if drawable else None


def bar_spec(labels: Sequence[str], values: Sequence[float], *, title: str, xlabel: str,
             reference: Sequence[float | None] | None = None, reference_label: str = "base") -> BarChart | None:
    """A horizontal bar chart; None without labels."""
    if not labels:
        return None
    return BarChart(tuple(labels), tuple(values), title, xlabel,
                    reference=tuple(reference) if reference is not None else None, reference_label=reference_label)


def chart_payloads(charts: Mapping[str, Chart | None]) -> dict[str, dict]:
    """The page's charts by name, as JSON-ready data (charts that are None are left out)."""
    return {name: chart.payload() for name, chart in charts.items() if chart is not None}


@dataclass(frozen=True)
class ChartAssets:
    """What a page with charts inlines: uPlot's stylesheet and script, and charts.js."""

    css: Markup
    library: Markup
    script: Markup


@cache
def chart_assets() -> ChartAssets:
    """The vendored uPlot files and charts.js, read once per process."""
    here = files("tunelab.reports")
    vendor = here / "vendor" / "uplot"
    return ChartAssets(css=_inline(vendor / "uPlot.min.css", "style"), library=_inline(vendor / "uPlot.iife.min.js"),
                       script=_inline(here / "charts.js"))


def _inline(resource, element: str = "script") -> Markup:
    text = resource.read_text(encoding="utf-8")
    # Inlined as the body of a <script> or <style> element: its closing tag inside would end the element early.
    if f"</{element}" in text.lower():
        raise ValueError(f"{resource.name} contains </{element}: it cannot be inlined into a page")
    return Markup(text)
