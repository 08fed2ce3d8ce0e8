"""Searches and their trials: a [search] submission, and one row per trial linking it to its experiment.

A trial's status, scores and validation losses are its run's (no copy here); a pruned trial's run has the new
status "pruned", which needs no schema change (run.status is text).

Revision ID: 0015
Revises: 0014
Create Date: 2027-02-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "search",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("spec_path", sa.String(), nullable=False),
        sa.Column("spec_text", sa.String(), nullable=False),
        sa.Column("workdir", sa.String(), nullable=False),
        sa.Column("base_json", sa.String(), nullable=False),
        sa.Column("definition_json", sa.String(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("asked", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stop_reason", sa.String(), nullable=True),
        sa.Column("importance_json", sa.String(), nullable=True),
    )
    op.create_index("ix_search_status", "search", ["status"])
    op.create_table(
        "searchtrial",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("search_id", sa.Integer(), sa.ForeignKey("search.id"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), sa.ForeignKey("experiment.id"), nullable=False),
        sa.Column("params_json", sa.String(), nullable=False),
        sa.Column("pruner_json", sa.String(), nullable=False, server_default="{}"),
        sa.UniqueConstraint("search_id", "number", name="uq_searchtrial_search_number"),
        sa.UniqueConstraint("experiment_id", name="uq_searchtrial_experiment_id"),
    )
    op.create_index("ix_searchtrial_search_id", "searchtrial", ["search_id"])


def downgrade() -> None:
    op.drop_index("ix_searchtrial_search_id", table_name="searchtrial")
    op.drop_table("searchtrial")
    op.drop_index("ix_search_status", table_name="search")
    op.drop_table("search")
