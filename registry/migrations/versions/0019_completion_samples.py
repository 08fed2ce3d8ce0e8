"""Sample completions of online RL: a few prompts, what the policy answered and the reward, at a few steps.

Revision ID: 0019
Revises: 0018
Create Date: 2027-02-15
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "completionsample",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("run.id"), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("prompt", sa.String(), nullable=False),
        sa.Column("completion", sa.String(), nullable=False),
        sa.Column("reward", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_completionsample_run_id", "completionsample", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_completionsample_run_id", table_name="completionsample")
    op.drop_table("completionsample")
