"""parse reports of documents (issue 29; owner: the documents helper)

Reserved revision: filled in by its owner (a no-op until then), so the revisions of parallel work stay one chain.

Revision ID: 0009
Revises: 0008
"""

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
