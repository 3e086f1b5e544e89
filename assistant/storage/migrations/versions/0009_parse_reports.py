"""parse reports of documents (issue 29)

`documents.parse_report` (JSON, nullable) holds how a document was parsed: its pages, the method of each page (its
text layer, OCR, or failed), OCR confidence and characters per page, the tables kept as tables and the warnings
(`ingest.report.ParseReport.to_dict`). Documents stored before this revision have none (null).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("parse_report", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("parse_report")
