"""The sweep page: each swept parameter against the objective (a scatter each), every point's loss curve overlaid,
the points in a table; written with the report and linked from the leaderboard (parsed HTML)."""

from __future__ import annotations

import json

from tunelab.registry.sweep_records import list_sweeps
from tunelab.reports.charts import ScatterChart
from tunelab.reports.render import render_sweep_page, write_report
from tunelab.reports.sweep_page import build_sweep_page

from tests.helpers import EVIL, sweep_runs
from tests.reports.parsing import chart_data, parse, table_rows


def test_the_sweep_page_plots_the_parameter_against_the_average_and_overlays_the_losses(registry):
    low, mid, high = sweep_runs(registry, "lr", {1e-4: 0.30, 1e-3: 0.50, 1e-2: 0.40})
    (record,) = list_sweeps(registry)
    assert [p.run_id for p in record.points] == [low, mid, high] and record.keys == ["train.learning_rate"]
    page = build_sweep_page(registry, record, lambda run_id: f"run-{run_id}.html")
    assert (page.objective, page.maximize, page.best.run_id) == ("average score", True, mid)
    charts = chart_data(parse(render_sweep_page(page)))
    scatter = charts["param-0"]
    assert scatter["kind"] == "scatter" and scatter["x"] == [1e-4, 1e-3, 1e-2] and scatter["logx"]
    assert [round(y, 4) for y in scatter["y"]] == [0.3, 0.5, 0.4]
    assert scatter["labels"] == ["lr/lr=0.0001", "lr/lr=0.001", "lr/lr=0.01"]
    loss = charts["loss"]
    assert [line["label"] for line in loss["series"]] == [f"#{low} lr/lr=0.0001", f"#{mid} lr/lr=0.001",
                                                          f"#{high} lr/lr=0.01"]
    assert all(sum(y is not None for y in line["y"]) == 8 for line in loss["series"])
    rows = table_rows(parse(render_sweep_page(page)).find("table", id_="points"))
    assert rows[1] == ["lr/lr=0.001", str(mid), "succeeded", "0.001", "0.5000"]


def test_text_values_are_categories_in_the_order_given():
    payload = ScatterChart(("adamw", "sgd", "adamw", EVIL), (0.1, 0.2, 0.3, 0.4), ("a", "b", "c", "d"),
                           title="t", xlabel="optim", ylabel="y").payload()
    assert payload["categories"] == ["adamw", "sgd", EVIL] and payload["x"] == [0.0, 0.0, 1.0, 2.0]
    assert payload["y"] == [0.1, 0.3, 0.2, 0.4] and payload["labels"] == ["a", "c", "b", "d"]
    assert not payload["logx"]


def test_the_report_writes_the_sweep_page_and_links_it_from_the_group_row(registry, tmp_path):
    sweep_runs(registry, EVIL, {1e-4: 0.30, 1e-3: 0.50})
    out = tmp_path / "lb.html"
    write_report(registry, out, title="t", jobs=1)
    (record,) = list_sweeps(registry)
    page = tmp_path / "lb_runs" / f"sweep-{record.sweep_id}.html"
    html = page.read_text(encoding="utf-8")
    assert EVIL not in html and json.loads(parse(html).find("script", id_="tunelab-charts").text)["param-0"]
    board = parse(out.read_text(encoding="utf-8"))
    link = board.find("tr", class_="group-head").find("a")
    assert link.attrs["href"] == f"lb_runs/sweep-{record.sweep_id}.html"
    assert board.find("p", id_="sweeps") is not None
