"""Write what a run produces: checkpoints, training metrics, evaluation results."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from registry.db import Registry
from registry.models import Checkpoint, EvalResult, TrainMetric


@dataclass(frozen=True)
class MetricPoint:
    step: int
    epoch: float | None = None
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None


@dataclass(frozen=True)
class ScoreRecord:
    """One score of one evaluated model, as the registry stores it."""

    model_kind: str  # "finetuned" | "base"
    model_name: str
    task: str
    metric: str
    value: float
    stderr: float | None
    num_fewshot: int
    limit: int
    n_samples: int | None
    task_group: str | None
    comparable: bool
    lm_eval_version: str
    fingerprint: dict = field(default_factory=dict)
    samples: list[dict] | None = None


def record_checkpoint(registry: Registry, run_id: int, step: int, loss: float | None, path: str) -> None:
    with registry.session() as session:
        session.add(Checkpoint(run_id=run_id, step=step, loss=loss, path=path))
        session.commit()


def record_metrics(registry: Registry, run_id: int, points: Iterable[MetricPoint]) -> None:
    with registry.session() as session:
        for point in points:
            session.add(TrainMetric(run_id=run_id, step=point.step, epoch=point.epoch, loss=point.loss,
                                    learning_rate=point.learning_rate, grad_norm=point.grad_norm))
        session.commit()


def record_scores(registry: Registry, run_id: int, scores: Iterable[ScoreRecord]) -> None:
    with registry.session() as session:
        for score in scores:
            session.add(
                EvalResult(
                    run_id=run_id,
                    model_kind=score.model_kind,
                    model_name=score.model_name,
                    task=score.task,
                    metric=score.metric,
                    value=score.value,
                    stderr=score.stderr,
                    num_fewshot=score.num_fewshot,
                    limit=score.limit,
                    n_samples=score.n_samples,
                    task_group=score.task_group,
                    comparable=score.comparable,
                    lm_eval_version=score.lm_eval_version,
                    fingerprint_json=json.dumps(score.fingerprint, sort_keys=True),
                    samples_json=json.dumps(score.samples) if score.samples is not None else None,
                )
            )
        session.commit()
