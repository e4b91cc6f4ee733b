"""Rate limits per tenant: shared request counters per (tenant, window, gateway process), optional per-tenant limits.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tenants", sa.Column("rate_limit_per_second", sa.Float))
    op.add_column("tenants", sa.Column("rate_limit_burst", sa.Integer))
    op.create_check_constraint(
        "tenants_rate_limit",
        "tenants",
        "(rate_limit_per_second IS NULL OR rate_limit_per_second >= 0) AND "
        "(rate_limit_burst IS NULL OR rate_limit_burst >= 1)",
    )
    # Unlogged: the counters only matter for a window of seconds, so they need no WAL, replication or crash safety.
    op.create_table(
        "rate_limit_counts",
        sa.Column("tenant_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("window_start", sa.BigInteger, nullable=False),
        sa.Column("process", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("expires", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "window_start", "process"),
        prefixes=["UNLOGGED"],
    )


def downgrade() -> None:
    op.drop_table("rate_limit_counts")
    op.drop_constraint("tenants_rate_limit", "tenants")
    op.drop_column("tenants", "rate_limit_burst")
    op.drop_column("tenants", "rate_limit_per_second")
