"""One experiment per spec hash: the index on experiment.spec_hash becomes unique, so identical specs submitted at
the same moment can never both be stored (the losers find the winner's experiment; registry/submissions.py).

A registry may already hold duplicates (submitted concurrently before this revision). None is deleted or merged:
their runs, scores and working directories stay as they are. The oldest experiment of each hash keeps it, so a
new submit of that spec finds the oldest; each later one's hash gets "-dup<experiment id>" appended, which keeps
it unique and says what it is. Downgrading removes the suffixes and makes the index plain again.

Revision ID: 0017
Revises: 0016
Create Date: 2027-02-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

INDEX = "ix_experiment_spec_hash"
SUFFIX = "-dup"
experiment = sa.table("experiment", sa.column("id", sa.Integer), sa.column("spec_hash", sa.String))


def upgrade() -> None:
    connection = op.get_bind()
    duplicated = connection.execute(
        sa.select(experiment.c.spec_hash).group_by(experiment.c.spec_hash).having(sa.func.count() > 1)
    ).scalars().all()
    for spec_hash in duplicated:
        ids = connection.execute(sa.select(experiment.c.id).where(experiment.c.spec_hash == spec_hash)
                                 .order_by(experiment.c.id)).scalars().all()
        for later in ids[1:]:
            connection.execute(sa.update(experiment).where(experiment.c.id == later)
                               .values(spec_hash=f"{spec_hash}{SUFFIX}{later}"))
    op.drop_index(INDEX, table_name="experiment")
    op.create_index(INDEX, "experiment", ["spec_hash"], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="experiment")
    op.create_index(INDEX, "experiment", ["spec_hash"])
    connection = op.get_bind()
    renamed = connection.execute(sa.select(experiment.c.id, experiment.c.spec_hash)
                                 .where(experiment.c.spec_hash.contains(SUFFIX))).all()
    for row_id, spec_hash in renamed:
        original, _, number = spec_hash.rpartition(SUFFIX)
        if number == str(row_id):
            connection.execute(sa.update(experiment).where(experiment.c.id == row_id).values(spec_hash=original))
