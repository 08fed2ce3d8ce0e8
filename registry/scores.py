"""The one score type: what the runner's evaluation measures, the registry records and reads back, and the
reports show.

A Score is one row of the `evalresult` table (registry/models.py EvalResult), field for field: `fingerprint` and
`samples` are stored as JSON text in `fingerprint_json` and `samples_json`; the table adds only `id`, `run_id`
and `created_at`. Adding a score field is a field here, the same column on EvalResult and one Alembic revision
(tests/registry/test_scores.py checks that the three agree). The column lists below derive from the fields.

Plain Python, no SQLAlchemy: the query path (registry/run_records.py) reads scores through sqlite3 alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Score:
    """One number for one task of one evaluated model.

    The evaluation harness fills in what it measured; the runner adds whose score it is and how it was produced
    when it records it (runner/evaluation/harness.py EvalOutcome.recorded_as).
    """

    task: str  # "arc_challenge", "mmlu", "mmlu_<subject>", "truthfulqa_mc2", a custom or include_path task
    metric: str  # "acc_norm" | "acc" | "mc2"; an include_path task's own ("exact_match,strict-match" under a filter)
    value: float
    stderr: float | None
    num_fewshot: int
    n_samples: int | None
    task_group: str | None = None  # "mmlu" for the per-subject rows, else None
    # False when not at leaderboard settings (other shots, shots from the scored split, a limit, part of MMLU).
    comparable: bool = True
    limit: int = 0  # items per lm-eval task that were scored (0 = all)
    # Whose score it is and how it was produced: set when the score is recorded.
    model_kind: str = ""  # "finetuned" | "base" (a run's own evaluation) | "eval" (`tunelab eval`)
    model_name: str = ""  # "run:ID", the base model as the spec names it, a path or a hub id
    lm_eval_version: str = ""
    fingerprint: dict = field(default_factory=dict)  # what must match for two scores to be compared
    model_digest: str | None = None  # sha256 of the scored weights, where known (runner/evaluation/cache.py)
    # The per-item log (doc_id, target, pick, correct, score): written with the score, never read back with it.
    samples: list[dict] | None = None
    # A fine-tuned score's McNemar exact p-value against its base, which the registry works out once both are
    # recorded (registry/recording.py); None where there is none.
    vs_base_p: float | None = None
    # The 95% paired-bootstrap interval of the change against the base, set with vs_base_p; None where none.
    vs_base_ci_low: float | None = None
    vs_base_ci_high: float | None = None


FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Score))
# Fields stored as JSON text, in a column named after the field with "_json" appended.
JSON_FIELDS = frozenset({"fingerprint", "samples"})
# Columns of the table that are no field of a Score.
TABLE_ONLY = ("id", "run_id", "created_at")
# Never read back with a score on the query path: the per-item log (megabytes per run) and what SQLite stores
# after it in a row (a column added by a later revision comes after it, and reaching it walks the log's overflow
# pages). A new field stored after samples_json belongs here or in READ_APART.
NOT_READ_BACK = frozenset({"samples", "model_digest"})
# Not read with the rest of a score: those, and the p-value, read through an index of its own.
READ_APART = NOT_READ_BACK | {"vs_base_p", "vs_base_ci_low", "vs_base_ci_high"}
ROW_FIELDS: tuple[str, ...] = tuple(name for name in FIELDS if name not in READ_APART)


def column(name: str) -> str:
    """The evalresult column that stores field `name`."""
    return f"{name}_json" if name in JSON_FIELDS else name


_FIELD_OF = {column(name): name for name in FIELDS}
ROW_COLUMNS: tuple[str, ...] = tuple(column(name) for name in ROW_FIELDS)


def select_list(names: Sequence[str] = ROW_FIELDS) -> str:
    """The columns of `names` for a SELECT, in order ("limit" is an SQL keyword: quoted, as SQLAlchemy does)."""
    return ", ".join(f'"{column(name)}"' if name == "limit" else column(name) for name in names)


def to_columns(score: Score) -> dict[str, Any]:
    """A score as the values of its evalresult columns, JSON fields as text (the row's id, run and time aside)."""
    values: dict[str, Any] = {}
    for name in FIELDS:
        value = getattr(score, name)
        if name in JSON_FIELDS:
            value = None if value is None else json.dumps(value, sort_keys=True)
        values[column(name)] = value
    return values


def from_columns(values: Mapping[str, Any], *, parsed: dict[str, Any] | None = None, **read_apart: Any) -> Score:
    """A Score from evalresult column values by column name (other columns, such as the row's id, are left out);
    fields without a column among them keep their defaults.

    `parsed` caches JSON texts already decoded (every score of one evaluation carries the same fingerprint);
    `read_apart` sets fields read some other way (vs_base_p and its interval from their index).
    """
    kwargs: dict[str, Any] = dict(read_apart)
    for key, value in values.items():
        name = _FIELD_OF.get(key)
        if name is None:
            continue
        if name in JSON_FIELDS and value is not None:
            # Only fingerprints repeat: one per evaluation.
            value = _parsed(value, parsed if name == "fingerprint" else None)
        elif name == "comparable":
            value = bool(value)
        elif name == "vs_base_p":
            value = p_value_as_read(value)
        kwargs[name] = value
    return Score(**kwargs)


def headline_rows(scores: Iterable[Score], *model_kinds: str) -> dict[str, Score]:
    """The score that stands for each top-level task of a model (MMLU's subjects are folded into its `mmlu` row), by
    task: of a task recorded twice, the later one (`scores` in the order they were recorded)."""
    return {score.task: score for score in scores if score.model_kind in model_kinds and score.task_group is None}


def p_value_as_read(stored: float | None) -> float | None:
    """A stored vs_base_p as readers see it: NO_P_VALUE (checked, no test possible; below 0) is no p-value."""
    return None if stored is None or stored < 0 else stored


def to_json(score: Score) -> dict[str, Any]:
    """A score as JSON output shows it: every field but those never read back."""
    return {name: getattr(score, name) for name in FIELDS if name not in NOT_READ_BACK}


def _parsed(text: str, cache: dict[str, Any] | None) -> Any:
    if cache is None:
        return json.loads(text)
    found = cache.get(text)
    if found is None:
        found = cache[text] = json.loads(text)
    return found
