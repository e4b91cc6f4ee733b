"""The shipped review policy (`seed-with-review`) and the `review` settings of a policy file."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from fastloans.policy import ApplicationFacts, check_policy_text, evaluate, load_default_policy, load_policy
from fastloans.policy.loader import shipped_policy_path
from fastloans.policy.model import ReviewSettings
from fastloans.reviews import recommendation

pytestmark = pytest.mark.unit

REVIEW_POLICY = shipped_policy_path()
SEED_HASH = "46dfe1d56aa9d1cb76278fa773aa03c0fc3650d6e898a39f4cc0bbdce33bec04"


def _text() -> str:
    with open(REVIEW_POLICY, encoding="utf-8") as handle:
        return handle.read()


def facts(**changes: object) -> ApplicationFacts:
    base: dict[str, object] = {
        "credit_score": 650,
        "loan_amount": Decimal("2000.00"),
        "monthly_income": Decimal("5000.00"),
        "monthly_debt": Decimal("1500.00"),
        "employment_status": "self-employed",
        "loan_purpose": "business",
    }
    base.update(changes)
    return ApplicationFacts(**base)  # type: ignore[arg-type]


def test_the_default_policy_is_the_seed_unchanged() -> None:
    seed = load_default_policy()
    assert seed.review is None and "review" not in seed.to_dict()
    assert seed.content_hash == SEED_HASH
    assert seed.review_settings == ReviewSettings(30, 20, ("approve", "reject"))


def test_the_review_policy_is_the_seed_with_a_refer_band_and_its_settings() -> None:
    policy, seed = load_policy(REVIEW_POLICY), load_default_policy()
    assert check_policy_text(_text(), REVIEW_POLICY) == []
    assert policy.scorecard == seed.scorecard
    assert [rule.id for rule in policy.decision] == [
        "approve-low-risk",
        "approve-moderate-risk",
        "refer-borderline",
        "reject-otherwise",
    ]
    assert policy.review == ReviewSettings(30, 20, ("approve", "reject"))
    assert policy.to_dict()["review"]["deadline_days"] == 30


@pytest.mark.parametrize(
    ("changes", "seed_outcome", "outcome"),
    [
        ({}, "rejected", "referred"),  # 20 + 20 (DTI 0.30) + 10 + 10 + 0 = 60 < 70
        ({"credit_score": 750}, "approved", "approved"),  # 50: approved by both
        ({"credit_score": 550}, "rejected", "rejected"),  # 70: past the band
    ],
)
def test_only_the_borderline_band_is_decided_differently(
    changes: dict[str, object], seed_outcome: str, outcome: str
) -> None:
    application = facts(**changes)
    assert evaluate(load_default_policy(), application).outcome == seed_outcome
    assessment = evaluate(load_policy(REVIEW_POLICY), application)
    assert assessment.outcome == outcome
    if outcome == "referred":
        assert recommendation(load_policy(REVIEW_POLICY), assessment.risk_score, "business", "self-employed") == (
            "reject"
        )


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("review: {deadline_days: 31}", "review.deadline_days: 31 is greater than the maximum of 30"),
        ("review: {deadline_days: 20, escalation_days: 20}", "must be less than review.deadline_days"),
        ("review: {second_person_for: [refer]}", "review.second_person_for[0]"),
        ("review: {deadline: 30}", "Additional properties are not allowed"),
    ],
)
def test_bad_review_settings_are_refused_with_their_line(section: str, message: str) -> None:
    text = _text()
    start, end = text.index("review:\n"), text.index("scorecard:")
    errors = check_policy_text(text[:start] + section + "\n\n" + text[end:], "candidate.yaml")
    assert errors and message in str(errors[0]), errors
    assert errors[0].line == text[:start].count("\n") + 1


def test_review_settings_without_a_refer_rule_are_refused() -> None:
    seed = load_default_policy()
    text = _text().replace(
        "  - id: refer-borderline\n    outcome: refer\n",
        "  - id: reject-borderline\n    outcome: reject\n",
    )
    errors = check_policy_text(text, "candidate.yaml")
    assert [e.message for e in errors] == ["the policy has review settings but no decision rule refers"]
    assert replace(seed).review is None
