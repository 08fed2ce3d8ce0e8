"""Write what a run produces: its training facts, checkpoints, training metrics, evaluation results; and take
back what an attempt recorded that the next one redoes (a resume's rewind, pruned checkpoints, scores).

A run's status changes are not here: they are all in registry/run_state.py.

Fencing: a worker passes `held_by` (its name, which the run holds while it is the run's owner) to every write of a
run it executes; the write's own transaction first checks, and locks, the run row as still running under that
name, so a worker that stalled past --stale-after and lost the run (or a training process whose worker died)
writes nothing: RunNotHeld.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from sqlalchemy import delete, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from tunelab.registry.db import Registry
from tunelab.registry.errors import RunNotHeld
from tunelab.registry.models import (
    Checkpoint,
    CompletionSample,
    EvalCacheEntry,
    EvalResult,
    FileDigest,
    GeneratedSample,
    GenerationCacheEntry,
    Run,
    TrainMetric,
)
from tunelab.registry.run_status import RunStatus
from tunelab.registry.samples import GeneratedText
from tunelab.registry.scores import Score, to_columns
from tunelab.registry.significance import (
    NO_P_VALUE,
    UNTESTED_METRICS,
    PairingError,
    bootstrap_interval,
    paired_differences,
    pooled_p_value,
)


@dataclass(frozen=True)
class MetricPoint:
    step: int
    epoch: float | None = None
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    eval_loss: float | None = None  # validation loss, on a point of its own
    # Online RL's figures of the step, on a point of their own (registry/models.py TrainMetric).
    reward: float | None = None
    reward_std: float | None = None
    kl: float | None = None
    completion_length: float | None = None


@dataclass(frozen=True)
class SampleCompletion:
    """One completion online RL generated, kept to be shown: its prompt, the completion and its reward."""

    prompt: str
    completion: str
    reward: float | None


@dataclass(frozen=True)
class KeptCheckpoint:
    """A complete checkpoint that exists on disk, as the runner found it."""

    step: int
    loss: float | None
    path: str


def _fence(session, run_id: int, held_by: str | None) -> None:
    """Within a write's transaction: the run must be running under `held_by` (None: an unfenced write, by a command
    that holds no run). A no-op update of the run row, so the check holds until the commit: it takes SQLite's write
    lock and PostgreSQL's row lock, and a re-queue or claim of the run waits for it."""
    if held_by is None:
        return
    held = session.exec(update(Run).where(Run.id == run_id, Run.status == RunStatus.running.value,
                                          Run.worker == held_by).values(worker=held_by))
    if held.rowcount != 1:
        session.rollback()
        raise RunNotHeld(f"run {run_id} is no longer held by {held_by}: another worker took it over")


def ensure_held(registry: Registry, run_id: int, held_by: str | None) -> None:
    """Raise RunNotHeld unless the run is running under `held_by`: checked just before a file of the run (a
    checkpoint, the final weights) is renamed into place, which no transaction covers."""
    with registry.session() as session:
        _fence(session, run_id, held_by)
        session.rollback()


# What executing a run records (other kinds come from other commands).
RUN_SCORE_KINDS = ("finetuned", "base")


def update_run(registry: Registry, run_id: int, *, held_by: str | None = None, **values) -> None:
    """Set training facts on a run (output dir, train time, final loss, data size, progress, lineage)."""
    with registry.session() as session:
        _fence(session, run_id, held_by)
        session.exec(update(Run).where(Run.id == run_id).values(**values))
        session.commit()


def record_checkpoint(registry: Registry, run_id: int, step: int, loss: float | None, path: str, *,
                      held_by: str | None = None) -> None:
    with registry.session() as session:
        _fence(session, run_id, held_by)
        session.add(Checkpoint(run_id=run_id, step=step, loss=loss, path=path))
        session.commit()


def record_metrics(registry: Registry, run_id: int, points: Iterable[MetricPoint], *,
                   held_by: str | None = None) -> None:
    """Insert metric rows in one transaction, as one executemany: training writes them in batches while it
    runs (runner/training/registry_hooks.py) and ORM objects would cost ten times as much per row."""
    rows = [{"run_id": run_id, **asdict(point)} for point in points]
    if not rows:
        return
    with registry.session() as session:
        _fence(session, run_id, held_by)
        session.exec(insert(TrainMetric), params=rows)
        session.commit()


def record_completions(registry: Registry, run_id: int, step: int, samples: Iterable[SampleCompletion], *,
                       held_by: str | None = None) -> None:
    """Keep completions online RL generated for step `step`."""
    with registry.session() as session:
        _fence(session, run_id, held_by)
        for sample in samples:
            session.add(CompletionSample(run_id=run_id, step=step, **asdict(sample)))
        session.commit()


def record_scores(registry: Registry, run_id: int | None, scores: Iterable[Score], *,
                  held_by: str | None = None) -> None:
    """Store scores; run_id None for a model that belongs to no run (`tunelab eval` of a path or hub id).

    Once a run has both a fine-tuned score and its base's, with per-item logs, the fine-tuned score gets its
    McNemar p-value against the base (whichever of the two is recorded last sets it).
    """
    scores = list(scores)
    for score in scores:
        if not score.model_kind or not score.model_name:
            raise ValueError(f"score of {score.task} recorded without saying whose it is (model_kind, model_name)")
    with registry.session() as session:
        if run_id is not None:
            _fence(session, run_id, held_by)
        for score in scores:
            session.add(EvalResult(run_id=run_id, **to_columns(score)))
        session.commit()
    if run_id is not None and any(score.model_kind in RUN_SCORE_KINDS for score in scores):
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
            .where(EvalResult.run_id == run_id, EvalResult.model_kind.in_(RUN_SCORE_KINDS))
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
            p_value, interval = _paired_tests(session, run_id, row.metric, members, tuned, base, logged)
            low, high = interval if interval is not None else (None, None)
            session.exec(update(EvalResult).where(EvalResult.id == row.id)
                         .values(vs_base_p=NO_P_VALUE if p_value is None else p_value, vs_base_ci_low=low,
                                 vs_base_ci_high=high))
            if p_value is not None:
                updated += 1
        session.commit()
    return updated


def _paired_tests(session, run_id: int, metric: str, members: list[str], tuned: dict, base: dict,
                  logged: set[int]) -> tuple[float | None, tuple[float, float] | None]:
    """McNemar's p-value of the fine-tuned model against its base over `members`' logs, and the paired-bootstrap
    interval of the change (each None where there is none).

    Every member must be logged for both models: a test of some of MMLU's subjects is no test of MMLU.
    """
    if any(m not in base or tuned[m].id not in logged for m in members):
        return None, None
    base_logs = [_base_log(session, run_id, base[m], base[m].id in logged) for m in members]
    if any(log is None for log in base_logs):
        return None, None
    pairs = list(zip(base_logs, [_log_of(session, tuned[m].id) for m in members], strict=True))
    try:
        p_value = None if metric in UNTESTED_METRICS else pooled_p_value(pairs)
        strata = [paired_differences(before, after) for before, after in pairs]
    except PairingError:
        return None, None  # the two evaluations scored different items: there is no paired test
    interval = None if any(s is None for s in strata) else bootstrap_interval(strata)
    return p_value, interval


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


def rewind(registry: Registry, run_id: int, step: int, kept: Iterable[KeptCheckpoint], *,
           held_by: str | None = None) -> int:
    """Make the registry match a run resuming at `step` with the checkpoints `kept` on disk.

    Training metrics and sample completions after `step` are deleted (they will be logged again, identically), and
    the checkpoint rows become exactly the kept checkpoints. The number of metric rows deleted.
    """
    kept = list(kept)
    with registry.session() as session:
        _fence(session, run_id, held_by)
        deleted = session.exec(delete(TrainMetric).where(TrainMetric.run_id == run_id, TrainMetric.step > step))
        session.exec(delete(CompletionSample).where(CompletionSample.run_id == run_id, CompletionSample.step > step))
        session.exec(delete(Checkpoint).where(Checkpoint.run_id == run_id,
                                              Checkpoint.step.not_in([c.step for c in kept])))
        recorded = set(session.exec(select(Checkpoint.step).where(Checkpoint.run_id == run_id)).all())
        for checkpoint in kept:
            # Written to disk but killed before it was recorded: record it now.
            if checkpoint.step not in recorded:
                session.add(Checkpoint(run_id=run_id, step=checkpoint.step, loss=checkpoint.loss,
                                       path=checkpoint.path))
        session.commit()
    return deleted.rowcount


def forget_checkpoints(registry: Registry, run_id: int, steps: Iterable[int], *, held_by: str | None = None) -> None:
    """Drop the rows of checkpoints pruned from disk (`[train] keep_checkpoints`)."""
    steps = list(steps)
    if not steps:
        return
    with registry.session() as session:
        _fence(session, run_id, held_by)
        session.exec(delete(Checkpoint).where(Checkpoint.run_id == run_id, Checkpoint.step.in_(steps)))
        session.commit()


def forget_scores(registry: Registry, run_id: int, *, held_by: str | None = None) -> None:
    """Drop the scores a run's own evaluation recorded; a new attempt evaluates again from the start."""
    with registry.session() as session:
        _fence(session, run_id, held_by)
        session.exec(delete(EvalResult).where(EvalResult.run_id == run_id,
                                              EvalResult.model_kind.in_(RUN_SCORE_KINDS)))
        session.commit()


def record_samples(registry: Registry, run_id: int, model_kind: str, texts: Iterable[GeneratedText], *,
                   settings: dict, model_digest: str | None = None, held_by: str | None = None) -> None:
    """Store what one model of a run ("finetuned" or "base") wrote for each of the run's sample prompts."""
    settings_json = json.dumps(settings, sort_keys=True)
    with registry.session() as session:
        _fence(session, run_id, held_by)
        for text in texts:
            session.add(GeneratedSample(run_id=run_id, model_kind=model_kind, position=text.position,
                                        prompt=text.prompt, reference=text.reference, output=text.output,
                                        settings_json=settings_json, model_digest=model_digest))
        session.commit()


def forget_samples(registry: Registry, run_id: int, *, held_by: str | None = None) -> None:
    """Drop a run's samples; a new attempt generates them again (from the cache where it can)."""
    with registry.session() as session:
        _fence(session, run_id, held_by)
        session.exec(delete(GeneratedSample).where(GeneratedSample.run_id == run_id))
        session.commit()


def record_cached_generation(registry: Registry, *, key: str, model_digest: str, outputs: list[str]) -> bool:
    """Store a model's outputs for a list of prompts under their cache key; False when another process did first."""
    with registry.session() as session:
        session.add(GenerationCacheEntry(key=key, model_digest=model_digest, payload_json=json.dumps(outputs)))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()  # the same key means the same outputs
            return False
    return True
