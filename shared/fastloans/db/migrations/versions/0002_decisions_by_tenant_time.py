"""Index decisions by tenant and decision time (challenger agreement reports, audits).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("loan_decisions_tenant_decided", "loan_decisions", ["tenant_id", "decided_at"])


def downgrade() -> None:
    op.drop_index("loan_decisions_tenant_decided", table_name="loan_decisions")
