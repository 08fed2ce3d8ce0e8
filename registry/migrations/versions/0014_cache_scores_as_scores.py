"""The evaluation cache's scores in the shape of the one score type (registry/scores.py Score).

Each evalcache payload holds the scores of one benchmark as measured (runner/evaluation/cache.py). They were
written as the harness's own score type, which called the group "group"; the Score it now stores calls it
"task_group", as the evalresult table does. This upgrade renames the key in the payloads stored before, so their
cache entries still answer; a tunelab from before this revision refuses the registry, so it never meets the new
shape. Downgrading writes the old shape back (the old key, and only the fields the old type had).

Written against the payload as it is at this revision, not against the Score type, which later revisions may
extend. One row at a time: a payload carries per-item logs, megabytes for MMLU.

Revision ID: 0014
Revises: 0013
Create Date: 2027-01-18
"""

import json
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

evalcache = sa.table("evalcache", sa.column("id", sa.Integer), sa.column("payload_json", sa.String))
# The fields of the harness's score type before this revision, in its payloads.
OLD_FIELDS = ("task", "metric", "value", "stderr", "num_fewshot", "n_samples", "group", "comparable", "limit")


def upgrade() -> None:
    _rewrite('"group"', _to_score)


def downgrade() -> None:
    _rewrite('"task_group"', _to_old)


def _to_score(score: dict) -> dict:
    return {("task_group" if key == "group" else key): value for key, value in score.items()}


def _to_old(score: dict) -> dict:
    renamed = {("group" if key == "task_group" else key): value for key, value in score.items()}
    return {key: renamed[key] for key in OLD_FIELDS if key in renamed}


def _rewrite(marker: str, convert: Callable[[dict], dict]) -> None:
    connection = op.get_bind()
    # A payload without the key's name anywhere has nothing to rename: most of a large cache is never parsed.
    ids = connection.execute(
        sa.select(evalcache.c.id).where(evalcache.c.payload_json.contains(marker)).order_by(evalcache.c.id)
    ).scalars().all()
    for row_id in ids:
        text = connection.execute(sa.select(evalcache.c.payload_json).where(evalcache.c.id == row_id)).scalar_one()
        payload = json.loads(text)
        scores = [convert(score) for score in payload.get("scores", [])]
        if scores != payload.get("scores", []):
            connection.execute(sa.update(evalcache).where(evalcache.c.id == row_id)
                               .values(payload_json=json.dumps(dict(payload, scores=scores))))
