"""The approval service's decided event for a referral: the recommendation, the deadlines and the packet."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest

from fastloans.events import ApplicationDecided, ApplicationScored, EventDecodeError, Facts
from fastloans.policy import load_default_policy, load_policy, score
from fastloans.policy.loader import shipped_policy_path
from fastloans.policy_runtime import facts_of, policy_ref
from fastloans_approval.service import decided_event

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
BORDERLINE = Facts(
    credit_score=650,
    loan_amount="2000.00",
    monthly_income="5000.00",
    monthly_debt="1500.00",
    employment_status="self-employed",
    loan_purpose="business",
)


def scored(policy_path: str | None, facts: Facts = BORDERLINE) -> tuple[ApplicationScored, object]:
    policy = load_policy(policy_path) if policy_path else load_default_policy()
    result = score(policy, facts_of(facts))
    event = ApplicationScored(
        application_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        revision=1,
        submitted_at=NOW,
        facts=facts,
        risk_score=result.risk_score,
        contributions=[c.to_dict() for c in result.contributions],
        policy=policy_ref(policy),
        scored_at=NOW,
    )
    return event, policy


def test_a_referred_decision_carries_what_the_review_case_needs() -> None:
    event, policy = scored(shipped_policy_path())
    decided = decided_event(policy, event, NOW)  # type: ignore[arg-type]
    assert decided.outcome == "referred" and decided.decided_by == "policy"
    assert decided.referral is not None
    assert decided.referral.recommendation == "reject"
    assert (decided.referral.deadline_days, decided.referral.escalation_days) == (30, 20)
    assert sorted(decided.referral.second_person_for) == ["approve", "reject"]
    assert decided.referral.packet["refer_rule"] == "refer-borderline"
    again = ApplicationDecided.decode(decided.encode())
    assert again == decided


def test_other_decisions_carry_no_referral() -> None:
    event, policy = scored(None)  # the seed rejects the same application
    decided = decided_event(policy, event, NOW)  # type: ignore[arg-type]
    assert decided.outcome == "rejected" and decided.referral is None and decided.review is None


def test_a_referral_with_an_unknown_field_is_refused() -> None:
    event, policy = scored(shipped_policy_path())
    body = orjson.loads(decided_event(policy, event, NOW).encode())  # type: ignore[arg-type]
    body["referral"]["extra"] = 1
    with pytest.raises(EventDecodeError, match=r"referral\.extra"):
        ApplicationDecided.decode(orjson.dumps(body))
