"""The seed policy against the original rules; scores, decisions and reasons."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fastloans.policy import (
    EMPLOYMENT_STATUSES,
    LOAN_PURPOSES,
    ApplicationFacts,
    decide,
    evaluate,
    load_default_policy,
    reason_catalogue,
    score,
)

pytestmark = pytest.mark.unit


def original_rules(facts: ApplicationFacts) -> tuple[int, str]:
    """The seed rules of DESIGN.md, transcribed by hand with exact fractions."""
    risk = 0
    if facts.credit_score < 600:
        risk += 30
    elif facts.credit_score < 700:
        risk += 20
    elif facts.credit_score < 800:
        risk += 10
    debt_to_income = Fraction(facts.monthly_debt) / Fraction(facts.monthly_income)
    if debt_to_income > Fraction("0.43"):
        risk += 30
    elif debt_to_income > Fraction("0.36"):
        risk += 20
    elif debt_to_income > Fraction("0.28"):
        risk += 10
    risk += {"unemployed": 20, "self-employed": 10}.get(facts.employment_status, 0)
    risk += {"business": 10, "education": 5, "debt_consolidation": 15}.get(facts.loan_purpose, 0)
    loan_to_income = Fraction(facts.loan_amount) / Fraction(facts.monthly_income)
    if loan_to_income > Fraction("0.5"):
        risk += 20
    elif loan_to_income > Fraction("0.3"):
        risk += 10
    approved = risk < 30 or (risk < 60 and facts.loan_purpose != "debt_consolidation")
    return risk, "approved" if approved else "rejected"


def money(low: str = "0.00", high: str = "1000000.00") -> st.SearchStrategy[Decimal]:
    """Decimal amounts with two places."""
    return st.decimals(min_value=Decimal(low), max_value=Decimal(high), places=2)


@st.composite
def facts_strategy(draw: st.DrawFn) -> ApplicationFacts:
    """Applications over wide ranges, often placed exactly on (or a cent off) a ratio boundary."""
    income = draw(st.one_of(money("0.01", "500000.00"), st.integers(1, 100000).map(Decimal)))

    def amount(boundaries: list[str]) -> Decimal:
        exact = st.sampled_from(boundaries).map(lambda ratio: Decimal(ratio) * income)
        nudged = st.tuples(exact, st.sampled_from(["-0.01", "0", "0.01"])).map(
            lambda pair: max(Decimal(0), pair[0] + Decimal(pair[1]))
        )
        # Only amounts with two decimal places are money; the exact ones are when income is whole.
        return draw(st.one_of(money(), nudged.filter(lambda value: value == value.quantize(Decimal("0.01")))))

    return ApplicationFacts(
        credit_score=draw(
            st.one_of(st.integers(300, 850), st.integers(-1000, 5000), st.sampled_from([599, 600, 699, 700, 799, 800]))
        ),
        loan_amount=amount(["0.3", "0.5"]),
        monthly_income=income,
        monthly_debt=amount(["0.28", "0.36", "0.43"]),
        employment_status=draw(st.sampled_from(EMPLOYMENT_STATUSES)),
        loan_purpose=draw(st.sampled_from(LOAN_PURPOSES)),
    )


def make(credit: int, income: str, debt: str, loan: str, employment: str, purpose: str) -> ApplicationFacts:
    return ApplicationFacts(credit, Decimal(loan), Decimal(income), Decimal(debt), employment, purpose)


@settings(max_examples=600, deadline=None)
@given(facts_strategy())
@example(make(800, "100", "43", "50", "employed", "auto"))
@example(make(799, "100", "43.01", "50.01", "unemployed", "debt_consolidation"))
@example(make(600, "100", "28", "30", "self-employed", "education"))
def test_seed_policy_equals_the_original_rules(facts: ApplicationFacts) -> None:
    assessment = evaluate(load_default_policy(), facts)
    assert (assessment.risk_score, assessment.outcome) == original_rules(facts)


@pytest.mark.parametrize(
    ("facts", "risk", "outcome", "codes"),
    [
        # The original project's example: 10 (credit) + 0 + 0 + 0 + 10 (loan 0.4 of income).
        (
            make(750, "5000", "1000", "2000", "employed", "home_improvement"),
            20,
            "approved",
            ["CREDIT_SCORE_BELOW_PRIME", "LOAN_TO_INCOME_HIGH"],
        ),
        # 30 + 30 (debt 0.5) + 20 + 15 + 20 (loan 0.667): rejected.
        (
            make(580, "3000", "1500", "2000", "unemployed", "debt_consolidation"),
            115,
            "rejected",
            [
                "CREDIT_SCORE_VERY_LOW",
                "DEBT_TO_INCOME_EXCESSIVE",
                "EMPLOYMENT_NONE",
                "PURPOSE_DEBT_CONSOLIDATION",
                "LOAN_TO_INCOME_EXCESSIVE",
            ],
        ),
        # 20 + 15: under 60 but debt consolidation, so rejected.
        (
            make(650, "4000", "1000", "1000", "employed", "debt_consolidation"),
            35,
            "rejected",
            ["CREDIT_SCORE_LOW", "PURPOSE_DEBT_CONSOLIDATION"],
        ),
        # 20 + 10 (debt 0.3) + 10 + 10 = 50: approved, not debt consolidation.
        (
            make(650, "4000", "1200", "1000", "self-employed", "business"),
            50,
            "approved",
            ["CREDIT_SCORE_LOW", "DEBT_TO_INCOME_ELEVATED", "EMPLOYMENT_SELF_EMPLOYED", "PURPOSE_BUSINESS"],
        ),
        # Boundaries: debt exactly 0.43 of income is +20 (not > 0.43), loan exactly 0.5 is +10.
        (
            make(820, "10000", "4300", "5000", "employed", "auto"),
            30,
            "approved",
            ["DEBT_TO_INCOME_HIGH", "LOAN_TO_INCOME_HIGH"],
        ),
        # Exactly 60 is not below 60: rejected.
        (
            make(650, "2000", "1000", "100", "self-employed", "personal"),
            60,
            "rejected",
            ["CREDIT_SCORE_LOW", "DEBT_TO_INCOME_EXCESSIVE", "EMPLOYMENT_SELF_EMPLOYED"],
        ),
        # Nothing adds points.
        (make(800, "9000", "0", "0", "retired", "medical"), 0, "approved", []),
    ],
)
def test_worked_examples(facts: ApplicationFacts, risk: int, outcome: str, codes: list[str]) -> None:
    assessment = evaluate(load_default_policy(), facts)
    assert assessment.risk_score == risk
    assert assessment.outcome == outcome
    assert [item.reason_code for item in assessment.score.contributions] == codes


def test_contributions_carry_the_applicants_values() -> None:
    result = score(load_default_policy(), make(580, "3000", "1350", "2000", "unemployed", "education"))
    values = {item.factor: item.value for item in result.contributions}
    assert values == {
        "credit_score": "580",
        "debt_to_income": "0.4500",
        "employment_status": "unemployed",
        "loan_purpose": "education",
        "loan_to_income": "0.6667",
    }


def test_principal_reasons_are_at_most_four_ranked_by_points_then_scorecard_order() -> None:
    facts = make(580, "3000", "1500", "2000", "unemployed", "debt_consolidation")
    reasons = evaluate(load_default_policy(), facts).decision.principal_reasons
    # 30 credit, 30 debt (scorecard order), then 20 employment before 20 loan-to-income; 15 purpose dropped.
    assert [(item.reason_code, item.points) for item in reasons] == [
        ("CREDIT_SCORE_VERY_LOW", 30),
        ("DEBT_TO_INCOME_EXCESSIVE", 30),
        ("EMPLOYMENT_NONE", 20),
        ("LOAN_TO_INCOME_EXCESSIVE", 20),
    ]


def test_approvals_have_no_principal_reasons() -> None:
    facts = make(750, "5000", "1000", "2000", "employed", "home_improvement")
    assert evaluate(load_default_policy(), facts).decision.principal_reasons == ()


def test_every_seed_reason_code_has_a_plain_language_text() -> None:
    policy = load_default_policy()
    codes = {
        award.reason_code
        for rule in policy.scorecard
        for award in (
            [band.award for band in rule.bands]
            if hasattr(rule, "bands")
            else [*rule.categories.values(), *([rule.otherwise] if rule.otherwise else [])]
        )
        if award.reason_code
    }
    catalogue = reason_catalogue()
    assert codes <= set(catalogue)
    for code in codes:
        text = catalogue[code]
        assert len(text) > 20 and text[0].isupper() and "score too low" not in text.lower()


@settings(max_examples=200, deadline=None)
@given(facts_strategy())
def test_every_contribution_has_a_catalogue_text_and_reasons_are_ranked(facts: ApplicationFacts) -> None:
    assessment = evaluate(load_default_policy(), facts)
    for item in assessment.score.contributions:
        assert item.text == reason_catalogue()[item.reason_code]
    reasons = assessment.decision.principal_reasons
    assert len(reasons) <= 4
    assert [item.points for item in reasons] == sorted((item.points for item in reasons), reverse=True)
    if assessment.outcome == "rejected":
        assert reasons, "a rejection always names its reasons"


def test_decide_with_only_score_and_facts_matches_evaluate() -> None:
    policy = load_default_policy()
    facts = make(650, "4000", "1000", "1000", "employed", "debt_consolidation")
    decision = decide(policy, facts, 35)
    assert decision.outcome == "rejected"
    assert decision.rule_id == "reject-otherwise"
    assert decision == evaluate(policy, facts).decision
    assert decide(policy, facts, 29).outcome == "approved"


def test_results_are_json_serialisable_with_decimals_as_strings() -> None:
    assessment = evaluate(load_default_policy(), make(580, "3000", "1500", "2000", "unemployed", "business"))
    data = json.loads(json.dumps(assessment.to_dict()))
    assert data["policy"]["version"] == "seed-1"
    assert data["outcome"] == "rejected"
    assert data["contributions"][1]["value"] == "0.5000"
    assert data["principal_reasons"][0]["text"]


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"monthly_income": Decimal("0")}, ValueError),
        ({"monthly_debt": Decimal("-1")}, ValueError),
        ({"loan_amount": 100.5}, TypeError),
        ({"employment_status": "Employed"}, ValueError),
        ({"loan_purpose": "holiday"}, ValueError),
        ({"credit_score": "700"}, TypeError),
    ],
)
def test_facts_reject_bad_values(changes: dict[str, object], error: type[Exception]) -> None:
    values: dict[str, object] = {
        "credit_score": 700,
        "loan_amount": Decimal("100"),
        "monthly_income": Decimal("1000"),
        "monthly_debt": Decimal("0"),
        "employment_status": "employed",
        "loan_purpose": "auto",
    } | changes
    with pytest.raises(error):
        ApplicationFacts(**values)  # type: ignore[arg-type]


def test_facts_from_mapping_accepts_money_as_strings() -> None:
    facts = ApplicationFacts.from_mapping(
        {
            "credit_score": 700,
            "loan_amount": "100.50",
            "monthly_income": "1000",
            "monthly_debt": 0,
            "employment_status": "employed",
            "loan_purpose": "auto",
        }
    )
    assert facts.loan_amount == Decimal("100.50")
    assert facts.to_dict()["loan_amount"] == "100.50"


@pytest.mark.parametrize(
    "changes",
    [{"loan_amount": "lots"}, {"monthly_income": "NaN"}, {"credit_score": 7.5}, {"loan_purpose": None}, {}],
)
def test_facts_from_a_bad_mapping_raise_value_or_type_errors(changes: dict[str, object]) -> None:
    data: dict[str, object] = {
        "credit_score": 700,
        "loan_amount": "100",
        "monthly_income": "1000",
        "monthly_debt": "0",
        "employment_status": "employed",
        "loan_purpose": "auto",
    } | changes
    if not changes:
        del data["monthly_debt"]
    with pytest.raises((ValueError, TypeError)):
        ApplicationFacts.from_mapping(data)
