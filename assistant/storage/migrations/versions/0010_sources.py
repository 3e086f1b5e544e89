"""directory sources that stay in sync (issue 29)

`sources` holds one directory kept in sync with a collection (path, collection, delete policy, schedule, status,
counts, last error, and the lease a running sync holds); `source_files` holds each file a source saw, by its path
relative to the source root (size, mtime, content hash, state). Documents a sync writes are ordinary `documents` rows;
they belong to a source only through a `source_files` row, so documents uploaded by hand are never touched by a sync.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("path", sa.String(2000), nullable=False),
        sa.Column("collection", sa.String(200), nullable=False),
        sa.Column("delete_policy", sa.String(10), nullable=False),
        sa.Column("interval_s", sa.Float(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_sync_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sources_collection", "sources", ["collection"])
    op.create_table(
        "source_files",
        sa.Column("source_id", sa.String(40), sa.ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("rel_path", sa.String(1000), primary_key=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("source_files")
    op.drop_index("ix_sources_collection", table_name="sources")
    op.drop_table("sources")
