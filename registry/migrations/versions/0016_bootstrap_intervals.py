"""The paired-bootstrap interval of each fine-tuned score's change against its base.

Two columns beside vs_base_p, set when it is (registry/recording.py); scores recorded before stay without one.
The covering index of headline p-values gains them, so a report reads both without the rows heavy with logs.

Revision ID: 0016
Revises: 0015
Create Date: 2027-02-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

OLD_COLUMNS = ["task_group", "model_kind", "vs_base_p", "run_id", "task"]


def upgrade() -> None:
    with op.batch_alter_table("evalresult") as batch:
        batch.add_column(sa.Column("vs_base_ci_low", sa.Float(), nullable=True))
        batch.add_column(sa.Column("vs_base_ci_high", sa.Float(), nullable=True))
    op.drop_index("ix_evalresult_group_kind_p", table_name="evalresult")
    op.create_index("ix_evalresult_group_kind_p", "evalresult", [*OLD_COLUMNS, "vs_base_ci_low", "vs_base_ci_high"])


def downgrade() -> None:
    op.drop_index("ix_evalresult_group_kind_p", table_name="evalresult")
    op.create_index("ix_evalresult_group_kind_p", "evalresult", OLD_COLUMNS)
    with op.batch_alter_table("evalresult") as batch:
        batch.drop_column("vs_base_ci_high")
        batch.drop_column("vs_base_ci_low")
