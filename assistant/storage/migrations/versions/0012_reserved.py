"""job phases and adapter scope (issues 26, 28, 30)

Reserved revision: filled in by its owner (a no-op until then), so the revisions of parallel work stay one chain.

Revision ID: 0012
Revises: 0011
"""

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
