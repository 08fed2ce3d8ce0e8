"""`tunelab ls` on both backends: the plain listing (read without SQLAlchemy on SQLite), filters and sorts, and the
three output formats, all agreeing with the registry's own read of the same runs; names cut to a narrow terminal."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner
from tunelab.registry.recording import MetricPoint, record_metrics, record_scores, update_run
from tunelab.registry.run_records import list_runs, run_scores
from tunelab.registry.run_state import claim_next, succeed
from tunelab.registry.scores import Score
from tunelab.registry.submissions import NewExperiment, submit
from tunelab.reports.scores import headline_scores

from tunelab.cli import cli
from tunelab.listing import fit_name, table_lines

# name: (method, final loss or None for a queued run, fine-tuned scores recorded in this order)
RUNS = {
    "alpha": ("lora", 0.5, [("arc_challenge", 0.30), ("hellaswag", 0.50), ("arc_challenge", 0.40)]),
    "beta": ("full", 0.25, [("arc_challenge", 0.70), ("capitals", 0.90)]),
    "gamma": ("lora", None, []),
}


def score(task: str, value: float, model_kind: str = "finetuned", task_group: str | None = None) -> Score:
    return Score(model_kind=model_kind, model_name="m", task=task, metric="acc", value=value, stderr=None,
                 num_fewshot=0, limit=0, n_samples=10, task_group=task_group, comparable=True,
                 lm_eval_version="x", fingerprint={"eval_key": "k"})


@pytest.fixture
def runs(registry) -> dict[str, int]:
    ids = {}
    for name, (method, loss, scores) in RUNS.items():
        resolved = json.dumps({"method": {"kind": method}, "model": {"base": f"base-{name}"}})
        (s,) = submit(registry, [NewExperiment(name=name, description="", tags=["t", name], spec_path="s.toml",
                                               spec_text="", resolved_json=resolved, spec_hash=name, workdir="/")])
        ids[name] = s.run_id
        if loss is not None:
            assert claim_next(registry, "w") == s.run_id
            update_run(registry, s.run_id, final_loss=loss)
            assert succeed(registry, s.run_id, "w") == "succeeded"
        for task, value in scores:  # one call per score: a task recorded twice keeps both rows
            record_scores(registry, s.run_id, [score(task, value)])
        record_scores(registry, s.run_id, [score("mmlu_anatomy", 0.1, task_group="mmlu"),
                                           score("arc_challenge", 0.2, model_kind="base")])
    return ids


def ls(registry, tmp_path, *args: str) -> str:
    out = CliRunner().invoke(cli, ["--home", str(tmp_path), "--db", registry.url, "ls", *args])
    assert out.exit_code == 0, out.output
    return out.output


def test_json_lists_every_run_newest_first_with_the_latest_headline_scores(registry, runs, tmp_path):
    listed = json.loads(ls(registry, tmp_path, "--json"))
    assert [r["name"] for r in listed] == ["gamma", "beta", "alpha"]
    by_name = {r["name"]: r for r in listed}
    # arc_challenge recorded twice: the latest wins; the subject and the base score are not headline scores.
    assert by_name["alpha"]["scores"] == {"arc_challenge": 0.40, "hellaswag": 0.50, "average": 0.45}
    assert by_name["beta"]["scores"] == {"arc_challenge": 0.70, "capitals": 0.90, "average": 0.70}
    assert by_name["gamma"]["scores"] == {}
    assert (by_name["beta"]["method"], by_name["beta"]["base_model"], by_name["beta"]["tags"]) == \
        ("full", "base-beta", ["t", "beta"])
    assert by_name["alpha"]["created_at"].endswith("+00:00") and by_name["gamma"]["started_at"] is None
    # The same numbers as the registry's own score rows and the reports' headline rule.
    scores = run_scores(registry, list(runs.values()))
    for name, run_id in runs.items():
        assert by_name[name]["scores"] == headline_scores(scores.get(run_id, []), "finetuned")
    summaries = {s.name: s for s in list_runs(registry)}
    assert by_name["alpha"]["created_at"] == summaries["alpha"].created_at.isoformat()


def test_table_has_a_row_per_run_with_aligned_columns(registry, runs, tmp_path):
    title, header, rule, *rows = ls(registry, tmp_path).splitlines()
    assert title == f"runs in {registry.url}"
    assert header.split() == ["run", "experiment", "status", "method", "created", "loss", "average"]
    assert len(rule) == len(header) and set(rule) == {"-", " "}
    cells = [row.split() for row in rows]
    assert [(c[0], c[1], c[2], c[3], c[-2], c[-1]) for c in cells] == [
        (str(runs["gamma"]), "gamma", "queued", "lora", "-", "-"),
        (str(runs["beta"]), "beta", "succeeded", "full", "0.2500", "0.7000"),
        (str(runs["alpha"]), "alpha", "succeeded", "lora", "0.5000", "0.4500"),
    ]
    assert all(len(row) == len(header) for row in rows)  # the last column is right-aligned under its header


def test_csv_has_a_column_per_task(registry, runs, tmp_path):
    table = list(csv.DictReader(io.StringIO(ls(registry, tmp_path, "--format", "csv"))))
    assert [row["name"] for row in table] == ["gamma", "beta", "alpha"]
    assert list(table[0])[-4:] == ["arc_challenge", "hellaswag", "capitals", "average"]
    assert (table[2]["arc_challenge"], table[2]["average"]) == ("0.4", "0.45")


@pytest.mark.parametrize(("args", "expected"), [
    (["--asc"], ["alpha", "beta", "gamma"]),
    (["--limit", "1"], ["gamma"]),
    (["--limit", "0"], []),
    (["--status", "succeeded"], ["beta", "alpha"]),
    (["--status", "succeeded", "--asc", "--limit", "1"], ["alpha"]),
    (["--where", 'method.kind = "lora"'], ["gamma", "alpha"]),
    (["--where", "arc_challenge > 0.35", "--sort", "average"], ["beta", "alpha"]),
    (["--sort", "loss", "--asc"], ["beta", "alpha", "gamma"]),
    (["--where", 'tags contains "beta"', "--limit", "5"], ["beta"]),
])
def test_filters_sorts_and_limits(registry, runs, tmp_path, args, expected):
    listed = json.loads(ls(registry, tmp_path, *args, "--json"))
    assert [r["name"] for r in listed] == expected
    if listed:
        assert all("average" in r["scores"] for r in listed if r["name"] != "gamma")


def test_a_bad_expression_is_one_error_with_a_caret(registry, runs, tmp_path):
    out = CliRunner().invoke(cli, ["--home", str(tmp_path), "--db", registry.url, "ls", "--where", "loss >"])
    assert out.exit_code == 1
    assert out.output.splitlines()[0].startswith("Error: unexpected end of expression at column 7")
    assert out.output.splitlines()[-1].strip() == "^"


def test_the_table_shows_a_page_and_says_so_while_scripts_get_every_run(registry, runs, tmp_path, monkeypatch):
    monkeypatch.setattr("tunelab.commands.ls.TABLE_ROWS", 2)
    _title, _header, _rule, *rows, footer = ls(registry, tmp_path).splitlines()
    assert [row.split()[1] for row in rows] == ["gamma", "beta"]
    assert footer == "(the first 2 runs; --limit N or --all for more)"
    for args in (["--all"], ["--limit", "3"]):
        *_, last = ls(registry, tmp_path, *args).splitlines()
        assert last.split()[1] == "alpha"
    assert len(json.loads(ls(registry, tmp_path, "--json"))) == 3
    assert len(ls(registry, tmp_path, "--format", "csv").splitlines()) == 4
    assert ls(registry, tmp_path, "--where", "id > 0").splitlines()[-1] == footer


def test_val_loss_filters_and_sorts_by_the_last_validation_loss(registry, runs, tmp_path):
    # alpha's last validation point (step 20) is below beta's, though an earlier one of alpha's was above it.
    record_metrics(registry, runs["alpha"], [MetricPoint(step=10, eval_loss=0.9), MetricPoint(step=20, eval_loss=0.3)])
    record_metrics(registry, runs["beta"], [MetricPoint(step=20, eval_loss=0.6)])
    names = lambda *args: [r["name"] for r in json.loads(ls(registry, tmp_path, *args, "--json"))]  # noqa: E731
    assert names("--where", "val_loss < 0.5") == ["alpha"]
    assert names("--where", "val_loss > 0.5") == ["beta"]
    assert names("--where", "not val_loss < 0.5") == ["gamma", "beta"]  # no validation loss: no match either way
    assert names("--sort", "val_loss", "--asc") == ["alpha", "beta", "gamma"]  # runs without one last
    assert names("--sort", "val_loss") == ["beta", "alpha", "gamma"]


def test_a_narrow_table_keeps_the_swept_values_of_sweep_points():
    # At 80 columns the name column is about 20 characters: cut at the end, two sweep points looked the same.
    names = ["si-lora/train.learning_rate=0.0003", "si-lora/train.learning_rate=0.0002",
             "tiny-lora/method.r=8,train.learning_rate=0.0001", "tiny-lora/method.r=16,train.learning_rate=0.0001",
             "an-experiment-without-a-sweep-point-and-a-long-name"]
    rows = [(str(i), name, "succeeded", "lora", "2026-01-07 22:40", "0.5000", "0.4000") for i, name in enumerate(names)]
    lines = table_lines(rows, width=80)
    assert max(len(line) for line in lines) <= 80
    shown = [line.split()[1] for line in lines[2:]]
    assert len(set(shown)) == len(shown)
    assert shown == ["si-lora/0.0003", "si-lora/0.0002", "tiny-lora/8,0.0001", "tiny-lora/16,0.0001",
                     "an-experiment-withou…"]


def test_fit_name_cuts_the_experiment_then_the_point_keys_never_the_values():
    name = "tiny-lora/method.r=8,train.learning_rate=0.0001"
    assert fit_name(name, 60) == name
    assert fit_name(name, 40) == "tiny-lora/r=8,learning_rate=0.0001"
    assert fit_name(name, 20) == "tiny-lora/8,0.0001"
    assert fit_name(name, 14) == "tiny…/8,0.0001"
    assert fit_name("plain-name-without-a-point", 12) == "plain-name-…"
