"""The search page (objective by trial, best settings, importance, winner against runner-up with a paired test)
and the leaderboard's cost column and intervals, on searches and runs recorded without training."""

from __future__ import annotations

from dataclasses import replace

import pytest
from tunelab.registry.recording import MetricPoint, record_metrics, record_scores, update_run
from tunelab.registry.search_records import search_record
from tunelab.reports.leaderboard import build_leaderboard
from tunelab.reports.render import render_search_page, write_report
from tunelab.reports.search_page import build_search_page

from tests.helpers import SEARCH_SPEC, finished_run, item_log, logs_b1_c9, new_search, run_search, scores
from tests.reports.parsing import chart_data, parse, table_rows


def _with_logs(registry, run_id: int, outcomes: list[bool]) -> None:
    (score,) = scores("finetuned", f"run:{run_id}", {"capitals": sum(outcomes) / len(outcomes)})
    record_scores(registry, run_id, [replace(score, samples=item_log(outcomes))])


@pytest.fixture
def searched(registry, tmp_path):
    text = SEARCH_SPEC.replace('objective = "val_loss"', 'objective = "capitals"') + (
        '\n[eval]\ntasks = []\n[[eval.custom]]\nname = "capitals"\npath = "c.jsonl"\n')
    search_id = new_search(registry, tmp_path, text)
    runs = run_search(registry, search_id, lambda n: {2: 1.0, 4: 0.5 + n / 10})
    before, after = logs_b1_c9()
    # Trial 2 the winner (11 of 12 right), trial 0 the runner-up (3 of 12), the others in between or below.
    for run_id, outcomes in zip(runs, ([o["correct"] for o in before], [True, False] * 6,
                                       [o["correct"] for o in after], [False] * 12), strict=True):
        _with_logs(registry, run_id, outcomes)
    return search_id, runs


def test_the_search_page_shows_the_winner_against_the_runner_up_with_its_test(registry, searched, tmp_path):
    search_id, runs = searched
    page = build_search_page(registry, search_record(registry, search_id), lambda run_id: f"run-{run_id}.html")
    assert (page.best.number, page.runner_up.number) == (2, 1)
    document = parse(render_search_page(page))
    assert "trial 2" in document.find("p", id_="best").text
    rows = document.find("table", id_="best-settings").iter("tr")
    settings = {row.find("th").text: row.find("td").text for row in rows}
    assert set(settings) == {"train.learning_rate", "method.r"}
    assert table_rows(document.find("table", id_="versus"))[0][:5] == ["capitals", "0.9167", "0.5000", "+0.4167",
                                                                       "0.125"]
    assert chart_data(document)["objective"]["series"][1]["label"] == "best so far"
    (versus,) = page.versus
    # Winner 11/12 against runner-up 6/12 (right on even items): item 0 lost, the six odd ones gained, so
    # McNemar's p = 2 * (C(7,0) + C(7,1)) / 2**7.
    assert (versus.task, versus.winner, versus.runner_up) == ("capitals", 11 / 12, 0.5)
    assert versus.p_value == pytest.approx(2 * 8 / 128)
    assert versus.ci[0] <= versus.delta <= versus.ci[1]
    assert page.charts["objective"].series[0].y == (0.25, 0.5, 11 / 12, 0.0)
    assert page.charts["objective"].series[1].y == (0.25, 0.5, 11 / 12, 11 / 12)


def test_the_report_links_each_search_page(registry, searched, tmp_path):
    search_id, _ = searched
    write_report(registry, tmp_path / "lb.html", title="t", jobs=1)
    page = tmp_path / "lb_runs" / f"search-{search_id}.html"
    assert page.is_file()
    searches = parse((tmp_path / "lb.html").read_text()).find("p", id_="searches")
    links = [a.attrs["href"] for a in searches.iter("a")]
    assert links == [f"lb_runs/search-{search_id}.html"]


def test_cost_per_point_and_intervals_on_the_leaderboard(registry):
    before, after = logs_b1_c9()
    run = finished_run(registry, "costly")
    update_run(registry, run, train_seconds=120.0)
    record_scores(registry, run, [replace(s, samples=after) for s in
                                  scores("finetuned", f"run:{run}", {"arc_challenge": 11 / 12})])
    record_scores(registry, run, [replace(s, samples=before) for s in scores("base", "tiny", {"arc_challenge": 0.25})])
    (row,) = [r for r in build_leaderboard(registry).rows if r.kind == "finetuned"]
    # 66.7 points of average gained in 120 s: 1.8 s per point; no GPU.
    assert row.cost_text == "2 s/pt" and row.cost_value == pytest.approx(120 / (100 * (11 / 12 - 0.25)))
    cell = row.cells["arc_challenge"]
    assert cell.ci is not None and cell.ci[0] < cell.delta < cell.ci[1]
    assert cell.ci_text.startswith("[+")


def test_the_search_page_plots_each_parameter_and_every_trials_loss(registry, searched):
    search_id, runs = searched
    for index, run_id in enumerate(runs):
        record_metrics(registry, run_id, [MetricPoint(step=s, loss=(index + 1) / s) for s in range(1, 7)])
    page = build_search_page(registry, search_record(registry, search_id))
    assert page.params == ["train.learning_rate", "method.r"]
    charts = chart_data(parse(render_search_page(page)))
    learning_rate, rank = charts["param-0"], charts["param-1"]
    assert learning_rate["kind"] == rank["kind"] == "scatter" and learning_rate["xlabel"] == "train.learning_rate"
    assert sorted(learning_rate["y"]) == sorted([0.25, 0.5, 11 / 12, 0.0])
    assert set(rank["x"]) <= {4.0, 8.0, 16.0} and len(rank["x"]) == 4
    assert [line["label"] for line in charts["loss"]["series"]] == [f"trial {n}" for n in range(4)]


def test_the_leaderboard_gathers_a_searchs_trials_and_links_its_page(registry, searched, tmp_path):
    search_id, _ = searched
    write_report(registry, tmp_path / "lb.html", title="t", jobs=1)
    head = parse((tmp_path / "lb.html").read_text()).find("tr", class_="group-head")
    assert head.attrs["data-group"] == f"search-{search_id}" and "4 points" in head.text
    assert head.find("a").attrs["href"] == f"lb_runs/search-{search_id}.html"
