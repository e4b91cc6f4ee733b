"""The recorder: decided → one row per (application, revision) and the application's new status.

Writes are idempotent: a redelivered decision hits the unique key and changes
nothing; a decision for an older revision, or for a withdrawn application, is
kept in the history but never applied to the application.
"""

from __future__ import annotations

import orjson
from aiokafka import ConsumerRecord

from fastloans import services
from fastloans.contracts import DECIDED_CHANNEL
from fastloans.events import ApplicationDecided, EventDecodeError, Topic
from fastloans.policy import load_default_policy, load_policy
from fastloans.runtime import run_worker
from fastloans.settings import Settings, load_settings
from fastloans.worker import PipelineWorker
from fastloans_recorder.metrics import DECISION_REASONS, DECISIONS, SUBMISSION_TO_DECISION, declare_decisions

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
    ON CONFLICT (application_id, revision) DO NOTHING
    RETURNING application_id, revision, outcome, risk_score, reasons, policy_version, counteroffer, what_would_change
), applied AS (
    UPDATE loan_applications a
       SET status = i.outcome, risk_score = i.risk_score, is_approved = (i.outcome = 'approved'),
           reasons = i.reasons, policy_version = i.policy_version,
           counteroffer = i.counteroffer, what_would_change = i.what_would_change,
           decided_at = clock_timestamp(), updated_at = clock_timestamp()
      FROM inserted i
     WHERE a.id = i.application_id AND a.revision = i.revision AND a.status = 'pending'
    RETURNING a.id, a.status, a.policy_version, a.reasons, a.submitted_at, a.decided_at
)
SELECT id, status, policy_version,
       -- only the reason codes, for the metric: decoding the whole jsonb per row costs more than the insert
       ARRAY(SELECT jsonb_array_elements(reasons->'principal_reasons')->>'reason_code') AS reason_codes,
       EXTRACT(EPOCH FROM decided_at - submitted_at)::float8 AS seconds
  FROM applied
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
        latest: dict[tuple[object, int], ApplicationDecided] = {}
        for record in records:
            event = ApplicationDecided.decode(record.value)
            latest[(event.application_id, event.revision)] = event
        events = list(latest.values())
        async with self.db.connection() as conn, conn.transaction():
            known = {
                row["id"]
                for row in await conn.fetch(
                    "SELECT id FROM loan_applications WHERE id = ANY($1::uuid[])", [e.application_id for e in events]
                )
            }
            unknown = [e for e in events if e.application_id not in known]
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
            if rows:
                ids = [str(row["id"]) for row in rows]
                await conn.execute(
                    NOTIFY_IDS,
                    [",".join(ids[i : i + IDS_PER_NOTIFICATION]) for i in range(0, len(ids), IDS_PER_NOTIFICATION)],
                )
        for row in rows:
            DECISIONS.labels(row["status"], row["policy_version"]).inc()
            SUBMISSION_TO_DECISION.observe(max(0.0, row["seconds"]))
            for code in row["reason_codes"]:
                DECISION_REASONS.labels(code or "unknown").inc()


def main() -> None:
    """Console entry point: `fastloans-recorder`."""
    run_worker(load_settings(RecorderSettings), RecorderWorker)
