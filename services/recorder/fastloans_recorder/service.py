"""The recorder: decided → one row per (application, revision, decider) and the application's new status.

Writes are idempotent: a redelivered decision hits the unique key and changes
nothing; a decision for an older revision, or for a withdrawn application, is
kept in the history but never applied to the application. A `referred` decision
that is applied opens the revision's review case in the same transaction (once:
a redelivery applies nothing, and the case is unique per revision). A reviewer's
decision on a referred revision (`decided_by: review`) is recorded as the revision's
second decision, and applied to it while it is still referred and its case is the
one decided, which a redelivery is not.
"""

from __future__ import annotations

import asyncpg
import orjson
from aiokafka import ConsumerRecord

from fastloans import services
from fastloans.contracts import DECIDED_CHANNEL
from fastloans.db.reviews import open_case
from fastloans.events import ApplicationDecided, EventDecodeError, Topic
from fastloans.policy import load_default_policy, load_policy, reason_text
from fastloans.runtime import run_worker
from fastloans.settings import Settings, load_settings
from fastloans.worker import PipelineWorker
from fastloans_recorder.metrics import (
    DECISION_REASONS,
    DECISIONS,
    REVIEW_CASES_OPENED,
    REVIEW_DECISIONS_APPLIED,
    SUBMISSION_TO_DECISION,
    declare_decisions,
)

RECORD_BATCH = """
WITH incoming AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::int[], $6::jsonb[], $7::text[],
                         $8::text[], $9::text[], $10::jsonb[], $11::timestamptz[], $12::timestamptz[],
                         $13::jsonb[], $14::jsonb[])
        AS t(application_id, tenant_id, revision, outcome, risk_score, reasons, policy_name, policy_version,
             policy_hash, challenger, submitted_at, decided_at, counteroffer, what_would_change)
), inserted AS (
    INSERT INTO loan_decisions (application_id, tenant_id, revision, outcome, risk_score, reasons, policy_name,
                                policy_version, policy_hash, challenger, submitted_at, decided_at, counteroffer,
                                what_would_change)
    SELECT * FROM incoming
    ON CONFLICT (application_id, revision, decided_by) DO NOTHING
    RETURNING application_id, revision, outcome, risk_score, reasons, policy_version, counteroffer, what_would_change
), applied AS (
    UPDATE loan_applications a
       SET status = i.outcome, risk_score = i.risk_score, is_approved = (i.outcome = 'approved'),
           reasons = i.reasons, policy_version = i.policy_version,
           counteroffer = i.counteroffer, what_would_change = i.what_would_change, decided_by = 'policy',
           decided_at = clock_timestamp(), updated_at = clock_timestamp()
      FROM inserted i
     WHERE a.id = i.application_id AND a.revision = i.revision AND a.status = 'pending'
    RETURNING a.id, a.revision, a.status, a.policy_version, a.reasons, a.submitted_at, a.decided_at
)
SELECT id, revision, status, policy_version,
       -- only the reason codes, for the metric: decoding the whole jsonb per row costs more than the insert
       ARRAY(SELECT jsonb_array_elements(reasons->'principal_reasons')->>'reason_code') AS reason_codes,
       EXTRACT(EPOCH FROM decided_at - submitted_at)::float8 AS seconds
  FROM applied
"""
# A reviewer's decision: recorded as the revision's second decision (`decided_by = 'review'`, once: the unique
# key absorbs a redelivery) when the policy referred it, and applied while the revision is still referred and
# its case is the one decided. The score and the policy are the referral's; the reasons are the reviewer's.
RECORD_REVIEW = """
WITH inserted AS (
    INSERT INTO loan_decisions (application_id, tenant_id, revision, outcome, risk_score, reasons, policy_name,
                                policy_version, policy_hash, submitted_at, decided_at, decided_by, review_case_id)
    SELECT p.application_id, p.tenant_id, p.revision, $3, p.risk_score,
           jsonb_build_object('contributions', COALESCE(p.reasons->'contributions', '[]'::jsonb),
                              'principal_reasons', $4::jsonb),
           p.policy_name, p.policy_version, p.policy_hash, p.submitted_at, $7, 'review', $6
      FROM loan_decisions p
     WHERE p.application_id = $1 AND p.revision = $2 AND p.decided_by = 'policy' AND p.outcome = 'referred'
    ON CONFLICT (application_id, revision, decided_by) DO NOTHING
    RETURNING application_id, revision
)
UPDATE loan_applications a
   SET status = $3, is_approved = ($3 = 'approved'),
       reasons = jsonb_set(COALESCE(a.reasons, '{}'::jsonb), '{principal_reasons}', $4::jsonb),
       decided_by = 'review', review_reasons = $5::jsonb, decided_at = clock_timestamp(), updated_at = clock_timestamp()
  FROM inserted i
 WHERE a.id = i.application_id AND a.revision = i.revision AND a.status = 'referred' AND a.review_case_id = $6
RETURNING a.id, a.status
"""
# Long-polling readers are woken by one notification per 200 decisions (comma-separated ids; a
# payload must stay under 8,000 bytes), delivered when the transaction commits.
NOTIFY_IDS = "SELECT pg_notify('" + DECIDED_CHANNEL + "', ids) FROM unnest($1::text[]) AS ids"
IDS_PER_NOTIFICATION = 200


def _json_or_null(value: object) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


class RecorderSettings(Settings):
    """Recorder settings (name, port and dependencies from the registry)."""

    service = services.RECORDER


class RecorderWorker(PipelineWorker):
    """Stores decisions, a whole batch in one statement and one transaction."""

    input_topic = Topic.DECIDED
    # Plan every statement for its actual arguments. A connection caches a generic plan after a few
    # executions, and one made while `loan_applications` was nearly empty (a new installation, the
    # benchmark's fresh stack) scans the whole table on every batch long after it has grown; the
    # foreign-key checks of the decision inserts are cached plans too. Planning costs little next
    # to a batch.
    database_settings = {"plan_cache_mode": "force_custom_plan"}

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        # The policy the deciders run unless told otherwise (POLICY_FILE, else the built-in one).
        policy = load_policy(settings.policy_file) if settings.policy_file else load_default_policy()
        declare_decisions(policy.version)

    async def handle(self, records: list[ConsumerRecord]) -> None:
        """Record a batch; returns once it is committed."""
        latest: dict[tuple[object, int, str], ApplicationDecided] = {}
        for record in records:
            event = ApplicationDecided.decode(record.value)
            latest[(event.application_id, event.revision, event.decided_by)] = event
        events = [e for e in latest.values() if e.decided_by == "policy"]
        reviewed = [e for e in latest.values() if e.decided_by == "review"]
        if any(e.review is None for e in reviewed):
            raise EventDecodeError("a reviewer's decision without its review")
        async with self.db.connection() as conn, conn.transaction():
            known = {
                row["id"]
                for row in await conn.fetch(
                    "SELECT id FROM loan_applications WHERE id = ANY($1::uuid[])",
                    [e.application_id for e in (*events, *reviewed)],
                )
            }
            unknown = [e for e in (*events, *reviewed) if e.application_id not in known]
            if unknown:
                raise EventDecodeError(f"decision for unknown application {unknown[0].application_id}")
            rows = await conn.fetch(
                RECORD_BATCH,
                [e.application_id for e in events],
                [e.tenant_id for e in events],
                [e.revision for e in events],
                [e.outcome for e in events],
                [e.risk_score for e in events],
                [
                    orjson.dumps({"contributions": e.contributions, "principal_reasons": e.principal_reasons}).decode()
                    for e in events
                ],
                [e.policy.name for e in events],
                [e.policy.version for e in events],
                [e.policy.hash for e in events],
                [orjson.dumps(e.challenger).decode() if e.challenger is not None else None for e in events],
                [e.submitted_at for e in events],
                [e.decided_at for e in events],
                [_json_or_null(e.counteroffer) for e in events],
                [_json_or_null(e.what_would_change) for e in events],
            )
            referred = {(e.application_id, e.revision): e for e in events if e.referral is not None}
            opened = 0
            for row in rows:
                decision = referred.get((row["id"], row["revision"])) if row["status"] == "referred" else None
                if decision is not None and await open_case(conn, decision) is not None:
                    opened += 1
            applied = [row for e in reviewed if (row := await self._apply_review(conn, e)) is not None]
            if rows or applied:
                ids = [str(row["id"]) for row in (*rows, *applied)]
                await conn.execute(
                    NOTIFY_IDS,
                    [",".join(ids[i : i + IDS_PER_NOTIFICATION]) for i in range(0, len(ids), IDS_PER_NOTIFICATION)],
                )
        REVIEW_CASES_OPENED.inc(opened)
        for row in applied:
            REVIEW_DECISIONS_APPLIED.labels(row["status"]).inc()
        for row in rows:
            DECISIONS.labels(row["status"], row["policy_version"]).inc()
            SUBMISSION_TO_DECISION.observe(max(0.0, row["seconds"]))
            for code in row["reason_codes"]:
                DECISION_REASONS.labels(code or "unknown").inc()

    async def _apply_review(self, conn: asyncpg.Connection, event: ApplicationDecided) -> asyncpg.Record | None:
        """Record a reviewer's decision and apply it to its referred revision; None when not applied (a redelivery)."""
        assert event.review is not None
        row = await conn.fetchrow(
            RECORD_REVIEW,
            event.application_id,
            event.revision,
            event.outcome,
            orjson.dumps(event.principal_reasons).decode(),
            orjson.dumps([{"reason_code": c, "text": reason_text(c)} for c in event.review.reason_codes]).decode(),
            event.review.case_id,
            event.decided_at,
        )
        return row


def main() -> None:
    """Console entry point: `fastloans-recorder`."""
    run_worker(load_settings(RecorderSettings), RecorderWorker)
