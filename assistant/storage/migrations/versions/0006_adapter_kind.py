"""adapter kind: 'lm' (a chat adapter vLLM serves) or 'reward' (a reward model scoring answers)

Revision ID: 0006
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("adapters") as batch:
        batch.add_column(sa.Column("kind", sa.String(20), nullable=False, server_default="lm"))


def downgrade() -> None:
    with op.batch_alter_table("adapters") as batch:
        batch.drop_column("kind")
