"""Where a run executes on a cluster, and how many nodes it needs.

`slurm_job` (the job id, `ARRAYJOB_TASK` for a job array's task) and `slurm_node` are set when a worker running as a
Slurm job takes the run, so `tunelab ls`/`show` say which job ran it; `nodes` is the spec's [resources] nodes, on the
row so that a claim filters on a column (a worker claims only runs its allocation can spread over). Runs stored
before have no job and need one node.

Revision ID: 0020
Revises: 0019
Create Date: 2027-02-15
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("slurm_job", sa.String(), nullable=True))
        batch.add_column(sa.Column("slurm_node", sa.String(), nullable=True))
        batch.add_column(sa.Column("nodes", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.drop_column("nodes")
        batch.drop_column("slurm_node")
        batch.drop_column("slurm_job")
