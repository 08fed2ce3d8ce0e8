"""The p-value against its base of every fine-tuned score recorded before p-values were stored.

Revision 0009 added evalresult.vs_base_p, set as scores are recorded (registry/recording.py); the older scores
were filled in by each `tunelab report`, which made a report write to the registry. This upgrade fills them in
once, so a report only reads. It looks only at fine-tuned headline scores not checked yet (vs_base_p NULL) whose
run has a base score for the same task and a per-item log for it: a registry where every pair was checked costs
one query. A pair that has no test (different items, a base log that is gone, subjects logged for one model only,
outcomes that are not right/wrong, an MC2 score) gets NO_P_VALUE, as recording gives it.

Written against evalresult's columns as they are at this revision (not the models, which later revisions may
change), with the McNemar functions of registry/significance.py. Downgrading leaves the p-values: they are true.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-14
"""

import json

import sqlalchemy as sa
from alembic import op
from tunelab.registry.significance import NO_P_VALUE, UNTESTED_METRICS, PairingError, pooled_p_value

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

evalresult = sa.table(
    "evalresult",
    sa.column("id", sa.Integer), sa.column("run_id", sa.Integer), sa.column("model_kind", sa.String),
    sa.column("model_name", sa.String), sa.column("task", sa.String), sa.column("metric", sa.String),
    sa.column("task_group", sa.String), sa.column("fingerprint_json", sa.String),
    sa.column("samples_json", sa.String), sa.column("vs_base_p", sa.Float),
)


def upgrade() -> None:
    connection = op.get_bind()
    for run_id in _runs_with_unchecked_pairs(connection):
        _check_run(connection, run_id)


def downgrade() -> None:
    pass


def _runs_with_unchecked_pairs(connection) -> list[int]:
    tuned, base, member = evalresult.alias("tuned"), evalresult.alias("base"), evalresult.alias("member")
    has_base = sa.exists().where(base.c.run_id == tuned.c.run_id, base.c.model_kind == "base",
                                 base.c.task == tuned.c.task)
    has_member_log = sa.exists().where(member.c.run_id == tuned.c.run_id, member.c.model_kind == "finetuned",
                                       member.c.task_group == tuned.c.task, member.c.samples_json.is_not(None))
    query = sa.select(tuned.c.run_id).distinct().where(
        tuned.c.model_kind == "finetuned", tuned.c.vs_base_p.is_(None), tuned.c.task_group.is_(None),
        tuned.c.run_id.is_not(None), has_base, sa.or_(tuned.c.samples_json.is_not(None), has_member_log))
    return sorted(connection.execute(query).scalars())


def _check_run(connection, run_id: int) -> None:
    """Set vs_base_p on the run's unchecked fine-tuned headline scores that have a base and a log to test."""
    t = evalresult.c
    rows = connection.execute(
        sa.select(t.id, t.model_kind, t.model_name, t.task, t.metric, t.task_group, t.fingerprint_json, t.vs_base_p,
                  t.samples_json.is_not(None).label("logged"))
        .where(t.run_id == run_id, t.model_kind.in_(("finetuned", "base")))
    ).all()
    tuned = {row.task: row for row in rows if row.model_kind == "finetuned"}
    base = {row.task: row for row in rows if row.model_kind == "base"}
    for task, row in tuned.items():
        if row.task_group is not None or row.vs_base_p is not None or task not in base:
            continue
        # A group's headline score (MMLU) has no log of its own: its test pools the items of its members.
        members = [task] if row.logged else sorted(m for m, r in tuned.items() if r.task_group == task)
        if not any(tuned[m].logged for m in members):
            continue
        p_value = _p_value(connection, run_id, row.metric, [(base.get(m), tuned[m]) for m in members])
        connection.execute(sa.update(evalresult).where(t.id == row.id)
                           .values(vs_base_p=NO_P_VALUE if p_value is None else p_value))


def _p_value(connection, run_id: int, metric: str, pairs: list) -> float | None:
    """McNemar's p-value over the (base, fine-tuned) pairs of members; None when there is no test of them all."""
    if metric in UNTESTED_METRICS or any(b is None or not f.logged for b, f in pairs):
        return None
    base_logs = [_base_log(connection, run_id, b) for b, _ in pairs]
    if any(log is None for log in base_logs):
        return None
    try:
        return pooled_p_value([(log, _log(connection, f.id)) for log, (_, f) in zip(base_logs, pairs, strict=True)])
    except PairingError:
        return None  # the two evaluations scored different items


def _log(connection, result_id: int) -> list[dict]:
    return json.loads(connection.execute(
        sa.select(evalresult.c.samples_json).where(evalresult.c.id == result_id)).scalar_one())


def _base_log(connection, run_id: int, row) -> list[dict] | None:
    """A base score's log: its own, or that of the identical evaluation it was copied from (same eval_key)."""
    if row.logged:
        return _log(connection, row.id)
    eval_key = json.loads(row.fingerprint_json).get("eval_key")
    if eval_key is None:
        return None
    t = evalresult.c
    candidates = connection.execute(
        sa.select(t.id, t.fingerprint_json)
        .where(t.model_kind == "base", t.model_name == row.model_name, t.task == row.task, t.run_id != run_id,
               t.samples_json.is_not(None))
        .order_by(t.id.desc())
    ).all()
    for candidate in candidates:
        if json.loads(candidate.fingerprint_json).get("eval_key") == eval_key:
            return _log(connection, candidate.id)
    return None
