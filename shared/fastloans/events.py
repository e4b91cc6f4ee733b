"""Topic names and the versioned event schemas of the pipeline, in one place.

Events travel as JSON. Every message carries the headers `event-type` and
`schema-version`; the body repeats them so a stored message is self-describing.
Applicant names never travel over Kafka: the events carry only what scoring
and deciding need.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

DecimalStr = Annotated[Decimal, PlainSerializer(lambda d: str(d), return_type=str, when_used="json")]


class Topic(enum.StrEnum):
    """The pipeline's topics; the key of every message is the application id."""

    SUBMITTED = "loan-applications.submitted"
    SCORED = "loan-applications.scored"
    DECIDED = "loan-applications.decided"
    DLQ = "loan-applications.dlq"


class EventDecodeError(ValueError):
    """A message that is not a valid event of the expected type."""


class Event(BaseModel):
    """Base of every event: an id, the application and revision it is about, a type and a version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    application_id: uuid.UUID
    tenant_id: uuid.UUID
    revision: int = Field(ge=1)
    submitted_at: datetime

    def encode(self) -> bytes:
        """The JSON body of this event."""
        body = self.model_dump(mode="json")
        body["type"] = self.event_type
        body["version"] = self.schema_version
        return orjson.dumps(body)

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers naming the event type and schema version."""
        return [("event-type", self.event_type.encode()), ("schema-version", str(self.schema_version).encode())]

    @classmethod
    def decode(cls, raw: bytes | None) -> Any:
        """Parse and validate a message body as this event type."""
        if raw is None:
            raise EventDecodeError("empty message")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise EventDecodeError(f"not JSON: {error}") from None
        if not isinstance(body, dict):
            raise EventDecodeError("not a JSON object")
        kind, version = body.pop("type", None), body.pop("version", None)
        if kind != cls.event_type:
            raise EventDecodeError(f"expected event type {cls.event_type!r}, got {kind!r}")
        if version != cls.schema_version:
            raise EventDecodeError(f"unsupported {kind} schema version {version!r}")
        try:
            return cls.model_validate(body)
        except ValueError as error:
            raise EventDecodeError(f"invalid {kind}: {_first_error(error)}") from None


def _first_error(error: ValueError) -> str:
    errors = getattr(error, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(p) for p in first.get('loc', ()))}: {first.get('msg')}"
    return str(error)


class Facts(BaseModel):
    """The applicant data scoring needs (no name)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    credit_score: int
    loan_amount: DecimalStr
    monthly_income: DecimalStr = Field(gt=0)
    monthly_debt: DecimalStr = Field(ge=0)
    employment_status: str
    loan_purpose: str


class PolicyRef(BaseModel):
    """Which policy made a score or a decision."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    hash: str


class ApplicationSubmitted(Event):
    """An application (or a new revision of it) waiting for a decision."""

    event_type: ClassVar[str] = "ApplicationSubmitted"
    facts: Facts


class ApplicationScored(Event):
    """The risk score with every rule that added points."""

    event_type: ClassVar[str] = "ApplicationScored"
    facts: Facts
    risk_score: int
    contributions: list[dict[str, Any]]
    policy: PolicyRef
    scored_at: datetime
    challenger: dict[str, Any] | None = None


class Referral(BaseModel):
    """What the review queue needs of a referred decision: the recommendation, the deadlines, the packet."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The outcome of the first decision rule after the refer rule that holds (fastloans.reviews.recommendation).
    recommendation: Literal["approve", "reject"] | None
    deadline_days: int = Field(ge=1)
    escalation_days: int = Field(ge=1)
    # The reviewer outcomes that need a second person when they override the recommendation.
    second_person_for: list[Literal["approve", "reject"]]
    # fastloans.reviews.refer_packet: the refer rule, the rules and points that put it there, the single changes.
    packet: dict[str, Any]


class ReviewerDecision(BaseModel):
    """Who made a reviewer's decision on a review case, and why (reason codes only: notes stay in the case)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    case_id: uuid.UUID
    actor: str
    approved_by: str | None = None
    reason_codes: list[str]


class ApplicationDecided(Event):
    """The decision for one revision, with its reasons: the policy's, or a reviewer's on a referred revision."""

    event_type: ClassVar[str] = "ApplicationDecided"
    outcome: Literal["approved", "rejected", "referred"]
    risk_score: int
    contributions: list[dict[str, Any]]
    principal_reasons: list[dict[str, Any]]
    policy: PolicyRef
    decided_at: datetime
    challenger: dict[str, Any] | None = None
    # Adverse decisions only (fastloans.policy.counteroffer): {loan_amount, risk_score, outcome, binding_rule}
    # or None when no amount is approved; the smallest actionable changes that approve ([] when none).
    counteroffer: dict[str, Any] | None = None
    what_would_change: list[dict[str, Any]] | None = None
    # "review": a reviewer decided a referred revision (then `review` says who and why, and the score, the
    # contributions and the policy are the referral's).
    decided_by: Literal["policy", "review"] = "policy"
    # Referred decisions only: what the recorder opens the review case with.
    referral: Referral | None = None
    review: ReviewerDecision | None = None


EVENT_TYPES: dict[str, type[Event]] = {
    cls.event_type: cls for cls in (ApplicationSubmitted, ApplicationScored, ApplicationDecided)
}
