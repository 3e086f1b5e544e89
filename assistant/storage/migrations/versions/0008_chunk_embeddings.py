"""chunk embeddings and the vector index change log, so several server replicas share one database

`chunk_embeddings` holds each chunk's vector (float32 bytes) and the embedder space it belongs to; `index_changes` is
an append-only log (`seq` grows in commit order) of chunk vectors added and removed. A server replica applies the
entries after the last one it saw to its in-memory FAISS index (`assistant.index.replication`), reading vectors from
`chunk_embeddings` instead of re-embedding. Chunks stored before this revision have no row here; they are re-embedded
by the ingest service's recovery when a replica misses them, as before.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chunk_embeddings",
        sa.Column("chunk_id", sa.Integer(), sa.ForeignKey("chunks.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("space", sa.String(400), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "index_changes",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("chunk_id", sa.Integer(), nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_index_changes_chunk_id", "index_changes", ["chunk_id"])


def downgrade() -> None:
    op.drop_index("ix_index_changes_chunk_id", table_name="index_changes")
    op.drop_table("index_changes")
    op.drop_table("chunk_embeddings")
