"""Compare two runs: the spec keys that differ, score deltas with significance, loss curves, flipped items, and
what each wrote for the same prompts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tunelab.experiments.benchmarks import display_order
from tunelab.registry.db import Registry
from tunelab.registry.queries import RunDetail, group_samples, run_detail, samples_of
from tunelab.registry.scores import headline_rows
from tunelab.registry.significance import PairingError, pooled_p_value
from tunelab.reports.charts import Chart, line_spec
from tunelab.reports.flips import flipped_items
from tunelab.reports.marks import SIGNIFICANCE_LEVEL, delta_class, delta_text, significant
from tunelab.reports.run_page import loss_series
from tunelab.reports.scores import SubjectDelta, group_scores, subject_deltas


@dataclass
class SpecDifference:
    key: str
    a: str
    b: str


@dataclass
class ScoreDelta:
    task: str
    metric: str
    a: float | None
    b: float | None
    delta: float | None
    p_value: float | None = None  # McNemar's exact test on the items both models answered (MMLU: all subjects')
    # Items right for one model and wrong for the other (an MMLU item with its subject).
    flips: list[dict] = field(default_factory=list)

    @property
    def delta_text(self) -> str:
        return delta_text(self.delta)

    @property
    def delta_class(self) -> str:
        return delta_class(self.delta)

    @property
    def significant(self) -> bool:
        return significant(self.p_value)


@dataclass
class SampleRow:
    """One prompt of [eval.samples] and what each compared run's fine-tuned model wrote (None: not asked)."""

    prompt: str
    reference: str | None
    base: str | None  # the base model's output, from the first run that has one
    outputs: list[str | None]  # one per run, in the comparison's order


def side_by_side(details: list[RunDetail]) -> list[SampleRow]:
    """The runs' samples matched by prompt text, in the order the prompts first appear (first run first)."""
    rows: dict[str, SampleRow] = {}
    for index, detail in enumerate(details):
        for pair in detail.samples:
            row = rows.setdefault(pair.prompt, SampleRow(pair.prompt, pair.reference, None, [None] * len(details)))
            row.outputs[index] = pair.finetuned
            row.base = row.base if row.base is not None else pair.base
            row.reference = row.reference if row.reference is not None else pair.reference
    return list(rows.values())


@dataclass
class Comparison:
    a_id: int
    b_id: int
    a_name: str
    b_name: str
    spec_differences: list[SpecDifference]
    scores: list[ScoreDelta]
    charts: dict[str, Chart]  # "loss": both runs' training loss, when either has some
    # MMLU subjects, A against B, worst change first (B - A): what B lost relative to A.
    subjects: list[SubjectDelta] = field(default_factory=list)
    significance_level: float = SIGNIFICANCE_LEVEL  # a delta with a p-value below it is marked
    samples: list[SampleRow] = field(default_factory=list)  # outputs: [A's, B's]


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"train": {"learning_rate": 1e-3}} -> {"train.learning_rate": 1e-3}; lists stay values."""
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else key))
    return flat


def spec_differences(a: dict, b: dict) -> list[SpecDifference]:
    fa, fb = flatten(a), flatten(b)
    missing = "(not set)"
    return [
        SpecDifference(key, json.dumps(fa[key]) if key in fa else missing,
                       json.dumps(fb[key]) if key in fb else missing)
        for key in sorted(set(fa) | set(fb))
        if fa.get(key, missing) != fb.get(key, missing) and key != "experiment.name"
    ]


def _logs(registry: Registry, run_id: int, task: str, members: list[str]) -> dict[str, list[dict]] | None:
    """A run's fine-tuned per-item logs of `task`, by task: its own log, or for a group (MMLU) every member's;
    None where one is missing."""
    if not members:
        log = samples_of(registry, run_id, "finetuned", task)
        return {task: log} if log else None
    logs = group_samples(registry, run_id, "finetuned", task)
    return logs if set(logs) == set(members) else None


def _paired(a_logs: dict[str, list[dict]], b_logs: dict[str, list[dict]], *,
            grouped: bool) -> tuple[float | None, list[dict]]:
    """McNemar's exact p-value and the flipped items, from two runs' logs of one task (`_logs`).

    A group's items (MMLU's subjects) are pooled, as the leaderboard pools them against the base: the p-value
    needs every member logged for both runs (a test of some subjects is no test of MMLU); flips are listed for
    the members both logged, each with its subject.
    """
    common = [task for task in a_logs if task in b_logs]
    complete = len(common) == len(a_logs) == len(b_logs)
    try:
        p_value = pooled_p_value([(a_logs[t], b_logs[t]) for t in common]) if common and complete else None
        flips = []
        for task in common:
            details = {int(s["doc_id"]): s for s in b_logs[task]}
            for flip in flipped_items(a_logs[task], b_logs[task]):
                # Named for the comparison (A and B), with the item's text where the log kept it.
                flip["a_pick"], flip["b_pick"] = flip.pop("pick_before"), flip.pop("pick_after")
                item = details.get(flip["doc_id"], {})
                flip["question"], flip["choices"] = item.get("question"), item.get("choices")
                flip["subject"] = task.removeprefix("mmlu_").replace("_", " ") if grouped else None
                flips.append(flip)
    except PairingError:
        return None, []  # the two evaluations did not score the same items: no paired test
    return p_value, flips


def _members(detail: RunDetail, task: str) -> list[str]:
    return sorted(s.task for s in detail.scores if s.model_kind == "finetuned" and s.task_group == task)


def build_comparison(registry: Registry, a_id: int, b_id: int) -> Comparison:
    a, b = run_detail(registry, a_id), run_detail(registry, b_id)
    ha, hb = headline_rows(a.scores, "finetuned"), headline_rows(b.scores, "finetuned")
    scores = []
    for task in display_order([*ha, *hb]):
        ra, rb = ha.get(task), hb.get(task)
        delta = rb.value - ra.value if ra and rb else None
        p_value, flips = None, []
        if ra and rb:
            members_a, members_b = _members(a, task), _members(b, task)
            a_logs, b_logs = _logs(registry, a_id, task, members_a), _logs(registry, b_id, task, members_b)
            if a_logs and b_logs:
                p_value, flips = _paired(a_logs, b_logs, grouped=bool(members_a or members_b))
        scores.append(ScoreDelta(task, (ra or rb).metric, ra.value if ra else None, rb.value if rb else None,
                                 delta, p_value, flips))
    label_a, label_b = f"#{a_id} {a.summary.name}", f"#{b_id} {b.summary.name}"
    loss = line_spec([loss_series(a, label_a), loss_series(b, label_b)], title="Training loss", xlabel="step",
                     ylabel="loss")
    subjects_a, subjects_b = group_scores(a.scores, "finetuned"), group_scores(b.scores, "finetuned")
    subjects = subject_deltas(subjects_a, subjects_b) if subjects_a and subjects_b else []
    return Comparison(a_id, b_id, a.summary.name, b.summary.name, spec_differences(a.spec, b.spec), scores,
                      {"loss": loss} if loss is not None else {}, subjects, samples=side_by_side([a, b]))
