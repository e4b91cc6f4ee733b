"""A reviewer's decision is a recorded decision: a second row for its revision, `decided_by = 'review'`.

Until now `loan_decisions` held one row per revision, the policy's, so a revision the policy referred and a
reviewer then rejected kept only the `referred` record: the adverse-action notice and every report read the
policy's referral instead of the final decision and the reviewer's reasons. Each row now says who decided it
(`policy`, the default every existing row takes, or `review`) and, for a reviewer's, its review case; the
unique key becomes (application, revision, decider), so a redelivered message still records nothing twice.

The new key replaces the old one: a recorder still running the previous release (its `ON CONFLICT` names the
old key) fails its batches until it is replaced, and the messages it has not committed go to the new one.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("loan_decisions", sa.Column("decided_by", sa.Text, nullable=False, server_default="policy"))
    op.add_column("loan_decisions", sa.Column("review_case_id", pg.UUID(as_uuid=True)))
    op.create_check_constraint("loan_decisions_decided_by", "loan_decisions", "decided_by IN ('policy', 'review')")
    op.create_unique_constraint(
        "loan_decisions_once_per_revision_and_decider", "loan_decisions", ["application_id", "revision", "decided_by"]
    )
    op.drop_constraint("loan_decisions_once_per_revision", "loan_decisions", type_="unique")


def downgrade() -> None:
    # The old key allows one row per revision: the reviewers' decisions (and notices rendered from them) go.
    reviewed = "SELECT id FROM loan_decisions WHERE decided_by = 'review'"
    op.execute(f"DELETE FROM adverse_action_notices WHERE decision_id IN ({reviewed})")
    op.execute("DELETE FROM loan_decisions WHERE decided_by = 'review'")
    op.create_unique_constraint("loan_decisions_once_per_revision", "loan_decisions", ["application_id", "revision"])
    op.drop_constraint("loan_decisions_once_per_revision_and_decider", "loan_decisions", type_="unique")
    op.drop_constraint("loan_decisions_decided_by", "loan_decisions", type_="check")
    op.drop_column("loan_decisions", "review_case_id")
    op.drop_column("loan_decisions", "decided_by")
