"""The paths of what runs wrote, stored relative to the artifact root (registry/roots.py).

Until now a run's output directory (HOME/runs/ID, resolved) and its checkpoints' paths were stored absolute, as the
machine that wrote them saw them. Each becomes relative to the artifact root, whose default is the home that
directory was under: `runs/ID` and `runs/ID/checkpoints/checkpoint-N`, which every machine resolves against its own
root. An output directory that is not `.../runs/ID` (its own run's id) is left absolute, and so are its checkpoints;
a stored absolute path is still used as it is.

Downgrading makes the relative paths absolute again for an SQLite registry, against the directory of its file (the
home it lives in by default); on another database they stay relative, which a tunelab from before this revision
reads against its working directory. A tunelab from before this revision refuses a registry at this one, so it
never meets a relative path unless downgraded.

Revision ID: 0021
Revises: 0020
Create Date: 2027-02-15
"""

import os
from pathlib import PurePosixPath

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

run = sa.table("run", sa.column("id", sa.Integer), sa.column("output_dir", sa.String))
checkpoint = sa.table("checkpoint", sa.column("id", sa.Integer), sa.column("run_id", sa.Integer),
                      sa.column("path", sa.String))


def _relative(output_dir: str, run_id: int) -> str | None:
    """`runs/ID` for an absolute HOME/runs/ID of run ID; None for anything else."""
    path = PurePosixPath(output_dir)
    if path.is_absolute() and path.name == str(run_id) and path.parent.name == "runs":
        return f"runs/{run_id}"
    return None


def upgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.select(run.c.id, run.c.output_dir).where(run.c.output_dir.is_not(None))).all()
    for run_id, output_dir in rows:
        relative = _relative(output_dir, run_id)
        if relative is None:
            continue
        connection.execute(run.update().where(run.c.id == run_id).values(output_dir=relative))
        prefix = output_dir.rstrip("/") + "/"
        for checkpoint_id, path in connection.execute(
                sa.select(checkpoint.c.id, checkpoint.c.path).where(checkpoint.c.run_id == run_id)).all():
            if path.startswith(prefix):
                connection.execute(checkpoint.update().where(checkpoint.c.id == checkpoint_id)
                                   .values(path=relative + "/" + path[len(prefix):]))


def downgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "sqlite" or not connection.engine.url.database:
        return
    home = os.path.dirname(os.path.abspath(connection.engine.url.database.removeprefix("file:")))
    for table, column in ((run, run.c.output_dir), (checkpoint, checkpoint.c.path)):
        for row_id, path in connection.execute(sa.select(table.c.id, column).where(column.is_not(None))).all():
            if not os.path.isabs(path):
                connection.execute(table.update().where(table.c.id == row_id)
                                   .values({column.name: os.path.join(home, path)}))
