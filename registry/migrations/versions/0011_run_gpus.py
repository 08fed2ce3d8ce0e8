"""The GPUs a run needs ([resources] gpus) on the run row, so a worker's claim filters on a column.

Existing runs get theirs from their experiment's stored spec (a key written only when not 0).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("gpus", sa.Integer(), nullable=False, server_default="0"))
    connection = op.get_bind()
    specs = connection.execute(sa.text(
        "SELECT id, resolved_json FROM experiment WHERE resolved_json LIKE '%\"gpus\"%'")).fetchall()
    for experiment_id, resolved_json in specs:
        gpus = json.loads(resolved_json).get("resources", {}).get("gpus", 0)
        if gpus:
            connection.execute(sa.text("UPDATE run SET gpus = :gpus WHERE experiment_id = :id"),
                               {"gpus": gpus, "id": experiment_id})


def downgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.drop_column("gpus")
