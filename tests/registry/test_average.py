"""The leaderboard average is one definition (experiments/benchmarks.py): `ls --where/--sort average` (SQL built
from it), the listing's column and the report's Average column agree on every run, however partial its scores."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlmodel import select
from tunelab.experiments.benchmarks import LEADERBOARD_AVERAGE, leaderboard_average
from tunelab.registry.models import Run
from tunelab.registry.recording import record_scores
from tunelab.registry.run_query import query_runs
from tunelab.registry.run_records import headline_values
from tunelab.registry.where import average_sql
from tunelab.reports.leaderboard import build_leaderboard

from tests.helpers import finished_run, scores, subject_scores

# Per run: the fine-tuned headline scores, recorded one call after another ({task: value} each).
RUNS: dict[str, list[dict[str, float]]] = {
    "all four": [{"arc_challenge": 0.4, "hellaswag": 0.5, "mmlu": 0.3, "truthfulqa_mc2": 0.6}],
    "two and a custom task": [{"arc_challenge": 0.2, "mmlu": 0.4, "capitals": 0.9}],
    "custom task only": [{"capitals": 0.8}],
    "recorded twice": [{"arc_challenge": 0.1, "hellaswag": 0.3}, {"arc_challenge": 0.7}],  # the later arc counts
    "no scores": [],
}


@pytest.fixture
def runs(registry) -> dict[str, int]:
    ids = {name: finished_run(registry, name) for name in [*RUNS, "mmlu subjects", "subjects alone", "base only",
                                                            "eval only"]}
    for name, calls in RUNS.items():
        for values in calls:
            record_scores(registry, ids[name], scores("finetuned", f"run:{ids[name]}", values))
    # Some subjects: their partial MMLU (not leaderboard-comparable) counts, the subjects themselves do not.
    run = ids["mmlu subjects"]
    record_scores(registry, run, [replace(s, comparable=False) for s in scores("finetuned", f"run:{run}",
                                                                                {"mmlu": 0.375})])
    record_scores(registry, run, subject_scores("finetuned", f"run:{run}", {"anatomy": 0.5, "virology": 0.25}))
    run = ids["subjects alone"]
    record_scores(registry, run, subject_scores("finetuned", f"run:{run}", {"anatomy": 0.9}))
    # Scores of other models of a run (its base, a `tunelab eval` of its weights) are no average of the run.
    record_scores(registry, ids["base only"], scores("base", "tiny", {"arc_challenge": 0.3, "mmlu": 0.45}))
    record_scores(registry, ids["eval only"], scores("eval", f"run:{ids['eval only']}", {"arc_challenge": 0.35}))
    return ids


EXPECTED = {"all four": 0.45, "two and a custom task": 0.3, "custom task only": None, "recorded twice": 0.5,
            "no scores": None, "mmlu subjects": 0.375, "subjects alone": None, "base only": None, "eval only": None}


def test_sql_listing_and_report_agree_on_the_average(registry, runs):
    ids = list(runs.values())
    with registry.engine.connect() as connection:
        in_sql = dict(connection.execute(select(Run.id, average_sql()).where(Run.id.in_(ids))).all())
    listed = {run_id: leaderboard_average(values) for run_id, values in headline_values(registry, ids).items()}
    report = {row.run_id: row.average.value for row in build_leaderboard(registry).rows if row.kind == "finetuned"}
    for name, run_id in runs.items():
        expected = EXPECTED[name]
        assert in_sql[run_id] == pytest.approx(expected), name
        assert listed.get(run_id) == pytest.approx(expected), name
        assert report.get(run_id) == pytest.approx(expected), name


@pytest.mark.parametrize("threshold", [-1.0, 0.29, 0.31, 0.4, 0.46])
def test_ls_where_average_selects_the_runs_the_python_rule_puts_above(registry, runs, threshold):
    above = {runs[name] for name, value in EXPECTED.items() if value is not None and value > threshold}
    assert {r.run_id for r in query_runs(registry, where=f"average > {threshold}")} == above
    # No average is no match, either way: `not` is the exact complement.
    without = {runs[name] for name, value in EXPECTED.items() if value is None or value <= threshold}
    assert {r.run_id for r in query_runs(registry, where=f"not average > {threshold}")} == without


def test_ls_sort_average_orders_as_the_python_rule(registry, runs):
    ordered = [r.run_id for r in query_runs(registry, sort="average")]
    by_id = {run_id: EXPECTED[name] for name, run_id in runs.items()}
    values = [by_id[run_id] for run_id in ordered]
    assert values == sorted((v for v in values if v is not None), reverse=True) + [None] * values.count(None)


def test_the_average_counts_the_leaderboard_benchmarks_present_and_nothing_else():
    assert LEADERBOARD_AVERAGE.tasks == ("arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2")
    assert leaderboard_average({"arc_challenge": 0.2, "mmlu_anatomy": 1.0, "capitals": 1.0}) == 0.2
    assert leaderboard_average({"capitals": 1.0}) is None
