"""Write what a run produces: checkpoints, training metrics, evaluation results."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from tunelab.registry.db import Registry
from tunelab.registry.models import Checkpoint, EvalCacheEntry, EvalResult, FileDigest, TrainMetric
from tunelab.registry.significance import NO_P_VALUE, UNTESTED_METRICS, PairingError, pooled_p_value


@dataclass(frozen=True)
class MetricPoint:
    step: int
    epoch: float | None = None
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    eval_loss: float | None = None  # validation loss, on a point of its own


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
    model_digest: str | None = None  # sha256 of the scored weights, where known (runner/evaluation/cache.py)


def record_checkpoint(registry: Registry, run_id: int, step: int, loss: float | None, path: str) -> None:
    with registry.session() as session:
        session.add(Checkpoint(run_id=run_id, step=step, loss=loss, path=path))
        session.commit()


def record_metrics(registry: Registry, run_id: int, points: Iterable[MetricPoint]) -> None:
    """Insert metric rows in one transaction, as one executemany: training writes them in batches while it
    runs (runner/training/registry_hooks.py) and ORM objects would cost ten times as much per row."""
    rows = [{"run_id": run_id, "step": point.step, "epoch": point.epoch, "loss": point.loss,
             "learning_rate": point.learning_rate, "grad_norm": point.grad_norm, "eval_loss": point.eval_loss}
            for point in points]
    if not rows:
        return
    with registry.session() as session:
        session.exec(insert(TrainMetric), params=rows)
        session.commit()


def record_scores(registry: Registry, run_id: int | None, scores: Iterable[ScoreRecord]) -> None:
    """Store scores; run_id None for a model that belongs to no run (`tunelab eval` of a path or hub id).

    Once a run has both a fine-tuned score and its base's, with per-item logs, the fine-tuned score gets its
    McNemar p-value against the base (whichever of the two is recorded last sets it).
    """
    scores = list(scores)
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
                    model_digest=score.model_digest,
                )
            )
        session.commit()
    if run_id is not None and any(score.model_kind in ("finetuned", "base") for score in scores):
        update_vs_base_p(registry, run_id)


def record_cached_evaluation(
    registry: Registry, *, key: str, task: str, model_digest: str, lm_eval_version: str, payload: dict
) -> bool:
    """Store one benchmark's result under its cache key; False when another process stored that key first."""
    with registry.session() as session:
        session.add(EvalCacheEntry(key=key, task=task, model_digest=model_digest, lm_eval_version=lm_eval_version,
                                   payload_json=json.dumps(payload)))
        try:
            session.commit()
        except IntegrityError:
            # The same key means the same result: whichever process wrote it first is as good as ours.
            session.rollback()
            return False
    return True


def forget_cached_evaluations(registry: Registry, keys: Iterable[str]) -> None:
    """Drop cache entries (a forced re-evaluation replaces them)."""
    from sqlmodel import delete

    keys = list(keys)
    with registry.session() as session:
        session.exec(delete(EvalCacheEntry).where(EvalCacheEntry.key.in_(keys)))
        session.commit()


def record_file_digest(registry: Registry, *, path: str, size: int, mtime_ns: int, sha256: str) -> None:
    """Remember a file's sha256 for its current size and mtime (replacing what was known of that path)."""
    with registry.session() as session:
        row = session.exec(select(FileDigest).where(FileDigest.path == path)).first()
        if row is None:
            session.add(FileDigest(path=path, size=size, mtime_ns=mtime_ns, sha256=sha256))
        else:
            row.size, row.mtime_ns, row.sha256 = size, mtime_ns, sha256
            session.add(row)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()  # another process recorded the same path at the same moment; either row will do


def update_vs_base_p(registry: Registry, run_id: int) -> int:
    """Set vs_base_p on the run's fine-tuned headline scores that lack it, where both per-item logs exist.

    A group's headline score (MMLU) has no log of its own: its test pools the items of its members. A base
    whose scores were reused from an earlier identical evaluation is copied without logs; its logs are then
    read from the evaluation it was copied from. A score with both models' scores recorded whose test cannot be
    made (different items, a base log that is gone, subjects logged for one model only, outcomes that are not
    right/wrong, an MC2 score) gets NO_P_VALUE, so that its logs are not read again. Revision 0012 did the same
    once for the scores recorded before this existed. Returns how many scores got a p-value.
    """
    with registry.session() as session:
        rows = session.exec(
            select(EvalResult.id, EvalResult.model_kind, EvalResult.model_name, EvalResult.task, EvalResult.metric,
                   EvalResult.task_group, EvalResult.fingerprint_json)
            .where(EvalResult.run_id == run_id, EvalResult.model_kind.in_(("finetuned", "base")))
        ).all()
        logged = set(session.exec(
            select(EvalResult.id).where(EvalResult.run_id == run_id, EvalResult.samples_json.is_not(None))
        ).all())
        pending = set(session.exec(
            select(EvalResult.id).where(EvalResult.run_id == run_id, EvalResult.model_kind == "finetuned",
                                        EvalResult.task_group.is_(None), EvalResult.vs_base_p.is_(None))
        ).all())
        tuned = {row.task: row for row in rows if row.model_kind == "finetuned"}
        base = {row.task: row for row in rows if row.model_kind == "base"}
        updated = 0
        for task, row in tuned.items():
            if row.id not in pending or task not in base:
                continue
            members = [task] if row.id in logged else sorted(t for t, r in tuned.items() if r.task_group == task)
            if not any(tuned[m].id in logged for m in members):
                continue  # no log of the fine-tuned model: nothing to test
            p_value = _paired_p_value(session, run_id, row.metric, members, tuned, base, logged)
            session.exec(update(EvalResult).where(EvalResult.id == row.id)
                         .values(vs_base_p=NO_P_VALUE if p_value is None else p_value))
            if p_value is not None:
                updated += 1
        session.commit()
    return updated


def _paired_p_value(session, run_id: int, metric: str, members: list[str], tuned: dict, base: dict,
                    logged: set[int]) -> float | None:
    """McNemar's p-value of the fine-tuned model against its base over `members`' logs; None if there is none.

    Every member must be logged for both models: a test of some of MMLU's subjects is no test of MMLU.
    """
    if metric in UNTESTED_METRICS or any(m not in base or tuned[m].id not in logged for m in members):
        return None
    base_logs = [_base_log(session, run_id, base[m], base[m].id in logged) for m in members]
    if any(log is None for log in base_logs):
        return None
    tuned_logs = [_log_of(session, tuned[m].id) for m in members]
    try:
        return pooled_p_value(list(zip(base_logs, tuned_logs, strict=True)))
    except PairingError:
        return None  # the two evaluations scored different items: there is no paired test


def _log_of(session, result_id: int) -> list[dict]:
    text = session.exec(select(EvalResult.samples_json).where(EvalResult.id == result_id)).one()
    return json.loads(text)


def _base_log(session, run_id: int, row, has_log: bool) -> list[dict] | None:
    """The per-item log of a run's base score: its own, or that of the evaluation it was reused from."""
    if has_log:
        return _log_of(session, row.id)
    eval_key = json.loads(row.fingerprint_json).get("eval_key")
    if eval_key is None:
        return None
    candidates = session.exec(
        select(EvalResult.id, EvalResult.fingerprint_json)
        .where(EvalResult.model_kind == "base", EvalResult.model_name == row.model_name, EvalResult.task == row.task,
               EvalResult.run_id != run_id, EvalResult.samples_json.is_not(None))
        .order_by(EvalResult.id.desc())
    ).all()
    for candidate in candidates:
        if json.loads(candidate.fingerprint_json).get("eval_key") == eval_key:
            return _log_of(session, candidate.id)
    return None
