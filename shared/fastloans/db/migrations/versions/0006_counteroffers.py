"""Decisions carry the counteroffer and the smallest actionable changes that would approve.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("loan_decisions", "loan_applications")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("counteroffer", pg.JSONB))
        op.add_column(table, sa.Column("what_would_change", pg.JSONB))


def downgrade() -> None:
    for table in TABLES:
        op.drop_column(table, "what_would_change")
        op.drop_column(table, "counteroffer")
