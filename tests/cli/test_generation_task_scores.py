"""A generative task's score (lm-eval's generate_until, scored by exact match under a filter) is a column like any
custom task's: on the leaderboard, in `ls --where` and `--sort`, in `ls --json`."""

from __future__ import annotations

import json
from dataclasses import replace

from click.testing import CliRunner
from tunelab.registry.recording import record_scores
from tunelab.reports.leaderboard import build_leaderboard
from tunelab.reports.render import render_leaderboard

from tests.helpers import finished_run, scores
from tests.reports.parsing import parse
from tunelab.cli import cli

METRIC = "exact_match,first-number"  # how the harness names a generation task's metric under its filter


def generation_scores(registry) -> dict[str, int]:
    runs = {}
    for name, value in (("writes-well", 0.6), ("writes-badly", 0.2)):
        run = finished_run(registry, name)
        record_scores(registry, run, [replace(s, metric=METRIC) for s in
                                      scores("finetuned", f"run:{run}", {"adding": value})])
        record_scores(registry, run, scores("finetuned", f"run:{run}", {"arc_challenge": 0.3}))
        runs[name] = run
    return runs


def test_a_generation_tasks_metric_is_a_custom_leaderboard_column(registry):
    runs = generation_scores(registry)
    board = build_leaderboard(registry)
    column = next(c for c in board.columns if c.key == "adding")
    assert not column.benchmark
    cells = {row.run_id: row.cells["adding"].value for row in board.rows if row.run_id is not None}
    assert cells == {runs["writes-well"]: 0.6, runs["writes-badly"]: 0.2}
    header = parse(render_leaderboard(board)).find("th", data_key="adding")
    assert header.attrs["class"] == "num custom" and header.attrs["data-col"] == "adding"


def test_ls_filters_and_sorts_by_a_generation_tasks_score(registry, tmp_path):
    generation_scores(registry)

    def ls(*args: str):
        out = CliRunner().invoke(cli, ["--home", str(tmp_path), "--db", registry.url, "ls", "--json", *args])
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)

    assert [r["name"] for r in ls("--where", "adding > 0.5")] == ["writes-well"]
    assert [r["name"] for r in ls("--sort", "adding")][:2] == ["writes-well", "writes-badly"]
    (row,) = ls("--where", "adding < 0.5")
    assert json.dumps(row).count("0.2") >= 1 and "adding" in json.dumps(row)
