"""directory sources that stay in sync (issue 29; owner: the sources helper)

Reserved revision: filled in by its owner (a no-op until then), so the revisions of parallel work stay one chain.

Revision ID: 0010
Revises: 0009
"""

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
