"""Messages the pipeline can only dead-letter, shared by the poison tests and the chaos run's poison source."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from fastloans.events import ApplicationDecided, ApplicationScored, ApplicationSubmitted, Facts, PolicyRef
from fastloans.kafka import message_size

FACTS = {
    "credit_score": 750,
    "loan_amount": "2000.00",
    "monthly_income": "5000.00",
    "monthly_debt": "1000.00",
    "employment_status": "employed",
    "loan_purpose": "home_improvement",
}
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
# The policy of the latest decision: a scored event under it is one the approval service accepts.
LATEST_POLICY_SQL = (
    "SELECT policy_name AS name, policy_version AS version, policy_hash AS hash "
    "FROM loan_decisions ORDER BY decided_at DESC LIMIT 1"
)
Headers = list[tuple[str, bytes]]


def event_ids(application_id: uuid.UUID | None = None) -> dict[str, Any]:
    """The identifying fields of an event for an application no one submitted."""
    return {
        "application_id": application_id or uuid.uuid4(),
        "tenant_id": uuid.uuid4(),
        "revision": 1,
        "submitted_at": datetime.now(UTC),
    }


def near_limit(build: Callable[[int], bytes], limit: int, headers: Headers) -> bytes:
    """The largest value `build(padding)` that still fits one message of `limit` bytes (keyed by a UUID)."""
    key = b"k" * 36
    value = build(limit - 100 - message_size(key, build(0), headers))
    assert limit - 200 < message_size(key, value, headers) <= limit
    return value


def submission_near_limit(ids: Mapping[str, Any], limit: int, headers: Headers) -> bytes:
    """A submitted event that fits, written with a huge amount: the scored event that repeats it cannot."""

    def build(zeros: int) -> bytes:
        return ApplicationSubmitted(**ids, facts=Facts(**{**FACTS, "monthly_debt": "1000." + "0" * zeros})).encode()

    return near_limit(build, limit, headers)


def scored_with_huge_reason(ids: Mapping[str, Any], policy: Mapping[str, Any]) -> ApplicationScored:
    """A scored event with one huge reason: the decision repeats it and comes out larger than the broker takes."""
    reason = {
        "rule_id": "credit_score",
        "factor": "credit_score",
        "points": 30,
        "reason_code": "CREDIT_SCORE_LOW",
        "value": "v" * 600_000,
    }
    return ApplicationScored(
        **ids,
        facts=Facts(**FACTS),
        risk_score=100,
        contributions=[reason],
        policy=PolicyRef(**dict(policy)),
        scored_at=datetime.now(UTC),
    )


def decision_near_limit(ids: Mapping[str, Any], limit: int, headers: Headers) -> bytes:
    """A decision event padded to just within `limit` bytes with these headers."""

    def build(padding: int) -> bytes:
        return ApplicationDecided(
            **ids,
            outcome="approved",
            risk_score=0,
            contributions=[],
            principal_reasons=[],
            policy=PolicyRef(name="p", version="1", hash="h"),
            decided_at=datetime.now(UTC),
            challenger={"padding": "x" * padding},
        ).encode()

    return near_limit(build, limit, headers)
