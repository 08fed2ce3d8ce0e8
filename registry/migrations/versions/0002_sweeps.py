"""Sweeps: a sweep table, and experiments linked to the sweep point they came from.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweep",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("spec_path", sa.String(), nullable=False),
        sa.Column("definition_json", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    # Batch mode: SQLite can't add a foreign key to an existing table in place.
    with op.batch_alter_table("experiment") as batch:
        batch.add_column(sa.Column("sweep_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("sweep_point_json", sa.String(), nullable=True))
        batch.create_index("ix_experiment_sweep_id", ["sweep_id"])
        batch.create_foreign_key("fk_experiment_sweep_id", "sweep", ["sweep_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("experiment") as batch:
        batch.drop_constraint("fk_experiment_sweep_id", type_="foreignkey")
        batch.drop_index("ix_experiment_sweep_id")
        batch.drop_column("sweep_point_json")
        batch.drop_column("sweep_id")
    op.drop_table("sweep")
