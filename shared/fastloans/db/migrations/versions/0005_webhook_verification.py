"""Webhook endpoints: a receiver check on request (POST …/verify), its report, and when it last passed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("webhook_endpoints", sa.Column("verification_requested_at", sa.DateTime(timezone=True)))
    op.add_column("webhook_endpoints", sa.Column("verification", pg.JSONB))
    op.add_column("webhook_endpoints", sa.Column("verified_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("webhook_endpoints", "verified_at")
    op.drop_column("webhook_endpoints", "verification")
    op.drop_column("webhook_endpoints", "verification_requested_at")
