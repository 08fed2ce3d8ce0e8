"""Data cleaning and validation: each run's data statistics, and validation loss in the metrics.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("data_stats_json", sa.String(), nullable=True))
    with op.batch_alter_table("trainmetric") as batch:
        batch.add_column(sa.Column("eval_loss", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trainmetric") as batch:
        batch.drop_column("eval_loss")
    with op.batch_alter_table("run") as batch:
        batch.drop_column("data_stats_json")
