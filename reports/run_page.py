"""The run page view model: spec, lineage, environment, checkpoints, curves, per-subject MMLU, fingerprint."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from registry.db import Registry
from registry.queries import RunDetail, run_detail
from reports.charts import Series, bar_chart, line_chart
from reports.scores import BENCHMARKS


@dataclass
class ScoreLine:
    task: str
    metric: str
    value: float
    base: float | None
    delta: float | None
    stderr: float | None
    num_fewshot: int
    comparable: bool


@dataclass
class RunPage:
    run_id: int
    name: str
    status: str
    method: str
    base_model: str
    description: str
    tags: list[str]
    error: str | None
    spec_toml: str
    spec_json: str
    facts: list[tuple[str, str]]
    checkpoints: list[dict]
    scores: list[ScoreLine]
    loss_svg: str | None
    lr_svg: str | None
    mmlu_svg: str | None
    fingerprint_json: str
    environment_json: str | None = None
    lineage: list[str] = field(default_factory=list)


def _score_lines(detail: RunDetail) -> list[ScoreLine]:
    tuned = {r.task: r for r in detail.scores if r.model_kind == "finetuned" and r.task_group is None}
    base = {r.task: r for r in detail.scores if r.model_kind == "base" and r.task_group is None}
    order = [t for t in BENCHMARKS if t in tuned] + sorted(set(tuned) - set(BENCHMARKS))
    lines = []
    for task in order:
        row, base_row = tuned[task], base.get(task)
        lines.append(ScoreLine(task, row.metric, row.value, base_row.value if base_row else None,
                               row.value - base_row.value if base_row else None, row.stderr, row.num_fewshot,
                               row.comparable))
    return lines


def _mmlu_chart(detail: RunDetail) -> str | None:
    tuned = {r.task: r.value for r in detail.scores if r.model_kind == "finetuned" and r.task_group == "mmlu"}
    base = {r.task: r.value for r in detail.scores if r.model_kind == "base" and r.task_group == "mmlu"}
    subjects = sorted(tuned)
    reference = [base.get(s, float("nan")) for s in subjects] if base else None
    labels = [s.removeprefix("mmlu_") for s in subjects]
    return bar_chart(labels, [tuned[s] for s in subjects], title="MMLU per subject (acc)", xlabel="accuracy",
                     reference=reference)


def loss_series(detail: RunDetail, label: str = "train loss") -> Series:
    points = [(m["step"], m["loss"]) for m in detail.metrics if m["loss"] is not None]
    return Series(label, [p[0] for p in points], [p[1] for p in points])


def build_run_page(registry: Registry, run_id: int) -> RunPage:
    detail = run_detail(registry, run_id)
    s = detail.summary
    lr = [(m["step"], m["learning_rate"]) for m in detail.metrics if m["learning_rate"] is not None]
    facts = [
        ("experiment", str(s.experiment_id)),
        ("spec file", detail.spec_path),
        ("spec hash", detail.spec_hash),
        ("submitted from", detail.workdir),
        ("output", detail.output_dir or "-"),
        ("created", s.created_at.isoformat(timespec="seconds") if s.created_at else "-"),
        ("finished", s.finished_at.isoformat(timespec="seconds") if s.finished_at else "-"),
        ("training examples", str(detail.num_train_examples) if detail.num_train_examples is not None else "-"),
        ("train time", f"{detail.train_seconds:.1f} s" if detail.train_seconds is not None else "-"),
        ("final loss", f"{s.final_loss:.4f}" if s.final_loss is not None else "-"),
    ]
    fingerprint = next((r.fingerprint for r in detail.scores if r.model_kind == "finetuned"), {})
    environment = getattr(detail, "environment", None)
    return RunPage(
        run_id=s.run_id, name=s.name, status=s.status, method=s.method, base_model=s.base_model,
        description=detail.spec.get("experiment", {}).get("description", ""), tags=s.tags, error=s.error,
        spec_toml=detail.spec_text, spec_json=json.dumps(detail.spec, indent=2, sort_keys=True), facts=facts,
        checkpoints=detail.checkpoints, scores=_score_lines(detail),
        loss_svg=line_chart([loss_series(detail)], title="Training loss", xlabel="step", ylabel="loss"),
        lr_svg=line_chart([Series("learning rate", [p[0] for p in lr], [p[1] for p in lr])],
                          title="Learning rate", xlabel="step", ylabel="lr"),
        mmlu_svg=_mmlu_chart(detail),
        fingerprint_json=json.dumps(fingerprint, indent=2, sort_keys=True),
        environment_json=json.dumps(environment, indent=2, sort_keys=True) if environment else None,
        lineage=[f"base model {s.base_model}"],
    )
