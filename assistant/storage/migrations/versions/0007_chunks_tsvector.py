"""chunks full-text index on PostgreSQL (generated tsvector column + GIN index) for keyword retrieval

The PostgreSQL counterpart of 0002 (SQLite FTS5): `chunks.text_tsv` is a STORED generated column
`to_tsvector('english', text)`, so PostgreSQL recomputes it in the same statement that inserts or updates a chunk
(nothing to sync or repair after a crash), and a GIN index makes `text_tsv @@ query` an index lookup. The column is
not in the ORM model: only `assistant.retrieval.pg_fulltext` reads it. On other databases this migration does
nothing. The text search configuration must match `assistant.retrieval.pg_fulltext.CONFIG`.

Revision ID: 0007
Revises: 0002
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "ALTER TABLE chunks ADD COLUMN text_tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED"
    )
    op.execute("CREATE INDEX ix_chunks_text_tsv ON chunks USING gin (text_tsv)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_chunks_text_tsv")
    op.execute("ALTER TABLE chunks DROP COLUMN IF EXISTS text_tsv")
