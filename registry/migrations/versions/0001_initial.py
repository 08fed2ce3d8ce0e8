"""Initial schema: experiments, runs, checkpoints, training metrics, eval results.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Timestamps are aware UTC datetimes in the models: PostgreSQL needs timezone=True (timestamptz)
    # to keep them exact whatever the server's TimeZone; SQLite's column is DATETIME either way.
    op.create_table(
        "experiment",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("tags_json", sa.String(), nullable=False),
        sa.Column("spec_path", sa.String(), nullable=False),
        sa.Column("spec_text", sa.String(), nullable=False),
        sa.Column("resolved_json", sa.String(), nullable=False),
        sa.Column("spec_hash", sa.String(), nullable=False),
        sa.Column("workdir", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_experiment_name", "experiment", ["name"])
    op.create_index("ix_experiment_spec_hash", "experiment", ["spec_hash"])

    op.create_table(
        "run",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("experiment_id", sa.Integer(), sa.ForeignKey("experiment.id"), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("output_dir", sa.String(), nullable=True),
        sa.Column("train_seconds", sa.Float(), nullable=True),
        sa.Column("final_loss", sa.Float(), nullable=True),
        sa.Column("num_train_examples", sa.Integer(), nullable=True),
    )
    op.create_index("ix_run_experiment_id", "run", ["experiment_id"])
    op.create_index("ix_run_status", "run", ["status"])

    op.create_table(
        "checkpoint",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("run.id"), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("loss", sa.Float(), nullable=True),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_checkpoint_run_id", "checkpoint", ["run_id"])

    op.create_table(
        "trainmetric",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("run.id"), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Float(), nullable=True),
        sa.Column("loss", sa.Float(), nullable=True),
        sa.Column("learning_rate", sa.Float(), nullable=True),
        sa.Column("grad_norm", sa.Float(), nullable=True),
    )
    op.create_index("ix_trainmetric_run_id", "trainmetric", ["run_id"])

    op.create_table(
        "evalresult",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("run.id"), nullable=False),
        sa.Column("model_kind", sa.String(), nullable=False),
        sa.Column("model_name", sa.String(), nullable=False),
        sa.Column("task", sa.String(), nullable=False),
        sa.Column("metric", sa.String(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("stderr", sa.Float(), nullable=True),
        sa.Column("num_fewshot", sa.Integer(), nullable=False),
        sa.Column("limit", sa.Integer(), nullable=False),
        sa.Column("n_samples", sa.Integer(), nullable=True),
        sa.Column("task_group", sa.String(), nullable=True),
        sa.Column("comparable", sa.Boolean(), nullable=False),
        sa.Column("lm_eval_version", sa.String(), nullable=False),
        sa.Column("fingerprint_json", sa.String(), nullable=False),
        sa.Column("samples_json", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_evalresult_run_id", "evalresult", ["run_id"])
    op.create_index("ix_evalresult_model_kind", "evalresult", ["model_kind"])
    op.create_index("ix_evalresult_task", "evalresult", ["task"])


def downgrade() -> None:
    for table in ("evalresult", "trainmetric", "checkpoint", "run", "experiment"):
        op.drop_table(table)
