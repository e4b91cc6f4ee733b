"""Request and response bodies of the review queue API (/api/v1/reviews), and the rendering of a case."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from fastloans.db import json_value
from fastloans.reviews import LIVE, CaseState
from fastloans_gateway.reviews import reason_options
from fastloans_gateway.schemas import LoanApplication, _timestamp, render_application

CaseStateName = Literal[
    "open", "claimed", "awaiting_approval", "waiting_for_information", "decided", "withdrawn", "superseded"
]
ReasonCode = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]*$", max_length=64)]
Item = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
VERSION_HELP = "The case's version as last read: the action is refused (409) if the case has changed since."


class VersionedRequest(BaseModel):
    """An action on a case, optionally checked against the version the caller last read."""

    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(None, ge=1, description=VERSION_HELP)


class ReturnRequest(VersionedRequest):
    """A supervisor sends an override back to the queue."""

    note: str | None = Field(None, max_length=2000, description="Why it is returned (kept in the case history).")


class ReviewDecisionRequest(VersionedRequest):
    """The reviewer's decision on a claimed case."""

    outcome: Literal["approve", "reject"]
    reason_codes: list[ReasonCode] = Field(
        default_factory=list,
        max_length=4,
        description="From the reason catalogue; 1 to 4 for a rejection, each of a factor the policy scored.",
    )
    note: str | None = Field(None, max_length=2000, description="Required for an override of the recommendation.")


class InformationRequest(VersionedRequest):
    """What the applicant is asked for; the deadline's clock stops until they answer with a new revision."""

    items: list[Item] = Field(min_length=1, max_length=10)


class ReviewDecision(BaseModel):
    """A reviewer's decision on the case (pending approval or final)."""

    outcome: Literal["approve", "reject"]
    reason_codes: list[str]
    note: str | None
    decided_by: str
    override: bool
    approved_by: str | None


class ReviewCase(BaseModel):
    """A review case as the queue shows it."""

    id: uuid.UUID
    application_id: uuid.UUID
    revision: int
    state: CaseStateName
    version: int
    recommendation: Literal["approve", "reject"] | None = Field(
        description="What the policy would decide without its refer rule; a decision otherwise is an override."
    )
    risk_score: int
    policy_version: str
    opened_at: datetime
    due_at: datetime = Field(description="The applicant must hear of the decision by then (Reg B).")
    escalate_at: datetime
    escalated: bool = Field(description="Unfinished past escalate_at.")
    seconds_left: int = Field(description="Until due_at (negative when past); frozen while waiting for information.")
    claimed_by: str | None
    claim_expires_at: datetime | None
    decision: ReviewDecision | None
    information_requested: list[str] | None


class HistoryEntry(BaseModel):
    """One action on the case, chained to the one before it by its hash."""

    seq: int
    action: str
    actor: str
    state: CaseStateName
    details: dict[str, Any]
    at: datetime
    previous_hash: str
    hash: str


class ReasonOption(BaseModel):
    """A catalogue reason code a decision on the case may give, with its applicant-facing text."""

    code: str
    text: str


class ReviewCaseDetail(ReviewCase):
    """A case with what the reviewer needs: the application, the policy's decision record, the packet, the history."""

    packet: dict[str, Any] = Field(
        description="The refer rule and band, the rules and points that put the application there, how far it is "
        "from an approval and a rejection, and the single actionable changes (to_approve, to_reject)."
    )
    application: LoanApplication | None
    decision_record: dict[str, Any] | None = Field(description="The policy's decision on the revision.")
    history: list[HistoryEntry]
    reason_options: list[ReasonOption] = Field(
        description="The catalogue's reason codes a decision may give: those of the factors the policy scored."
    )


class QueueCaller(BaseModel):
    """Who is reading the queue: the key's actor and scopes (what the web page offers them)."""

    actor: str | None
    scopes: list[str]


class ReviewQueuePage(BaseModel):
    """One page of the queue, earliest due first."""

    items: list[ReviewCase]
    next_cursor: str | None = None
    caller: QueueCaller


def render_case(row: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The API form (`ReviewCase`) of a `review_cases` row."""
    now = now or datetime.now(UTC)
    state = CaseState(row["state"])
    stopped = row["clock_stopped_at"] if state is CaseState.WAITING_FOR_INFORMATION else None
    unfinished = state in LIVE or state is CaseState.WAITING_FOR_INFORMATION
    decision = None
    if row["outcome"] is not None:
        decision = {
            "outcome": row["outcome"],
            "reason_codes": list(row["reason_codes"] or ()),
            "note": row["note"],
            "decided_by": row["decided_by"],
            "override": bool(row["override"]),
            "approved_by": row["approved_by"],
        }
    expires = row["claim_expires_at"]
    return {
        "id": str(row["id"]),
        "application_id": str(row["application_id"]),
        "revision": row["revision"],
        "state": state.value,
        "version": row["version"],
        "recommendation": row["recommendation"],
        "risk_score": row["risk_score"],
        "policy_version": row["policy_version"],
        "opened_at": _timestamp(row["opened_at"]),
        "due_at": _timestamp(row["due_at"]),
        "escalate_at": _timestamp(row["escalate_at"]),
        "escalated": unfinished and now >= row["escalate_at"],
        "seconds_left": int((row["due_at"] - (stopped or now)).total_seconds()),
        "claimed_by": row["claimed_by"] if state is CaseState.CLAIMED else None,
        "claim_expires_at": None if expires is None or state is not CaseState.CLAIMED else _timestamp(expires),
        "decision": decision,
        "information_requested": json_value(row["information_requested"]),
    }


def render_detail(
    case: Mapping[str, Any],
    application: Mapping[str, Any] | None,
    decision: Mapping[str, Any] | None,
    history: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The API form (`ReviewCaseDetail`) of a case with its application, decision record and history."""
    record = None
    if decision is not None:
        reasons = json_value(decision["reasons"]) or {}
        record = {
            "outcome": decision["outcome"],
            "risk_score": decision["risk_score"],
            "reasons": reasons.get("contributions", []),
            "principal_reasons": reasons.get("principal_reasons", []),
            "policy": {
                "name": decision["policy_name"],
                "version": decision["policy_version"],
                "hash": decision["policy_hash"],
            },
            "counteroffer": json_value(decision["counteroffer"]),
            "what_would_change": json_value(decision["what_would_change"]),
            "decided_at": _timestamp(decision["decided_at"]),
        }
    return {
        **render_case(case),
        "packet": json_value(case["packet"]),
        "application": None if application is None else render_application(application),
        "decision_record": record,
        "history": [
            {
                "seq": entry["seq"],
                "action": entry["action"],
                "actor": entry["actor"],
                "state": entry["state"],
                "details": json_value(entry["details"]),
                "at": _timestamp(entry["at"]),
                "previous_hash": entry["previous_hash"],
                "hash": entry["hash"],
            }
            for entry in history
        ],
        "reason_options": [{"code": code, "text": text} for code, text in reason_options(json_value(case["packet"]))],
    }
