"""The review queue: the service behind /api/v1/reviews. Claims, decisions, four eyes, requests for information.

This layer speaks cases, not HTTP: it raises the errors below and the API maps them to problem+json
(`fastloans_gateway.api.errors`). Every change is one transaction that updates the case only if it still has
the state and version it was read with (two reviewers racing: one wins, the other gets `CaseConflict`), and
appends the history entry under the row lock that update takes. A final decision is written with its outbox
row, so it reaches `loan-applications.decided` exactly as the policy's decisions do.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
import orjson

from fastloans.db import Database, json_value
from fastloans.db.reviews import UNFINISHED, append
from fastloans.events import ApplicationDecided, PolicyRef, ReviewerDecision, Topic
from fastloans.policy import reason_catalogue, reason_text
from fastloans.reviews import (
    MAX_REVIEW_REASONS,
    Action,
    CaseState,
    FourEyesViolation,
    TransitionRefused,
    after,
    check_four_eyes,
    reason_factor,
)
from fastloans.settings import Settings
from fastloans_gateway import outbox
from fastloans_gateway.applications import COLUMNS, ApplicationError
from fastloans_gateway.metrics import REVIEW_ACTIONS, REVIEW_OVERRIDES, REVIEW_TIME_TO_DECISION

CASE_COLUMNS = (
    "id, tenant_id, application_id, revision, state, version, recommendation, risk_score, policy_version, "
    "second_person_for, packet, opened_at, due_at, escalate_at, claimed_by, claim_expires_at, outcome, "
    "reason_codes, note, decided_by, override, approved_by, information_requested, clock_stopped_at, closed_at"
)
READ_CASE = f"SELECT {CASE_COLUMNS} FROM review_cases WHERE id = $1 AND tenant_id = $2"
HISTORY = (
    "SELECT seq, action, actor, state, details, at, previous_hash, hash FROM review_history "
    "WHERE case_id = $1 ORDER BY seq"
)
# What the relay samples into the queue gauges (fastloans_gateway.metrics).
QUEUE_GAUGES = """
SELECT state, count(*) AS cases,
       COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(opened_at)), 0)::float8 AS oldest,
       count(*) FILTER (WHERE escalate_at <= clock_timestamp()) AS escalated,
       EXTRACT(EPOCH FROM min(due_at) FILTER (WHERE state <> 'waiting_for_information') - clock_timestamp())::float8
           AS least_left
  FROM review_cases WHERE state = ANY($1::text[]) GROUP BY state
"""
DECISION_RECORD = (
    "SELECT outcome, risk_score, reasons, policy_name, policy_version, policy_hash, counteroffer, what_would_change, "
    "decided_at FROM loan_decisions WHERE application_id = $1 AND revision = $2 AND decided_by = 'policy'"
)


class ReviewError(ApplicationError):
    """A review action the service cannot carry out, for a reason the caller can act on."""


class CaseNotFound(ReviewError):
    """No such review case for this tenant."""


class CaseConflict(ReviewError):
    """The case is not in a state (or version, or claim) that allows the action."""


class NotAllowed(ReviewError):
    """The caller may not take this action on this case (four eyes; a key without an actor)."""


class InvalidDecision(ReviewError):
    """The decision's fields are not acceptable; `field` names the one at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class CaseDetail:
    """A case with its application, the policy's decision record and its history."""

    case: asyncpg.Record
    application: asyncpg.Record | None
    decision: asyncpg.Record | None
    history: list[asyncpg.Record]


def scored_factors(packet: Mapping[str, Any] | None) -> set[str]:
    """The factors the policy scored points for, by the case's packet: the ones a reviewer's reason may name."""
    return {rule["factor"] for rule in (packet or {}).get("rules", ())}


def reason_options(packet: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """The catalogue's codes (and texts) a decision on the case may give, in catalogue order."""
    scored = scored_factors(packet)
    return [(code, text) for code, text in reason_catalogue().items() if reason_factor(code) in scored]


def check_reasons(case: Mapping[str, Any], outcome: str, codes: Sequence[str]) -> None:
    """Catalogued codes, at most four for a rejection and at least one, each of a factor the policy scored."""
    catalogue = reason_catalogue()
    if len(set(codes)) != len(codes):
        raise InvalidDecision("reason_codes", "a reason code is given more than once")
    if outcome == "reject" and not codes:
        raise InvalidDecision("reason_codes", "a rejection needs at least one reason code")
    if len(codes) > MAX_REVIEW_REASONS:
        raise InvalidDecision("reason_codes", f"at most {MAX_REVIEW_REASONS} reason codes")
    scored = scored_factors(json_value(case["packet"]))
    for code in codes:
        if code not in catalogue:
            raise InvalidDecision("reason_codes", f"{code} is not in the reason catalogue")
        factor = reason_factor(code)
        if factor not in scored:
            raise InvalidDecision(
                "reason_codes",
                f"{code} is not supported by the application's facts: the policy scored no {factor} points for it",
            )


class Reviews:
    """Every tenant's review cases; every call names its tenant (another tenant's case is `CaseNotFound`)."""

    def __init__(self, db: Database, settings: Settings, *, claim_idle: timedelta, notify: Callable[[], None]) -> None:
        self.db = db
        self.settings = settings
        self.claim_idle = claim_idle
        self.notify = notify

    async def page(
        self,
        *,
        tenant_id: uuid.UUID,
        state: str | None,
        due_before: datetime | None,
        limit: int,
        after_position: tuple[datetime, uuid.UUID] | None,
    ) -> tuple[list[asyncpg.Record], bool]:
        """Up to `limit` cases, earliest due first (unfinished ones unless `state` says), and whether more follow."""
        args: list[Any] = [tenant_id]
        clauses = ["tenant_id = $1"]
        if state:
            args.append(state)
            clauses.append(f"state = ${len(args)}")
        else:
            args.append(list(UNFINISHED))
            clauses.append(f"state = ANY(${len(args)}::text[])")
        if due_before is not None:
            args.append(due_before)
            clauses.append(f"due_at < ${len(args)}")
        if after_position is not None:
            args.extend(after_position)
            clauses.append(f"(due_at, id) > (${len(args) - 1}, ${len(args)})")
        args.append(limit + 1)
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {CASE_COLUMNS} FROM review_cases WHERE {' AND '.join(clauses)} "
                f"ORDER BY due_at, id LIMIT ${len(args)}",
                *args,
            )
        return rows[:limit], len(rows) > limit

    async def get(self, *, tenant_id: uuid.UUID, case_id: uuid.UUID) -> CaseDetail:
        """The case, its application (even withdrawn), the policy's decision record and the history."""
        async with self.db.connection() as conn:
            case = await conn.fetchrow(READ_CASE, case_id, tenant_id)
            if case is None:
                raise CaseNotFound
            application = await conn.fetchrow(
                f"SELECT {COLUMNS} FROM loan_applications WHERE id = $1 AND tenant_id = $2",
                case["application_id"],
                tenant_id,
            )
            decision = await conn.fetchrow(DECISION_RECORD, case["application_id"], case["revision"])
            history = await conn.fetch(HISTORY, case_id)
        return CaseDetail(case, application, decision, list(history))

    async def claim(
        self, *, tenant_id: uuid.UUID, case_id: uuid.UUID, actor: str, version: int | None
    ) -> asyncpg.Record:
        """Take (or renew) the case's lease; `CaseConflict` while another actor holds a live one."""
        async with self.db.connection() as conn, conn.transaction():
            case = await self._read(conn, tenant_id, case_id, version)
            now = datetime.now(UTC)
            if case["state"] == CaseState.CLAIMED and case["claimed_by"] != actor and case["claim_expires_at"] > now:
                raise CaseConflict(
                    f"the case is claimed by {case['claimed_by']} until {case['claim_expires_at'].isoformat()}"
                )
            return await self._move(
                conn,
                case,
                Action.CLAIM,
                actor,
                values={"claimed_by": actor, "claim_expires_at": now + self.claim_idle},
                details={"lease_seconds": int(self.claim_idle.total_seconds())},
            )

    async def decide(
        self,
        *,
        tenant_id: uuid.UUID,
        case_id: uuid.UUID,
        actor: str,
        version: int | None,
        outcome: str,
        reason_codes: list[str],
        note: str | None,
        trace: dict[str, str],
    ) -> asyncpg.Record:
        """The holder's decision: final when it follows the recommendation, else an override that may need two."""
        async with self.db.connection() as conn, conn.transaction():
            case = await self._read(conn, tenant_id, case_id, version)
            self._check_holder(case, actor)
            check_reasons(case, outcome, reason_codes)
            override = case["recommendation"] is not None and outcome != case["recommendation"]
            if override and not (note and note.strip()):
                raise InvalidDecision("note", "an override of the policy's recommendation must be explained in a note")
            second = override and outcome in case["second_person_for"]
            moved = await self._move(
                conn,
                case,
                Action.DECIDE,
                actor,
                overrides=second,
                values={
                    "outcome": outcome,
                    "reason_codes": reason_codes,
                    "note": note,
                    "decided_by": actor,
                    "override": override,
                    "claim_expires_at": None,
                },
                details={"outcome": outcome, "reason_codes": reason_codes, "override": override},
            )
            if moved["state"] == CaseState.DECIDED:
                await self._publish(conn, moved, trace)
        if moved["state"] == CaseState.DECIDED:
            self.notify()
            _decided(moved)
        if moved["override"]:
            REVIEW_OVERRIDES.labels(outcome, actor).inc()
        return moved

    async def approve(
        self, *, tenant_id: uuid.UUID, case_id: uuid.UUID, actor: str, version: int | None, trace: dict[str, str]
    ) -> asyncpg.Record:
        """A supervisor's approval of someone else's override: the decision becomes final and is published."""
        async with self.db.connection() as conn, conn.transaction():
            case = await self._read(conn, tenant_id, case_id, version)
            self._check_second_person(case, Action.APPROVE, actor)
            moved = await self._move(conn, case, Action.APPROVE, actor, values={"approved_by": actor})
            await self._publish(conn, moved, trace)
        self.notify()
        _decided(moved)
        return moved

    async def send_back(
        self, *, tenant_id: uuid.UUID, case_id: uuid.UUID, actor: str, version: int | None, note: str | None
    ) -> asyncpg.Record:
        """A supervisor returns someone else's override: the case is open again, its decision cleared."""
        async with self.db.connection() as conn, conn.transaction():
            case = await self._read(conn, tenant_id, case_id, version)
            self._check_second_person(case, Action.RETURN, actor)
            return await self._move(
                conn,
                case,
                Action.RETURN,
                actor,
                values=dict.fromkeys(
                    ("outcome", "reason_codes", "note", "decided_by", "override", "claimed_by", "claim_expires_at")
                ),
                details={"returned": {"outcome": case["outcome"], "decided_by": case["decided_by"]}, "note": note},
            )

    async def request_information(
        self, *, tenant_id: uuid.UUID, case_id: uuid.UUID, actor: str, version: int | None, items: list[str]
    ) -> asyncpg.Record:
        """The holder asks the applicant for more: the deadline's clock stops until a new revision (a PATCH)."""
        async with self.db.connection() as conn, conn.transaction():
            case = await self._read(conn, tenant_id, case_id, version)
            self._check_holder(case, actor)
            return await self._move(
                conn,
                case,
                Action.REQUEST_INFORMATION,
                actor,
                values={
                    "information_requested": _Json(items),
                    "clock_stopped_at": datetime.now(UTC),
                    "claim_expires_at": None,
                },
                details={"items": items},
            )

    async def _read(
        self, conn: asyncpg.Connection, tenant_id: uuid.UUID, case_id: uuid.UUID, version: int | None
    ) -> asyncpg.Record:
        case = await conn.fetchrow(READ_CASE, case_id, tenant_id)
        if case is None:
            raise CaseNotFound
        if version is not None and version != case["version"]:
            raise CaseConflict(f"the case is at version {case['version']}, not {version}: read it again")
        return case

    @staticmethod
    def _check_holder(case: asyncpg.Record, actor: str) -> None:
        if case["state"] != CaseState.CLAIMED:
            raise CaseConflict(f"a case that is {case['state']} cannot be worked on: claim it first")
        if case["claimed_by"] != actor or case["claim_expires_at"] <= datetime.now(UTC):
            raise CaseConflict("only the holder of a live claim can do this: claim the case first")

    @staticmethod
    def _check_second_person(case: asyncpg.Record, action: Action, actor: str) -> None:
        try:
            after(CaseState(case["state"]), action)
            check_four_eyes(case["decided_by"], actor)
        except TransitionRefused as error:
            raise CaseConflict(str(error)) from None
        except FourEyesViolation as error:
            raise NotAllowed(str(error)) from None

    async def _move(
        self,
        conn: asyncpg.Connection,
        case: asyncpg.Record,
        action: Action,
        actor: str,
        *,
        overrides: bool = False,
        values: Mapping[str, Any],
        details: Mapping[str, Any] | None = None,
    ) -> asyncpg.Record:
        """Move the case by `action` if it still has the state and version it was read with, and record it."""
        try:
            target = after(CaseState(case["state"]), action, overrides=overrides)
        except TransitionRefused as error:
            raise CaseConflict(str(error)) from None
        assignments = [
            f"{name} = ${i}{'::jsonb' if isinstance(value, _Json) else ''}"
            for i, (name, value) in enumerate(values.items(), start=5)
        ]
        closed = ", closed_at = clock_timestamp()" if target is CaseState.DECIDED else ""
        moved = await conn.fetchrow(
            f"UPDATE review_cases SET state = $3, version = version + 1, updated_at = clock_timestamp(){closed}"
            f"{''.join(', ' + a for a in assignments)} "
            f"WHERE id = $1 AND tenant_id = $2 AND version = $4 RETURNING {CASE_COLUMNS}",
            case["id"],
            case["tenant_id"],
            target.value,
            case["version"],
            *(v.text if isinstance(v, _Json) else v for v in values.values()),
        )
        if moved is None:
            raise CaseConflict("the case changed meanwhile (another action came first): read it again")
        REVIEW_ACTIONS.labels(action.value).inc()  # counted before the commit: a failed one is rare and retried
        await append(
            conn,
            case_id=case["id"],
            tenant_id=case["tenant_id"],
            action=action,
            actor=actor,
            state=target,
            details=details,
        )
        return moved

    async def _publish(self, conn: asyncpg.Connection, case: asyncpg.Record, trace: dict[str, str]) -> None:
        """Write the reviewer's final decision as a decided event in the outbox (the relay publishes it)."""
        record = await conn.fetchrow(
            "SELECT d.reasons, d.policy_name, d.policy_version, d.policy_hash, a.submitted_at "
            "FROM loan_decisions d JOIN loan_applications a ON a.id = d.application_id "
            "WHERE d.application_id = $1 AND d.revision = $2 AND d.decided_by = 'policy'",
            case["application_id"],
            case["revision"],
        )
        if record is None:  # the case was opened with its decision: never without it
            raise CaseConflict("the case has no decision record")
        contributions = (json_value(record["reasons"]) or {}).get("contributions", [])
        codes = list(case["reason_codes"] or ())
        outcome: Literal["approved", "rejected"] = "approved" if case["outcome"] == "approve" else "rejected"
        principal = [] if outcome == "approved" else _principal_reasons(contributions, codes)
        event = ApplicationDecided(
            application_id=case["application_id"],
            tenant_id=case["tenant_id"],
            revision=case["revision"],
            submitted_at=record["submitted_at"],
            outcome=outcome,
            risk_score=case["risk_score"],
            contributions=contributions,
            principal_reasons=principal,
            policy=PolicyRef(name=record["policy_name"], version=record["policy_version"], hash=record["policy_hash"]),
            decided_at=datetime.now(UTC),
            decided_by="review",
            review=ReviewerDecision(
                case_id=case["id"], actor=case["decided_by"], approved_by=case["approved_by"], reason_codes=codes
            ),
        )
        await conn.execute(outbox.INSERT, *outbox.event_row(self.settings, Topic.DECIDED, event, trace))


def _decided(case: asyncpg.Record) -> None:
    REVIEW_TIME_TO_DECISION.observe(max(0.0, (datetime.now(UTC) - case["opened_at"]).total_seconds()))


def _principal_reasons(contributions: Sequence[Mapping[str, Any]], codes: Sequence[str]) -> list[dict[str, Any]]:
    """The reviewer's reasons in the form of the policy's: each with the points and value of its factor."""
    by_factor = {c["factor"]: c for c in contributions}
    reasons = []
    for code in codes:
        scored = by_factor.get(reason_factor(code) or "", {})
        reasons.append(
            {
                "rule_id": scored.get("rule_id", "review"),
                "factor": scored.get("factor", reason_factor(code)),
                "points": scored.get("points", 0),
                "reason_code": code,
                "value": scored.get("value", ""),
                "text": reason_text(code),
            }
        )
    return reasons


@dataclass(frozen=True, slots=True)
class _Json:
    """A value stored in a jsonb column."""

    value: Any

    @property
    def text(self) -> str:
        """The JSON text PostgreSQL is given."""
        return orjson.dumps(self.value).decode()
