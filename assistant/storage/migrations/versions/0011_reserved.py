"""API keys, quotas and the audit log (issue 27; owner: the operations helper)

Reserved revision: filled in by its owner (a no-op until then), so the revisions of parallel work stay one chain.

Revision ID: 0011
Revises: 0010
"""

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
