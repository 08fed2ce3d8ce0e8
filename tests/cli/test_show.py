"""`tunelab show ID` as text: the data statistics of a trained run, comparability marks, the validation loss, the
whole resolved spec."""

from __future__ import annotations

import json
import textwrap
import tomllib
from dataclasses import replace

from click.testing import CliRunner
from sqlalchemy import text
from tunelab.registry.recording import MetricPoint, record_metrics, record_scores, update_run

from tests.helpers import finished_run, scores
from tunelab.cli import cli


def test_show_prints_the_training_data_statistics(registry):
    run = finished_run(registry, "cleaned")
    stats = {"sources": [{"path": "data/train.jsonl", "format": "instruction", "weight": None, "rows": 120,
                          "empty": 3, "duplicates": 7, "overlength_dropped": 2, "overlength_truncated": 1,
                          "kept": 108, "held_out": 11, "drawn": 97}],
             "validation_file": {"path": "data/val.jsonl", "format": "instruction", "weight": None, "rows": 20,
                                 "empty": 0, "duplicates": 1, "overlength_dropped": 0, "overlength_truncated": 0,
                                 "kept": 19, "held_out": 0, "drawn": 0},
             "train_examples": 97, "validation_examples": 19, "train_tokens": 5000, "trainable_tokens": 2000,
             "packed_sequences": None}
    update_run(registry, run, data_stats_json=json.dumps(stats))
    out = CliRunner().invoke(cli, ["--db", registry.url, "show", str(run)])
    assert out.exit_code == 0, out.output
    lines = [line.strip() for line in out.output.splitlines()]
    assert ("data/train.jsonl: 120 rows read, 3 empty, 7 duplicates, 2 over-length dropped, "
            "1 over-length truncated, 108 kept, 11 held out") in lines
    assert any(line.startswith("data/val.jsonl (validation): 20 rows read") for line in lines)
    assert "97 training examples, 19 validation examples, 5000 training tokens" in lines


def test_show_without_data_statistics_prints_no_data_section(registry):
    run = finished_run(registry, "untrained")
    out = CliRunner().invoke(cli, ["--db", registry.url, "show", str(run)])
    assert out.exit_code == 0, out.output
    assert "training data" not in out.output


def show(registry, run: int) -> list[str]:
    out = CliRunner().invoke(cli, ["--db", registry.url, "show", str(run)])
    assert out.exit_code == 0, out.output
    return [line.strip() for line in out.output.splitlines()]


def test_show_marks_scores_that_are_not_leaderboard_comparable_and_says_the_average_is_not(registry):
    run = finished_run(registry, "marked")
    # hellaswag is not comparable (scores() marks it so); arc_challenge was scored with a limit.
    tuned = [replace(s, comparable=False, limit=2) if s.task == "arc_challenge" else s
             for s in scores("finetuned", f"run:{run}", {"arc_challenge": 0.4, "hellaswag": 0.35})]
    record_scores(registry, run, tuned)
    record_scores(registry, run, scores("base", "tiny", {"arc_challenge": 0.3, "hellaswag": 0.3}))
    lines = show(registry, run)
    arc = next(line for line in lines if line.startswith("│ arc_challenge"))
    assert "0.4000*" in arc and "0.3000 " in arc  # the fine-tuned score marked, the base's not
    assert "0.3500*" in next(line for line in lines if line.startswith("│ hellaswag"))
    assert "* not leaderboard-comparable:" in lines
    # scores() evaluates every task 0-shot: not the leaderboard's shots either.
    assert "arc_challenge (fine-tuned): limit 2 items per task; 0 shots (the leaderboard's: 25)" in lines
    assert "hellaswag (base): 0 shots (the leaderboard's: 10)" in lines
    (average,) = [line for line in lines if line.startswith("average (leaderboard benchmarks)")]
    assert average == ("average (leaderboard benchmarks): 0.3750 (not the leaderboard's average: without MMLU, "
                       "TruthfulQA; includes scores not leaderboard-comparable (ARC, HellaSwag))")


def test_show_prints_the_last_validation_loss(registry):
    run = finished_run(registry, "validated")
    record_metrics(registry, run, [MetricPoint(step=s, loss=1.0 / s) for s in range(1, 11)])
    # The last validation point is the highest step's, wherever it was logged.
    record_metrics(registry, run, [MetricPoint(step=10, eval_loss=0.75), MetricPoint(step=5, eval_loss=0.9)])
    assert "validation loss 0.7500 (the last validation point)" in show(registry, run)
    out = CliRunner().invoke(cli, ["--db", registry.url, "show", str(run), "--json"])
    assert json.loads(out.stdout)["validation_loss"] == 0.75


def test_show_prints_the_whole_resolved_spec_as_toml(registry):
    spec = {"experiment": {"name": "long", "description": "d" * 500, "seed": 7},
            "model": {"base": "tiny", "revision": None}, "method": {"kind": "lora", "r": 8},
            "train": {"learning_rate": 3e-4, "max_steps": 20}, "resources": {"priority": 0}}
    run = finished_run(registry, "long", resolved=json.dumps(spec))
    output = CliRunner().invoke(cli, ["--db", registry.url, "show", str(run)]).output
    text = output[output.index("spec (resolved: what the run used):"):].split("\n", 1)[1]
    assert "…" not in output
    assert tomllib.loads(textwrap.dedent(text)) == {  # every key; TOML has no null, so an unset key is left out
        **spec, "model": {"base": "tiny"}}
    assert "    learning_rate = 0.0003" in text.splitlines()


def test_show_says_why_over_length_rows_were_dropped_when_they_are_cut(registry):
    run = finished_run(registry, "cut", resolved=json.dumps({"data": {"overlength": "truncate", "max_seq_len": 128}}))
    stats = {"sources": [{"path": "train.jsonl", "format": "instruction", "weight": None, "rows": 100, "empty": 0,
                          "duplicates": 0, "overlength_dropped": 4, "overlength_truncated": 23, "kept": 96,
                          "held_out": 0, "drawn": 96}], "validation_file": None, "train_examples": 96}
    update_run(registry, run, data_stats_json=json.dumps(stats))
    lines = show(registry, run)
    assert ('4 over-length rows were dropped although overlength = "truncate": cut to max_seq_len (128 tokens), '
            "the prompt filled the row and left no response token to learn from.") in " ".join(lines)
    # With overlength = "drop" dropping is what was asked for: nothing to explain.
    dropped = finished_run(registry, "dropped", resolved=json.dumps({"data": {"overlength": "drop"}}))
    update_run(registry, dropped, data_stats_json=json.dumps(stats))
    assert not any("although" in line for line in show(registry, dropped))


def test_show_says_which_run_a_reproduction_reproduces(registry):
    original = finished_run(registry, "original")
    copy = finished_run(registry, "copy")
    with registry.engine.begin() as connection:
        connection.execute(text("UPDATE run SET reproduces_run_id = :o WHERE id = :c"), {"o": original, "c": copy})
    assert f"reproduces run {original} (made by tunelab reproduce)" in show(registry, copy)


def test_show_names_items_cut_to_the_models_context_and_another_fewshot_seed(registry):
    run = finished_run(registry, "cut-prompts")
    fingerprint = {"eval_key": "k1", "fewshot_seed": 7,
                   "tasks": {"mmlu": {"num_fewshot": 5, "truncated_items": 3,
                                      "truncated_by_task": {"mmlu_anatomy": 3}}}}
    (mmlu,) = scores("finetuned", f"run:{run}", {"mmlu": 0.3})
    record_scores(registry, run, [replace(mmlu, num_fewshot=5, comparable=False, fingerprint=fingerprint)])
    lines = show(registry, run)
    assert ("mmlu (fine-tuned): few-shot seed 7 (the leaderboard's: 1234); 3 item(s) longer than the model's "
            "context, cut from the left") in lines
