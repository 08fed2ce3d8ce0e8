"""Compare two runs: the spec keys that differ, score deltas with significance, loss curves, flipped items."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tunelab.experiments.benchmarks import display_order
from tunelab.registry.db import Registry
from tunelab.registry.queries import run_detail
from tunelab.registry.scores import headline_rows
from tunelab.reports.charts import Chart, line_spec
from tunelab.reports.marks import SIGNIFICANCE_LEVEL, delta_class, significant
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
    p_value: float | None = None  # McNemar's exact test on the items both models answered
    flips: list[dict] = field(default_factory=list)  # items right for one model and wrong for the other

    @property
    def delta_class(self) -> str:
        return delta_class(self.delta)

    @property
    def significant(self) -> bool:
        return significant(self.p_value)


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


def _samples(registry: Registry, run_id: int, task: str) -> list[dict] | None:
    from tunelab.registry.queries import samples_of

    return samples_of(registry, run_id, "finetuned", task)


def _paired(a_samples: list[dict] | None, b_samples: list[dict] | None) -> tuple[float | None, list[dict]]:
    """McNemar's exact p-value and the flipped items, from two per-item logs of the same task."""
    if not a_samples or not b_samples:
        return None, []
    from tunelab.reports.flips import FlipError, flip_summary, flipped_items

    try:
        summary = flip_summary("", a_samples, b_samples)
        flips = flipped_items(a_samples, b_samples)
    except FlipError:
        return None, []  # the two evaluations did not score the same items: no paired test
    details = {int(s["doc_id"]): s for s in b_samples}
    for flip in flips:
        # Named for the comparison (A and B), with the item's text where the log kept it.
        flip["a_pick"], flip["b_pick"] = flip.pop("pick_before"), flip.pop("pick_after")
        item = details.get(flip["doc_id"], {})
        flip["question"], flip["choices"] = item.get("question"), item.get("choices")
    return summary.p_value, flips


def build_comparison(registry: Registry, a_id: int, b_id: int) -> Comparison:
    a, b = run_detail(registry, a_id), run_detail(registry, b_id)
    ha, hb = headline_rows(a.scores, "finetuned"), headline_rows(b.scores, "finetuned")
    scores = []
    for task in display_order([*ha, *hb]):
        ra, rb = ha.get(task), hb.get(task)
        delta = rb.value - ra.value if ra and rb else None
        p_value, flips = _paired(_samples(registry, a_id, task), _samples(registry, b_id, task)) if ra and rb else (
            None, [])
        scores.append(ScoreDelta(task, (ra or rb).metric, ra.value if ra else None, rb.value if rb else None,
                                 delta, p_value, flips))
    label_a, label_b = f"#{a_id} {a.summary.name}", f"#{b_id} {b.summary.name}"
    loss = line_spec([loss_series(a, label_a), loss_series(b, label_b)], title="Training loss", xlabel="step",
                     ylabel="loss")
    subjects_a, subjects_b = group_scores(a.scores, "finetuned"), group_scores(b.scores, "finetuned")
    subjects = subject_deltas(subjects_a, subjects_b) if subjects_a and subjects_b else []
    return Comparison(a_id, b_id, a.summary.name, b.summary.name, spec_differences(a.spec, b.spec), scores,
                      {"loss": loss} if loss is not None else {}, subjects)
