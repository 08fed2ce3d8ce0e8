"""Charts as data: the points a page carries, JSON that is safe inside a script element, the vendored chart
library, and reports that render every page afresh (the same bytes, alone or in parallel)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tunelab.registry.recording import MetricPoint, record_metrics, record_scores
from tunelab.reports.charts import Series, bar_spec, chart_assets, chart_payloads, line_spec
from tunelab.reports.render import script_json, write_report

from tests.helpers import finished_run, scores
from tests.reports.parsing import chart_data, parse

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_line_series_share_one_x_axis_with_gaps_where_a_series_has_no_point():
    chart = line_spec([Series("training loss", [1, 2, 3, 3], [3.0, 2.0, 1.6, 1.5]),
                       Series("validation loss", [2, 4], [2.5, float("nan")]),
                       Series("empty", [], [])], title="Loss", xlabel="step", ylabel="loss")
    assert chart.payload() == {
        "kind": "line", "title": "Loss", "xlabel": "step", "ylabel": "loss", "logy": False, "x": [1, 2, 3, 4],
        "series": [{"label": "training loss", "y": [3.0, 2.0, 1.5, None], "points": True},  # a step logged twice:
                   # its last value; NaN is no JSON: a gap
                   {"label": "validation loss", "y": [None, 2.5, None, None], "points": True}]}
    assert line_spec([Series("none", [], [])], title="t", xlabel="x", ylabel="y") is None


def test_a_sparse_series_has_every_point_marked_a_long_one_is_a_line():
    # 100 training steps and one validation loss at the end: that point has no neighbour to draw a line to.
    chart = line_spec([Series("training loss", list(range(1, 101)), [1 / s for s in range(1, 101)]),
                       Series("validation loss", [100], [0.5])], title="Loss", xlabel="step", ylabel="loss")
    training, validation = chart.payload()["series"]
    assert (training["points"], validation["points"]) == (False, True)
    assert sum(v is not None for v in validation["y"]) == 1


def test_bars_keep_their_order_and_missing_references_are_gaps():
    chart = bar_spec(["anatomy", "virology"], [0.5, 0.25], title="MMLU", xlabel="accuracy", reference=[0.4, None])
    assert chart.payload()["labels"] == ["anatomy", "virology"]
    assert chart.payload()["series"] == [{"label": "fine-tuned", "values": [0.5, 0.25]},
                                         {"label": "base", "values": [0.4, None], "marker": True}]
    assert bar_spec([], [], title="MMLU", xlabel="accuracy") is None
    assert chart_payloads({"mmlu": chart, "lr": None}) == {"mmlu": chart.payload()}


def test_script_json_cannot_end_or_bend_its_script_element():
    value = {"label": "</script><script>alert(1)</script>", "comment": "<!-- <script>", "lines": "a\u2028b\u2029c",
             "amp": "&lt;", "quote": "\"'", "nested": ["</SCRIPT", "é"]}
    text = str(script_json(value))
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\u2028" not in text and "\u2029" not in text and text.isascii()
    assert json.loads(text) == value  # what JSON.parse reads back is the data, unchanged


def test_the_vendored_chart_library_is_the_version_its_notice_and_the_readme_name():
    vendor = REPO_ROOT / "reports" / "vendor" / "uplot"
    notice = (vendor / "NOTICE").read_text(encoding="utf-8")
    (version,) = set(re.findall(r"uPlot (\d+\.\d+\.\d+)", notice))
    assert chart_assets().library.startswith(f"/*! https://github.com/leeoniya/uPlot (v{version}) */")
    assert f"uplot@{version}" in notice and f"uPlot](https://github.com/leeoniya/uPlot) {version}" in (
        REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert (vendor / "LICENSE").read_text(encoding="utf-8").startswith("The MIT License")
    assert "</script" not in chart_assets().library.lower() + chart_assets().script.lower()


def add_run(registry, name: str, steps: int) -> int:
    run = finished_run(registry, name)
    record_metrics(registry, run, [MetricPoint(step=s, loss=2.0 / s, learning_rate=1e-3) for s in range(1, steps + 1)])
    record_scores(registry, run, scores("finetuned", f"run:{run}", {"arc_challenge": 0.4}))
    return run


def pages(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.glob("*.html"))}


def test_every_report_renders_every_page_afresh(registry, tmp_path):
    run = add_run(registry, "growing", steps=4)
    write_report(registry, tmp_path / "lb.html", title="t", jobs=1)
    page = tmp_path / "lb_runs" / f"run-{run}.html"
    assert len(chart_data(parse(page.read_text(encoding="utf-8")))["loss"]["x"]) == 4
    record_metrics(registry, run, [MetricPoint(step=5, loss=0.3)])
    record_scores(registry, run, scores("finetuned", f"run:{run}", {"truthfulqa_mc2": 0.6}))
    write_report(registry, tmp_path / "lb.html", title="t", jobs=1)
    document = parse(page.read_text(encoding="utf-8"))
    assert document.find("tr", data_task="truthfulqa_mc2") is not None
    assert chart_data(document)["loss"]["x"] == [1, 2, 3, 4, 5]


def test_pages_written_in_parallel_are_the_pages_written_alone(registry, tmp_path, monkeypatch):
    runs = [add_run(registry, f"run-{i}", steps=6 + i) for i in range(4)]
    monkeypatch.setattr("tunelab.reports.render._PARALLEL_FROM", 2)
    write_report(registry, tmp_path / "parallel" / "lb.html", title="t", jobs=2)  # forked writers
    parallel = pages(tmp_path / "parallel" / "lb_runs")
    assert sorted(parallel) == sorted(f"run-{run}.html" for run in runs)
    write_report(registry, tmp_path / "alone" / "lb.html", title="t", jobs=1)
    assert pages(tmp_path / "alone" / "lb_runs") == parallel


def test_run_pages_link_back_to_the_report_they_are_written_beside(registry, tmp_path):
    run = add_run(registry, "linked", steps=3)
    for name, href in (("leaderboard.html", "../leaderboard.html"), ("q&a.html", "../q%26a.html")):
        write_report(registry, tmp_path / name, title="t", jobs=1)
        document = parse((tmp_path / f"{Path(name).stem}_runs" / f"run-{run}.html").read_text(encoding="utf-8"))
        (back,) = [a for a in document.iter("a") if "leaderboard" in a.text]
        assert back.attrs["href"] == href  # URL-quoted: a name is never read as a query, fragment or scheme
