"""Each fine-tuned score's p-value against its base, and a cache of rendered charts and run pages.

evalresult.vs_base_p holds McNemar's exact p-value of a fine-tuned score against its base model's, from the two
per-item logs. Rows recorded before this revision are not backfilled here: that means parsing every stored
per-item log inside the upgrade, which every command waits for; reports filled them in, until revision
0012 did it once. Two covering indexes let reports read p-values and MMLU subjects
without the rows heavy with logs. rendercache held matplotlib SVGs and run pages keyed by a hash of their
content (dropped by revision 0013).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-09
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("evalresult") as batch:
        batch.add_column(sa.Column("vs_base_p", sa.Float(), nullable=True))
    # Headline rows by group and kind, covering the p-value look-up (see EvalResult.__table_args__ for why).
    op.create_index("ix_evalresult_group_kind_p", "evalresult",
                    ["task_group", "model_kind", "vs_base_p", "run_id", "task"])
    # A run's group members (MMLU subjects) by value, for run pages, without reading the rows themselves.
    op.create_index("ix_evalresult_run_group_values", "evalresult",
                    ["run_id", "task_group", "model_kind", "task", "value"])
    op.create_table(
        "rendercache",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("body_zlib", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_rendercache_key", "rendercache", ["key"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_rendercache_key", table_name="rendercache")
    op.drop_table("rendercache")
    op.drop_index("ix_evalresult_run_group_values", table_name="evalresult")
    op.drop_index("ix_evalresult_group_kind_p", table_name="evalresult")
    with op.batch_alter_table("evalresult") as batch:
        batch.drop_column("vs_base_p")
