"""Evaluations of any model, and the evaluation cache.

eval results may belong to no run (`tunelab eval` of a local directory or a hub id): run_id becomes nullable and
model_digest records which weights were scored. evalcache holds one benchmark's result per content key;
filedigest remembers the sha256 of large model files by path, size and mtime.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite cannot change a column's nullability in place (the table is rebuilt, rows kept).
    with op.batch_alter_table("evalresult") as batch:
        batch.alter_column("run_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("model_digest", sa.String(), nullable=True))
        batch.create_index("ix_evalresult_model_digest", ["model_digest"])
    op.create_table(
        "evalcache",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("task", sa.String(), nullable=False),
        sa.Column("model_digest", sa.String(), nullable=False),
        sa.Column("lm_eval_version", sa.String(), nullable=False),
        sa.Column("payload_json", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_evalcache_key", "evalcache", ["key"], unique=True)
    op.create_index("ix_evalcache_model_digest", "evalcache", ["model_digest"])
    op.create_table(
        "filedigest",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=False),
    )
    op.create_index("ix_filedigest_path", "filedigest", ["path"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_filedigest_path", table_name="filedigest")
    op.drop_table("filedigest")
    op.drop_index("ix_evalcache_model_digest", table_name="evalcache")
    op.drop_index("ix_evalcache_key", table_name="evalcache")
    op.drop_table("evalcache")
    # Scores of models that belong to no run cannot be kept under a NOT NULL run_id.
    op.execute("DELETE FROM evalresult WHERE run_id IS NULL")
    with op.batch_alter_table("evalresult") as batch:
        batch.drop_index("ix_evalresult_model_digest")
        batch.drop_column("model_digest")
        batch.alter_column("run_id", existing_type=sa.Integer(), nullable=False)
