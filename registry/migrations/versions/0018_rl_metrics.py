"""Online RL's figures per training step, and where an RL run's reward came from.

Four columns on trainmetric (mean and spread of the reward, KL to the reference, mean completion length), set on
rows of their own as the validation loss is; and reward_source_json on run: the reward run (with the hash of its
weights), the judge or the reward function an RL run trained against (runner/reward_source.py).

Revision ID: 0018
Revises: 0017
Create Date: 2027-02-15
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

METRIC_COLUMNS = ("reward", "reward_std", "kl", "completion_length")


def upgrade() -> None:
    with op.batch_alter_table("trainmetric") as batch:
        for name in METRIC_COLUMNS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("reward_source_json", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.drop_column("reward_source_json")
    with op.batch_alter_table("trainmetric") as batch:
        for name in reversed(METRIC_COLUMNS):
            batch.drop_column(name)
