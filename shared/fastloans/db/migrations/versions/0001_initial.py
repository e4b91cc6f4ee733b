"""Initial schema: tenants, API keys, applications, decisions, outbox, idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MONEY = sa.Numeric(14, 2)
NOW = sa.text("now()")


def _ts(name: str, *, nullable: bool = False, default: sa.TextClause | None = None) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=default)


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        _ts("created_at", default=NOW),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("tenant_id", pg.UUID(as_uuid=True), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("prefix", sa.Text, nullable=False),
        sa.Column("key_hash", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("scopes", pg.ARRAY(sa.Text), nullable=False),
        sa.Column("label", sa.Text),
        _ts("created_at", default=NOW),
        _ts("revoked_at", nullable=True),
    )
    op.create_table(
        "loan_applications",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("tenant_id", pg.UUID(as_uuid=True), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False, server_default=sa.text("1")),
        sa.Column("status", sa.Text, nullable=False, server_default=sa.text("'pending'")),
        sa.Column("applicant_name", sa.Text, nullable=False),
        sa.Column("credit_score", sa.Integer, nullable=False),
        sa.Column("loan_amount", MONEY, nullable=False),
        sa.Column("loan_purpose", sa.Text, nullable=False),
        sa.Column("monthly_income", MONEY, nullable=False),
        sa.Column("monthly_debt", MONEY, nullable=False),
        sa.Column("employment_status", sa.Text, nullable=False),
        sa.Column("risk_score", sa.Integer),
        sa.Column("is_approved", sa.Boolean),
        sa.Column("reasons", pg.JSONB),
        sa.Column("policy_version", sa.Text),
        _ts("submitted_at"),
        _ts("decided_at", nullable=True),
        _ts("withdrawn_at", nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'rejected', 'referred', 'withdrawn')",
            name="loan_applications_status",
        ),
        sa.CheckConstraint(
            "monthly_income > 0 AND loan_amount > 0 AND monthly_debt >= 0",
            name="loan_applications_money",
        ),
    )
    op.create_index("loan_applications_tenant_created", "loan_applications", ["tenant_id", "created_at", "id"])
    op.create_index("loan_applications_submitted", "loan_applications", ["submitted_at"])
    op.create_table(
        "loan_decisions",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("application_id", pg.UUID(as_uuid=True), sa.ForeignKey("loan_applications.id"), nullable=False),
        sa.Column("tenant_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("risk_score", sa.Integer, nullable=False),
        sa.Column("reasons", pg.JSONB, nullable=False),
        sa.Column("policy_name", sa.Text, nullable=False),
        sa.Column("policy_version", sa.Text, nullable=False),
        sa.Column("policy_hash", sa.Text, nullable=False),
        sa.Column("challenger", pg.JSONB),
        _ts("submitted_at"),
        _ts("decided_at"),
        _ts("recorded_at", default=sa.text("clock_timestamp()")),
        sa.UniqueConstraint("application_id", "revision", name="loan_decisions_once_per_revision"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("headers", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        _ts("created_at", default=sa.text("clock_timestamp()")),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant_id", pg.UUID(as_uuid=True), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("request_hash", sa.Text, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("response", pg.JSONB, nullable=False),
        _ts("created_at", default=NOW),
        sa.PrimaryKeyConstraint("tenant_id", "key"),
    )
    op.create_index("idempotency_keys_created", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    for table in ("idempotency_keys", "outbox", "loan_decisions", "loan_applications", "api_keys", "tenants"):
        op.drop_table(table)
