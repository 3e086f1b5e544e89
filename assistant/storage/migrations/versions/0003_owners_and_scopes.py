"""chat owners, stored citations, preference-pair collections

`chat_records.owner` is a stable identity of the API key that created the chat (a short sha256 fingerprint, never
the key), so feedback and chat history are limited to their owner; `chat_records.citations` keeps the citations the
response carried (chat history shows them); `preference_pairs.collections` lists the collections a pair's sources
came from. All nullable: rows written before this revision have no owner (only an admin sees them).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chat_records") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=80), nullable=True))
        batch.add_column(sa.Column("citations", sa.JSON(), nullable=True))
        batch.create_index("ix_chat_records_owner", ["owner"], unique=False)
    with op.batch_alter_table("preference_pairs") as batch:
        batch.add_column(sa.Column("collections", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("preference_pairs") as batch:
        batch.drop_column("collections")
    with op.batch_alter_table("chat_records") as batch:
        batch.drop_index("ix_chat_records_owner")
        batch.drop_column("citations")
        batch.drop_column("owner")
