"""Adverse-action notices: each tenant's creditor details, and every notice as rendered, once per decision.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_notice_settings",
        sa.Column("tenant_id", pg.UUID(as_uuid=True), sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("creditor_name", sa.Text, nullable=False),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("supervising_agency", sa.Text, nullable=False),
        sa.Column("contact", sa.Text, nullable=False),
        sa.Column("score_source", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    # The HTML is the record: what was rendered stays as it was, whatever the template or settings become.
    op.create_table(
        "adverse_action_notices",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("decision_id", sa.BigInteger, sa.ForeignKey("loan_decisions.id"), nullable=False),
        sa.Column("tenant_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("application_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("template_version", sa.Text, nullable=False),
        sa.Column("content_sha256", sa.Text, nullable=False),
        sa.Column("html", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.clock_timestamp()),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("decision_id", name="adverse_action_notices_once_per_decision"),
    )
    op.create_index("adverse_action_notices_application", "adverse_action_notices", ["application_id"])


def downgrade() -> None:
    op.drop_index("adverse_action_notices_application", "adverse_action_notices")
    op.drop_table("adverse_action_notices")
    op.drop_table("tenant_notice_settings")
