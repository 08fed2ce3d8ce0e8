"""`tunelab show ID` as text: the data statistics of a trained run."""

from __future__ import annotations

import json

from click.testing import CliRunner
from tunelab.registry.recording import update_run

from tests.helpers import finished_run
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
