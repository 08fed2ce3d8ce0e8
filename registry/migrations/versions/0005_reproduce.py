"""Reproduction: each run's data fingerprint, and the run a reproduction re-ran.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("data_fingerprint", sa.String(), nullable=True))
        batch.add_column(sa.Column("reproduces_run_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_run_reproduces_run_id", "run", ["reproduces_run_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.drop_constraint("fk_run_reproduces_run_id", type_="foreignkey")
        batch.drop_column("reproduces_run_id")
        batch.drop_column("data_fingerprint")
