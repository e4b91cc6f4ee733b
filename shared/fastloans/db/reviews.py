"""Review cases in PostgreSQL: opening one, appending to its hash-chained history, closing, verifying chains.

The rules (states, transitions, four eyes, the hash) are `fastloans.reviews`; this module is where the
recorder and the gateway store what those rules decide, so both write history entries the same way.
Appends run under the case's row lock (the caller has updated the case row in the same transaction), so
the entries of one case are numbered and chained one after the other.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from fastloans.db.engines import json_value
from fastloans.events import ApplicationDecided
from fastloans.reviews import GENESIS, LIVE, Action, CaseState, Link, after, entry_hash, first_broken

#: The actor of what the system does by itself (opening a case, a withdrawal, a new revision).
SYSTEM_ACTOR = "system"
#: The states a case can still be closed from by a withdrawal or a new revision.
UNFINISHED = tuple(state.value for state in (*LIVE, CaseState.WAITING_FOR_INFORMATION))

OPEN_CASE = """
INSERT INTO review_cases (id, tenant_id, application_id, revision, recommendation, risk_score, policy_version,
                          second_person_for, packet, due_at, escalate_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11)
ON CONFLICT (application_id, revision) DO NOTHING
RETURNING id, state, opened_at
"""
LAST_ENTRY = "SELECT seq, hash FROM review_history WHERE case_id = $1 ORDER BY seq DESC LIMIT 1"
APPEND = """
INSERT INTO review_history (case_id, tenant_id, seq, action, actor, state, details, at, previous_hash, hash)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10)
"""
CLOSE_UNFINISHED = """
UPDATE review_cases SET state = $3, version = version + 1, closed_at = clock_timestamp(),
                        updated_at = clock_timestamp(), claimed_by = NULL, claim_expires_at = NULL
 WHERE application_id = $1 AND tenant_id = $2 AND state = ANY($4::text[])
RETURNING id, tenant_id, revision
"""
TENANT_CASES = "SELECT c.id FROM review_cases c JOIN tenants t ON t.id = c.tenant_id WHERE t.name = $1 ORDER BY c.id"
CASE_HISTORY = (
    "SELECT case_id, tenant_id, seq, action, actor, state, details, at, previous_hash, hash "
    "FROM review_history WHERE case_id = $1 ORDER BY seq"
)


def content(
    *,
    case_id: uuid.UUID,
    tenant_id: uuid.UUID,
    seq: int,
    action: str,
    actor: str,
    state: str,
    details: Mapping[str, Any],
    at: datetime,
) -> dict[str, Any]:
    """What an entry's hash covers: every column but the hashes themselves."""
    return {
        "case_id": str(case_id),
        "tenant_id": str(tenant_id),
        "seq": seq,
        "action": action,
        "actor": actor,
        "state": state,
        "details": dict(details),
        "at": at.astimezone(UTC),
    }


async def append(
    conn: asyncpg.Connection,
    *,
    case_id: uuid.UUID,
    tenant_id: uuid.UUID,
    action: Action,
    actor: str,
    state: CaseState,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Append one entry to a case's history, chained to the last one; returns the entry as stored."""
    last = await conn.fetchrow(LAST_ENTRY, case_id)
    seq, previous = (1, GENESIS) if last is None else (last["seq"] + 1, last["hash"])
    # Microseconds, as PostgreSQL stores them, so the hash is computed on what is read back.
    at = datetime.now(UTC)
    entry = content(
        case_id=case_id,
        tenant_id=tenant_id,
        seq=seq,
        action=action.value,
        actor=actor,
        state=state.value,
        details=details or {},
        at=at,
    )
    digest = entry_hash(previous, entry)
    await conn.execute(
        APPEND,
        case_id,
        tenant_id,
        seq,
        action.value,
        actor,
        state.value,
        orjson.dumps(entry["details"]).decode(),
        at,
        previous,
        digest,
    )
    return {**entry, "previous_hash": previous, "hash": digest}


async def open_case(conn: asyncpg.Connection, event: ApplicationDecided) -> uuid.UUID | None:
    """Open the review case of a referred revision (None if it has one already); call in its decision's transaction."""
    referral = event.referral
    if referral is None:
        return None
    row = await conn.fetchrow(
        OPEN_CASE,
        uuid.uuid4(),
        event.tenant_id,
        event.application_id,
        event.revision,
        referral.recommendation,
        event.risk_score,
        event.policy.version,
        list(referral.second_person_for),
        orjson.dumps(referral.packet).decode(),
        event.submitted_at + timedelta(days=referral.deadline_days),
        event.submitted_at + timedelta(days=referral.escalation_days),
    )
    if row is None:
        return None
    case_id: uuid.UUID = row["id"]
    await append(
        conn,
        case_id=case_id,
        tenant_id=event.tenant_id,
        action=Action.OPEN,
        actor=SYSTEM_ACTOR,
        state=CaseState.OPEN,
        details={"revision": event.revision, "recommendation": referral.recommendation},
    )
    await conn.execute(
        "UPDATE loan_applications SET review_case_id = $3 WHERE id = $1 AND revision = $2",
        event.application_id,
        event.revision,
        case_id,
    )
    return case_id


async def close_unfinished(
    conn: asyncpg.Connection,
    *,
    application_id: uuid.UUID,
    tenant_id: uuid.UUID,
    action: Action,
    details: Mapping[str, Any] | None = None,
) -> list[uuid.UUID]:
    """Close the application's unfinished cases by a withdrawal or a new revision, in the caller's transaction."""
    state = after(CaseState.OPEN, action)  # the same target from every unfinished state
    rows = await conn.fetch(CLOSE_UNFINISHED, application_id, tenant_id, state.value, list(UNFINISHED))
    for row in rows:
        await append(
            conn,
            case_id=row["id"],
            tenant_id=tenant_id,
            action=action,
            actor=SYSTEM_ACTOR,
            state=state,
            details={**(details or {}), "revision": row["revision"]},
        )
    return [row["id"] for row in rows]


def links(rows: Sequence[Mapping[str, Any]]) -> list[Link]:
    """Stored history rows as the chain's links."""
    return [
        Link(
            content(
                case_id=row["case_id"],
                tenant_id=row["tenant_id"],
                seq=row["seq"],
                action=row["action"],
                actor=row["actor"],
                state=row["state"],
                details=json_value(row["details"]) or {},
                at=row["at"],
            ),
            row["previous_hash"],
            row["hash"],
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class BrokenLink:
    """The first history entry of a case that does not verify."""

    case_id: uuid.UUID
    seq: int | None
    reason: str


async def verify_tenant(conn: asyncpg.Connection, tenant: str) -> tuple[int, int, BrokenLink | None]:
    """Check every case chain of `tenant`: (cases, entries, the first broken link or None)."""
    cases = [row["id"] for row in await conn.fetch(TENANT_CASES, tenant)]
    entries = 0
    for case_id in cases:
        rows = await conn.fetch(CASE_HISTORY, case_id)
        entries += len(rows)
        if not rows:
            return len(cases), entries, BrokenLink(case_id, None, "the case has no history")
        broken = first_broken(links(rows))
        if broken is None and [row["seq"] for row in rows] != list(range(1, len(rows) + 1)):
            broken = next(i for i, row in enumerate(rows) if row["seq"] != i + 1)
        if broken is not None:
            row = rows[broken]
            reason = (
                "its previous_hash is not the hash of the entry before it (one was removed or reordered)"
                if row["previous_hash"] != (GENESIS if broken == 0 else rows[broken - 1]["hash"])
                else "its content does not match its hash (edited after it was written)"
            )
            return len(cases), entries, BrokenLink(case_id, row["seq"], reason)
    return len(cases), entries, None
