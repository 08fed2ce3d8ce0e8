"""Compare two runs: the spec keys that differ, score deltas with significance, loss curves, flipped items, and
what each wrote for the same prompts."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
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


# --- more than two runs: each against the first ---------------------------------------------------------------


@dataclass
class SpecValues:
    key: str
    values: list[str]  # one per run, in the comparison's order ("(not set)" where a run's spec lacks the key)


@dataclass
class ScoreRow:
    task: str
    metric: str
    values: list[float | None]  # one per run
    versus_first: list[ScoreDelta | None]  # each run after the first against the first (None: no score to pair)


@dataclass
class ManyComparison:
    """Runs side by side: the spec keys that differ among them, their scores, each against the first with
    McNemar's test (MMLU pooled, as for two runs), their loss curves overlaid and their samples."""

    run_ids: list[int]
    names: list[str]
    spec_differences: list[SpecValues]
    scores: list[ScoreRow]
    charts: dict[str, Chart]  # "loss": every run's training loss, when any has some
    pairs: list[Comparison]  # the first run against each other one (flipped items, MMLU subjects)
    samples: list[SampleRow] = field(default_factory=list)
    significance_level: float = SIGNIFICANCE_LEVEL

    @property
    def labels(self) -> list[str]:
        return [f"#{run_id} {name}" for run_id, name in zip(self.run_ids, self.names, strict=True)]


def spec_values(specs: list[dict]) -> list[SpecValues]:
    """The keys whose values are not the same in every spec (the experiment's name aside), with each value."""
    flat = [flatten(spec) for spec in specs]
    missing = "(not set)"
    keys = sorted(set().union(*flat) - {"experiment.name"})
    rows = [SpecValues(key, [json.dumps(f[key]) if key in f else missing for f in flat]) for key in keys]
    return [row for row in rows if len(set(row.values)) > 1]


def build_many_comparison(registry: Registry, run_ids: list[int]) -> ManyComparison:
    """`run_ids` (two or more) side by side; the tests and deltas are each run's against the first."""
    details = [run_detail(registry, run_id) for run_id in run_ids]
    pairs = [build_comparison(registry, run_ids[0], other) for other in run_ids[1:]]
    headlines = [headline_rows(detail.scores, "finetuned") for detail in details]
    scores = []
    for task in display_order([task for rows in headlines for task in rows]):
        found = [rows.get(task) for rows in headlines]
        metric = next(row.metric for row in found if row is not None)
        versus = [next((s for s in pair.scores if s.task == task and s.delta is not None), None) for pair in pairs]
        scores.append(ScoreRow(task, metric, [row.value if row else None for row in found], versus))
    names = [detail.summary.name for detail in details]
    labels = [f"#{run_id} {name}" for run_id, name in zip(run_ids, names, strict=True)]
    loss = line_spec([loss_series(detail, label) for detail, label in zip(details, labels, strict=True)],
                     title="Training loss", xlabel="step", ylabel="loss")
    return ManyComparison(run_ids, names, spec_values([detail.spec for detail in details]), scores,
                          {"loss": loss} if loss is not None else {}, pairs, side_by_side(details))


def comparison_json(comparison: Comparison | ManyComparison) -> dict[str, Any]:
    """A comparison as `compare --json` prints it: everything but the chart data."""
    data = asdict(comparison)
    data.pop("charts")
    for pair in data.get("pairs", []):
        pair.pop("charts")
    return data
