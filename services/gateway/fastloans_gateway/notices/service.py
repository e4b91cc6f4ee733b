"""Adverse-action notices, stored once per decision: the first request renders and stores the notice, every later
one gets the stored HTML back (same SHA-256), whatever the template or the tenant's settings have become since.

This layer speaks notices, not HTTP: it raises `NoticeUnavailable` with the reason, and the route answers it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import asyncpg

from fastloans.db import Database
from fastloans.tenants import NOTICE_SETTING_OPTIONS
from fastloans_gateway.applications import NotFound
from fastloans_gateway.notices.content import (
    content_hash,
    content_of,
    missing_settings,
    render_html,
    template_version,
)

#: How far ahead of the gateway's clock a recorded sending time may be (the lender's clock may run ahead a little).
SENT_AT_SKEW: Final = timedelta(minutes=5)

Reason = Literal["approved", "pending", "withdrawn", "settings", "sent_conflict", "sent_time"]

# The application, its current revision's final decision (the one applied: a reviewer's, once a reviewer has
# decided a referred revision, else the policy's), the tenant's notice settings and the stored notice, if any.
CURRENT = """
SELECT a.id AS application_id, a.status, a.revision, a.applicant_name, a.credit_score, a.loan_amount,
       a.submitted_at, d.id AS decision_id, d.outcome, d.reasons, d.counteroffer, d.decided_at, d.policy_version,
       s.creditor_name, s.address, s.supervising_agency, s.contact, s.score_source,
       n.template_version, n.content_sha256, n.html, n.created_at, n.sent_at
  FROM loan_applications a
  LEFT JOIN loan_decisions d ON d.application_id = a.id AND d.revision = a.revision
                             AND d.decided_by = COALESCE(a.decided_by, 'policy')
  LEFT JOIN tenant_notice_settings s ON s.tenant_id = a.tenant_id
  LEFT JOIN adverse_action_notices n ON n.decision_id = d.id
 WHERE a.id = $1 AND a.tenant_id = $2
"""
STORE = """
INSERT INTO adverse_action_notices (decision_id, tenant_id, application_id, template_version, content_sha256, html)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (decision_id) DO NOTHING
"""
STORED = """
SELECT decision_id, application_id, template_version, content_sha256, html, created_at, sent_at
  FROM adverse_action_notices WHERE decision_id = $1
"""
MARK_SENT = "UPDATE adverse_action_notices SET sent_at = $2 WHERE decision_id = $1 AND sent_at IS NULL"


class NoticeUnavailable(Exception):
    """No notice can be given for this application now; `reason` says why, `detail` says it in words."""

    def __init__(self, reason: Reason, detail: str, *, fields: list[str] | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.fields = fields or []


@dataclass(frozen=True, slots=True)
class StoredNotice:
    """A notice as stored: its HTML, the template version it was rendered with, its hash, and when it was sent."""

    application_id: uuid.UUID
    decision_id: int
    template_version: str
    content_sha256: str
    html: str
    created_at: datetime
    sent_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (without the HTML)."""
        return {
            "application_id": str(self.application_id),
            "decision_id": self.decision_id,
            "template_version": self.template_version,
            "content_sha256": self.content_sha256,
            "created_at": self.created_at,
            "sent_at": self.sent_at,
        }


def _stored(row: asyncpg.Record) -> StoredNotice:
    return StoredNotice(
        application_id=row["application_id"],
        decision_id=row["decision_id"],
        template_version=row["template_version"],
        content_sha256=row["content_sha256"],
        html=row["html"],
        created_at=row["created_at"],
        sent_at=row["sent_at"],
    )


def check_notice_due(row: asyncpg.Record) -> None:
    """Raise `NoticeUnavailable` unless the current decision is adverse and the tenant's settings are complete."""
    if row["status"] == "withdrawn":
        raise NoticeUnavailable(
            "withdrawn", "the application was withdrawn before a notice was produced: no adverse-action notice is due"
        )
    if row["decision_id"] is None or row["status"] == "pending":
        raise NoticeUnavailable(
            "pending",
            f"revision {row['revision']} of the application is not decided yet: "
            "a notice can be produced once it is rejected or referred",
        )
    if row["outcome"] == "approved":
        raise NoticeUnavailable("approved", "the application was approved: no adverse-action notice is given")
    missing = missing_settings(row if row["creditor_name"] is not None else None)
    if missing:
        options = " ".join(f"{NOTICE_SETTING_OPTIONS[name]} …" for name in missing)
        raise NoticeUnavailable(
            "settings",
            f"this tenant's notice settings are incomplete ({', '.join(missing)}): "
            f"set them with `fastloans tenants notice-settings --tenant <name> {options}`",
            fields=missing,
        )


class Notices:
    """The notices of a tenant's applications, rendered on first request and stored once per decision."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, *, tenant_id: uuid.UUID, application_id: uuid.UUID) -> StoredNotice:
        """The notice of the application's current decision: the stored one, or rendered and stored now."""
        async with self.db.connection() as conn:
            row = await conn.fetchrow(CURRENT, application_id, tenant_id)
            if row is None:
                raise NotFound
            # A notice already produced stays producible, even once the application is withdrawn.
            if row["html"] is not None:
                return _stored(row)
            check_notice_due(row)
            html = render_html(content_of(row, row, issued_on=datetime.now(UTC).date()))
            await conn.execute(
                STORE, row["decision_id"], tenant_id, application_id, template_version(), content_hash(html), html
            )
            # The one stored: ours, or a concurrent request's if it stored first.
            return _stored(await conn.fetchrow(STORED, row["decision_id"]))

    async def mark_sent(
        self, *, tenant_id: uuid.UUID, application_id: uuid.UUID, sent_at: datetime | None
    ) -> StoredNotice:
        """Record when the lender sent the notice (now when not given); the same time again changes nothing."""
        notice = await self.get(tenant_id=tenant_id, application_id=application_id)
        now = datetime.now(UTC)
        if sent_at is not None and sent_at > now + SENT_AT_SKEW:
            raise NoticeUnavailable("sent_time", "sent_at is in the future", fields=["sent_at"])
        if sent_at is not None and sent_at < notice.created_at:
            raise NoticeUnavailable(
                "sent_time",
                f"sent_at is before the notice was produced ({notice.created_at.isoformat()})",
                fields=["sent_at"],
            )
        if notice.sent_at is None:
            async with self.db.connection() as conn:
                # Recorded by this request, or by another at the same moment: either way, read what was recorded.
                await conn.execute(MARK_SENT, notice.decision_id, sent_at or now)
                notice = _stored(await conn.fetchrow(STORED, notice.decision_id))
        recorded = notice.sent_at
        if sent_at is None or recorded is None or recorded == sent_at:
            return notice
        raise NoticeUnavailable(
            "sent_conflict",
            f"this notice was already recorded as sent at {recorded.isoformat()}; a notice is sent once",
            fields=["sent_at"],
        )
