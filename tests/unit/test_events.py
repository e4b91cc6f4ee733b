"""Event schemas: JSON round trip, versioning, and clear errors for foreign messages."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from fastloans.events import ApplicationDecided, ApplicationScored, ApplicationSubmitted, EventDecodeError, Facts

FACTS = Facts(
    credit_score=640,
    loan_amount=Decimal("12000.50"),
    monthly_income=Decimal("4000.00"),
    monthly_debt=Decimal("1720.00"),
    employment_status="employed",
    loan_purpose="auto",
)


def submitted() -> ApplicationSubmitted:
    return ApplicationSubmitted(
        application_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        revision=2,
        submitted_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        facts=FACTS,
    )


def test_round_trip_keeps_money_exact() -> None:
    event = submitted()
    raw = event.encode()
    body = orjson.loads(raw)
    assert body["type"] == "ApplicationSubmitted" and body["version"] == 1
    assert body["facts"]["loan_amount"] == "12000.50"  # money travels as a decimal string
    assert "applicant_name" not in raw.decode()
    assert ApplicationSubmitted.decode(raw) == event
    assert dict(event.headers()) == {"event-type": b"ApplicationSubmitted", "schema-version": b"1"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "empty message"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"type": "Other", "version": 1}', "expected event type 'ApplicationSubmitted'"),
        (b'{"type": "ApplicationSubmitted", "version": 9}', "unsupported ApplicationSubmitted schema version 9"),
        (b'{"type": "ApplicationSubmitted", "version": 1, "revision": 1}', "invalid ApplicationSubmitted"),
    ],
)
def test_foreign_messages_are_rejected_clearly(raw: bytes | None, message: str) -> None:
    with pytest.raises(EventDecodeError, match=message):
        ApplicationSubmitted.decode(raw)


def test_a_scored_event_is_not_a_decision() -> None:
    event = submitted()
    scored = ApplicationScored(
        **event.model_dump(exclude={"event_id"}),
        risk_score=10,
        contributions=[],
        policy={"name": "seed", "version": "seed-1", "hash": "abc"},
        scored_at=datetime.now(UTC),
    )
    with pytest.raises(EventDecodeError):
        ApplicationDecided.decode(scored.encode())
