"""The leaderboard gathers a sweep's (or a search's) points under a row of its own, its best point's scores standing
for the group; the column picker's hooks are on every column (parsed HTML)."""

from __future__ import annotations

from tunelab.registry.recording import record_scores
from tunelab.reports.leaderboard import RowGroup, build_leaderboard
from tunelab.reports.render import render_leaderboard

from tests.helpers import finished_run, scores, sweep_runs
from tests.reports.parsing import parse


def board_with_a_sweep(registry):
    plain = finished_run(registry, "plain")
    record_scores(registry, plain, scores("finetuned", f"run:{plain}", {"arc_challenge": 0.45}))
    record_scores(registry, plain, scores("base", "tiny", {"arc_challenge": 0.25}))
    sweep = sweep_runs(registry, "lr", {1e-4: 0.30, 1e-3: 0.50, 1e-2: 0.40})
    return plain, sweep, build_leaderboard(registry, run_href=lambda run_id: f"run-{run_id}.html")


def test_a_sweeps_points_are_one_unit_where_its_best_point_ranks(registry):
    plain, (low, mid, high), board = board_with_a_sweep(registry)
    units = board.units
    group = units[0]
    assert isinstance(group, RowGroup)  # the sweep's best (0.50) ranks above the plain run (0.45)
    assert group.label == f"sweep #{group.group.group_id} lr" and group.best.run_id == mid
    assert [row.run_id for row in group.rows] == [mid, high, low]
    assert [getattr(unit, "run_id", None) for unit in units[1:]] == [plain, None]  # then the run and the base


def test_the_page_has_a_collapsed_group_row_with_the_best_points_scores(registry):
    _, (low, mid, high), board = board_with_a_sweep(registry)
    document = parse(render_leaderboard(board))
    body = document.find("table", id_="leaderboard").find("tbody")
    rows = list(body.iter("tr"))
    head = rows[0]
    assert head.attrs["class"] == "group-head" and head.attrs["data-collapsed"] == "true"
    assert "3 points; best: lr/lr=0.001" in head.text
    assert head.find("td", data_key="arc_challenge").attrs["data-value"] == "0.5"
    members = [row for row in rows if "member" in row.attrs.get("class", "")]
    assert [m.find("a").attrs["href"] for m in members] == [f"run-{run}.html" for run in (mid, high, low)]
    assert all(m.attrs["style"] == "display: none" and m.attrs["data-group"] == head.attrs["data-group"]
               for m in members)
    assert len(list(head.iter("td"))) == len(list(members[0].iter("td")))  # the same columns


def test_every_column_but_the_model_can_be_picked(registry):
    *_, board = board_with_a_sweep(registry)
    document = parse(render_leaderboard(board))
    keys = [th.attrs.get("data-col") for th in document.find("table", id_="leaderboard").find("thead").iter("th")]
    assert keys == ["model", "method", "base", "arc_challenge", "average", "final_loss", "val_loss", "train_seconds",
                    "examples", "cost", "settings"]
    assert document.find("details", id_="column-picker") is not None
