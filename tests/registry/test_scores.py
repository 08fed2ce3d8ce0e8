"""The one score type: its fields and the evalresult table agree, and a score reads back as it was recorded.

Adding a score field touches registry/scores.py (the Score dataclass), the same column on registry/models.py
EvalResult and one Alembic revision: the first test fails until the type and the table agree, the migration test
(tests/registry/test_migrations.py) until the revision makes the table, and the read-path test below says
whether the new column may be read with the rest of a score.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest
from tunelab.registry.models import EvalResult
from tunelab.registry.queries import find_base_scores, model_evaluations, run_detail
from tunelab.registry.recording import record_scores
from tunelab.registry.scores import (
    FIELDS,
    NOT_READ_BACK,
    READ_APART,
    ROW_FIELDS,
    TABLE_ONLY,
    Score,
    column,
    to_json,
)

from tests.helpers import finished_run

# Every field away from its default, so a field dropped on the way in or out shows.
FULL = Score(task="arc_challenge", metric="acc_norm", value=0.375, stderr=0.02, num_fewshot=25, n_samples=1172,
             task_group=None, comparable=False, limit=7, model_kind="finetuned", model_name="run:1",
             lm_eval_version="0.4.13", fingerprint={"eval_key": "k1", "tasks": {"arc_challenge": {"n": 1}}},
             model_digest="abc123", samples=[{"doc_id": 0, "correct": True}], vs_base_p=0.03)


def test_the_score_type_and_the_evalresult_table_have_the_same_fields():
    assert {column(name) for name in FIELDS} | set(TABLE_ONLY) == set(EvalResult.model_fields)
    assert len({column(name) for name in FIELDS}) == len(FIELDS)
    assert set(READ_APART) <= set(FIELDS) and set(ROW_FIELDS) == set(FIELDS) - set(READ_APART)


def test_every_field_read_with_a_score_comes_before_the_per_item_log(sqlite_template):
    # SQLite stores a row's columns in table order, and a column added by a later revision comes after the
    # per-item log: reading it with every score would walk each log's overflow pages (a report reads tens of
    # thousands of scores). Such a field is read apart (registry/scores.py READ_APART).
    connection = sqlite3.connect(f"file:{sqlite_template}?mode=ro", uri=True)
    try:
        order = [row[1] for row in connection.execute("PRAGMA table_info(evalresult)")]
    finally:
        connection.close()
    assert set(order) == set(EvalResult.model_fields)
    assert all(order.index(column(name)) < order.index("samples_json") for name in ROW_FIELDS), order


def test_a_recorded_score_reads_back_field_for_field(registry):
    run = finished_run(registry, "scored")
    base = replace(FULL, model_kind="base", model_name="tiny", model_digest=None, vs_base_p=None)
    record_scores(registry, run, [FULL, base])
    as_read = {name: getattr(FULL, name) for name in FIELDS if name not in NOT_READ_BACK}

    tuned, read_base = run_detail(registry, run).scores
    assert {name: getattr(tuned, name) for name in as_read} == as_read
    assert (tuned.samples, tuned.model_digest) == (None, None)  # the query path never reads these
    assert to_json(tuned) == as_read
    # The ORM reads (a base evaluated once, `tunelab eval` results) build the same type, the digest included.
    assert find_base_scores(registry, "tiny", "k1") == [replace(read_base, model_digest=None)]
    record_scores(registry, None, [replace(FULL, model_kind="eval", model_name="/models/m")])
    (evaluation,) = model_evaluations(registry)
    assert evaluation.scores == [replace(FULL, model_kind="eval", model_name="/models/m", samples=None)]
    assert evaluation.model_digest == "abc123"


def test_a_score_must_say_whose_it_is(registry):
    run = finished_run(registry, "anonymous")
    with pytest.raises(ValueError, match="arc_challenge"):
        record_scores(registry, run, [FULL, replace(FULL, model_kind="", model_name="")])
    assert run_detail(registry, run).scores == []  # nothing of the call recorded
