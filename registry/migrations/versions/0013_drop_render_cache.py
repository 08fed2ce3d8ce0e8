"""Drop the render cache: reports draw no charts any more (the browser draws them from data in the page).

rendercache (revision 0009) held matplotlib SVGs and whole run pages, so that a report need not draw and render
them again. A report now renders every page afresh in a few seconds and writes nothing to the registry.
Downgrading brings back the empty table.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-14
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_rendercache_key", table_name="rendercache")
    op.drop_table("rendercache")


def downgrade() -> None:
    op.create_table(
        "rendercache",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("body_zlib", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_rendercache_key", "rendercache", ["key"], unique=True)
