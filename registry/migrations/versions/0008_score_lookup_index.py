"""A composite index for score look-ups by run, kind and task.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_evalresult_run_kind_task", "evalresult", ["run_id", "model_kind", "task"])


def downgrade() -> None:
    op.drop_index("ix_evalresult_run_kind_task", table_name="evalresult")
