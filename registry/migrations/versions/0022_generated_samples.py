"""What the models write: a run's [eval.samples] generations, and their cache by content.

generatedsample holds one row per run, model (fine-tuned or base) and prompt; generationcache one model's outputs
for a list of prompts at given settings, keyed like the evaluation cache, so a base model answers the same prompts
once.

Revision ID: 0022
Revises: 0021
Create Date: 2027-02-15
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "generatedsample",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("run.id"), nullable=False),
        sa.Column("model_kind", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("prompt", sa.String(), nullable=False),
        sa.Column("reference", sa.String(), nullable=True),
        sa.Column("output", sa.String(), nullable=False),
        sa.Column("settings_json", sa.String(), nullable=False),
        sa.Column("model_digest", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_generatedsample_run_kind_position", "generatedsample", ["run_id", "model_kind", "position"])
    op.create_table(
        "generationcache",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("model_digest", sa.String(), nullable=False),
        sa.Column("payload_json", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_generationcache_key", "generationcache", ["key"], unique=True)
    op.create_index("ix_generationcache_model_digest", "generationcache", ["model_digest"])


def downgrade() -> None:
    op.drop_index("ix_generationcache_model_digest", table_name="generationcache")
    op.drop_index("ix_generationcache_key", table_name="generationcache")
    op.drop_table("generationcache")
    op.drop_index("ix_generatedsample_run_kind_position", table_name="generatedsample")
    op.drop_table("generatedsample")
