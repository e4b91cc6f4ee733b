"""Review cases of referred applications, their append-only hash-chained history, reviewer keys.

A case is opened by the recorder in the transaction that records a `referred` decision, once per application
revision (the unique key absorbs redeliveries). Its history is append-only: a trigger refuses every UPDATE and
TRUNCATE, and a DELETE of an entry younger than the retention period (25 months, Reg B's record retention is
25 months from notice), so no statement of the services can rewrite it; each entry stores the hash of the one
before it, so a change made around the trigger (by a superuser) breaks the chain that
`fastloans reviews verify-chain` checks. API keys get an optional actor name; applications show who decided.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

NOW = sa.text("clock_timestamp()")
STATES = "('open', 'claimed', 'awaiting_approval', 'waiting_for_information', 'decided', 'withdrawn', 'superseded')"

APPEND_ONLY = """
CREATE FUNCTION review_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.at < now() - interval '25 months' THEN
        RETURN OLD;  -- past the retention period
    END IF;
    RAISE EXCEPTION 'review_history is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def _ts(name: str, *, nullable: bool = True, default: sa.TextClause | None = None) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=default)


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("actor", sa.Text))
    op.add_column("loan_applications", sa.Column("decided_by", sa.Text))
    op.add_column("loan_applications", sa.Column("review_case_id", pg.UUID(as_uuid=True)))
    op.add_column("loan_applications", sa.Column("review_reasons", pg.JSONB))
    op.create_table(
        "review_cases",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("tenant_id", pg.UUID(as_uuid=True), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("application_id", pg.UUID(as_uuid=True), sa.ForeignKey("loan_applications.id"), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default=sa.text("'open'")),
        sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("1")),
        sa.Column("recommendation", sa.Text),
        sa.Column("risk_score", sa.Integer, nullable=False),
        sa.Column("policy_version", sa.Text, nullable=False),
        sa.Column("second_person_for", pg.ARRAY(sa.Text), nullable=False),
        sa.Column("packet", pg.JSONB, nullable=False),
        _ts("opened_at", nullable=False, default=NOW),
        _ts("due_at", nullable=False),
        _ts("escalate_at", nullable=False),
        sa.Column("claimed_by", sa.Text),
        _ts("claim_expires_at"),
        sa.Column("outcome", sa.Text),
        sa.Column("reason_codes", pg.ARRAY(sa.Text)),
        sa.Column("note", sa.Text),
        sa.Column("decided_by", sa.Text),
        sa.Column("override", sa.Boolean),
        sa.Column("approved_by", sa.Text),
        sa.Column("information_requested", pg.JSONB),
        _ts("clock_stopped_at"),
        _ts("closed_at"),
        _ts("updated_at", nullable=False, default=NOW),
        sa.UniqueConstraint("application_id", "revision", name="review_cases_once_per_revision"),
        sa.CheckConstraint(f"state IN {STATES}", name="review_cases_state"),
    )
    op.create_index("review_cases_queue", "review_cases", ["tenant_id", "due_at", "id"])
    op.create_table(
        "review_history",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("case_id", pg.UUID(as_uuid=True), sa.ForeignKey("review_cases.id"), nullable=False),
        sa.Column("tenant_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("details", pg.JSONB, nullable=False),
        _ts("at", nullable=False),
        sa.Column("previous_hash", sa.Text, nullable=False),
        sa.Column("hash", sa.Text, nullable=False),
        sa.UniqueConstraint("case_id", "seq", name="review_history_once_per_seq"),
    )
    op.create_index("review_history_tenant", "review_history", ["tenant_id", "case_id", "seq"])
    op.execute(APPEND_ONLY)
    op.execute(
        "CREATE TRIGGER review_history_append_only BEFORE UPDATE OR DELETE ON review_history "
        "FOR EACH ROW EXECUTE FUNCTION review_history_append_only()"
    )
    op.execute(
        "CREATE TRIGGER review_history_no_truncate BEFORE TRUNCATE ON review_history "
        "FOR EACH STATEMENT EXECUTE FUNCTION review_history_append_only()"
    )


def downgrade() -> None:
    op.drop_table("review_history")
    op.execute("DROP FUNCTION review_history_append_only()")
    op.drop_table("review_cases")
    op.drop_column("loan_applications", "review_reasons")
    op.drop_column("loan_applications", "review_case_id")
    op.drop_column("loan_applications", "decided_by")
    op.drop_column("api_keys", "actor")
