"""Inline SVG charts drawn with matplotlib (no hand-written SVG, no files, no network)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Series:
    label: str
    x: Sequence[float]
    y: Sequence[float]


def _svg(figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    # Drop the XML prologue and DOCTYPE: the SVG goes inline into an HTML page.
    return text[text.index("<svg"):]


def _figure(width: float = 6.4, height: float = 3.0):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    # Deterministic output: the same data gives the same SVG bytes.
    matplotlib.rcParams["svg.hashsalt"] = "tunelab"
    matplotlib.rcParams["svg.fonttype"] = "none"
    figure = Figure(figsize=(width, height), dpi=100)
    return figure, figure.add_subplot()


def line_chart(series: Sequence[Series], *, title: str, xlabel: str, ylabel: str, logy: bool = False) -> str | None:
    """One line per series; None when there is nothing to draw."""
    drawable = [s for s in series if len(s.x) > 0]
    if not drawable:
        return None
    figure, axes = _figure()
    for s in drawable:
        axes.plot(list(s.x), list(s.y), label=s.label, linewidth=1.4)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    if logy:
        axes.set_yscale("log")
    axes.grid(alpha=0.3)
    if len(drawable) > 1:
        axes.legend()
    return _svg(figure)


def bar_chart(labels: Sequence[str], values: Sequence[float], *, title: str, xlabel: str,
              reference: Sequence[float] | None = None, reference_label: str = "base") -> str | None:
    """Horizontal bars (one per label), optionally with reference markers (e.g. the base model)."""
    if not labels:
        return None
    height = max(2.5, 0.18 * len(labels) + 1.0)
    figure, axes = _figure(width=6.4, height=height)
    positions = list(range(len(labels)))
    axes.barh(positions, list(values), color="#4c72b0", label="fine-tuned")
    if reference is not None:
        axes.scatter(list(reference), positions, color="#dd8452", marker="|", s=120, label=reference_label, zorder=3)
        axes.legend(loc="lower right")
    axes.set_yticks(positions, [label.replace("_", " ") for label in labels], fontsize=7)
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel(xlabel)
    axes.set_title(title)
    axes.grid(axis="x", alpha=0.3)
    return _svg(figure)
