"""Webhook deliveries: two indexes of the pending ones only, shaped like the claim's two questions.

The claim reads an endpoint's due deliveries in (next_attempt_at, id) order and stops after as many as the
endpoint has room for. With only the index on next_attempt_at, PostgreSQL read every due delivery of every
endpoint, checked revision order for each and sorted them all before taking a few: about 12 ms and 10,000
buffers per claim with 3,400 due, growing with the backlog (and worse while the table's statistics lag a
fast-growing queue). This index hands them over in order, so a claim reads about as many rows as it takes.
It replaces the index on next_attempt_at alone, which nothing else needs (the due count reads this one).

The revision-order check (is an earlier revision for the same application still pending?) gets an index of
pending deliveries by (endpoint, application, revision, id), which answers it with one probe; the index it
replaces held every delivery ever made, and while the statistics lagged PostgreSQL preferred to walk the
endpoint's whole due list for each candidate instead (250,000 buffers, 100 ms per claim).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "webhook_deliveries_endpoint_due",
        "webhook_deliveries",
        ["endpoint_id", "next_attempt_at", "id"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index("webhook_deliveries_due", table_name="webhook_deliveries")
    op.create_index(
        "webhook_deliveries_pending_revisions",
        "webhook_deliveries",
        ["endpoint_id", "application_id", "revision", "id"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index("webhook_deliveries_endpoint_application", table_name="webhook_deliveries")


def downgrade() -> None:
    op.create_index(
        "webhook_deliveries_endpoint_application",
        "webhook_deliveries",
        ["endpoint_id", "application_id", "revision"],
    )
    op.drop_index("webhook_deliveries_pending_revisions", table_name="webhook_deliveries")
    op.create_index(
        "webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index("webhook_deliveries_endpoint_due", table_name="webhook_deliveries")
