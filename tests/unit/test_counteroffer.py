"""Counteroffers and "what would change": exact, checked against brute-force scans on random policies."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fastloans.policy import (
    EMPLOYMENT_STATUSES,
    LOAN_PURPOSES,
    ApplicationFacts,
    Policy,
    alternatives,
    counteroffer,
    evaluate,
    load_default_policy,
    parse_policy,
    seed_policy_text,
    what_would_change,
)
from fastloans.policy.facts import ACTIONABLE_FACTS
from fastloans.policy.loader import PolicyValidationError
from fastloans.policy.model import Band, BandRule, Interval, Points

pytestmark = pytest.mark.unit

SEED = load_default_policy()
CENT = Decimal("0.01")
RATIO_CODES = {"loan_to_income": "LOAN_TO_INCOME_HIGH", "debt_to_income": "DEBT_TO_INCOME_HIGH"}


def make(credit: int, income: str, debt: str, loan: str, employment: str, purpose: str) -> ApplicationFacts:
    return ApplicationFacts(credit, Decimal(loan), Decimal(income), Decimal(debt), employment, purpose)


def approved(policy: Policy, facts: ApplicationFacts, **changes: Decimal) -> bool:
    return evaluate(policy, replace(facts, **changes)).outcome == "approved"


@st.composite
def ratio_rule(draw: st.DrawFn, factor: str) -> BandRule:
    """Bands over the whole line at random cut points (3 places), any closedness, any points (not monotone)."""
    cuts = sorted(draw(st.sets(st.decimals("0.001", "2.000", places=3), min_size=1, max_size=4)))
    bands: list[Band] = []
    lower: Decimal | None = None
    lower_closed = False
    for cut in [*cuts, None]:
        upper_closed = cut is not None and draw(st.booleans())
        points = draw(st.sampled_from([0, 0, 5, 10, 20, 40]))
        award = Points(points, RATIO_CODES[factor] if points else None)
        bands.append(Band(Interval(lower, lower_closed, cut, upper_closed), award))
        lower, lower_closed = cut, not upper_closed
    return BandRule(factor.replace("_", "-"), factor, tuple(bands))


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    """The seed's credit, employment and purpose rules and decisions, with random ratio bands and step."""
    fixed = tuple(rule for rule in SEED.scorecard if rule.factor not in RATIO_CODES)
    scorecard = (*fixed, draw(ratio_rule("debt_to_income")), draw(ratio_rule("loan_to_income")))
    if draw(st.booleans()):
        # Two rules on each ratio: the edges of both count, and either can be the binding one.
        more = [replace(draw(ratio_rule(factor)), id=f"{factor}-2") for factor in RATIO_CODES]
        scorecard = (*scorecard, *more)
    step = draw(st.sampled_from([Decimal("100.00"), Decimal("25.00"), Decimal("1.00"), Decimal("0.01")]))
    return replace(SEED, version="random", scorecard=scorecard, rounding_step=step)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Policy, ApplicationFacts]:
    """A policy and an adverse application whose request is at most 200 steps, so a full scan is cheap."""
    policy = draw(policies())
    step = policy.rounding_step
    requested = step * draw(st.integers(0, 200)) + draw(st.decimals("0", "0.99", places=2))
    # Incomes that put the band edges (ratios up to 2) among the amounts asked for.
    income = draw(st.decimals("0.01", "100000", places=2).filter(lambda value: value * 3 >= requested / 2))
    facts = ApplicationFacts(
        credit_score=draw(st.sampled_from([550, 650, 750, 820])),
        loan_amount=max(requested, CENT),
        monthly_income=income,
        monthly_debt=draw(st.decimals("0", "3", places=2)) * income // CENT * CENT,
        employment_status=draw(st.sampled_from(EMPLOYMENT_STATUSES)),
        loan_purpose=draw(st.sampled_from(LOAN_PURPOSES)),
    )
    return policy, facts


def scan_amounts(policy: Policy, facts: ApplicationFacts) -> Decimal | None:
    """The brute force: every multiple of the step up to the request, from the top."""
    step = policy.rounding_step
    for k in range(int(facts.loan_amount // step), 0, -1):
        if approved(policy, facts, loan_amount=k * step):
            return k * step
    return None


@settings(max_examples=100, deadline=None)
@given(cases())
@example((SEED, make(720, "3333.33", "1200.00", "5000.00", "self-employed", "business")))
@example((replace(SEED, rounding_step=CENT), make(720, "3333.33", "1200.00", "1002.00", "self-employed", "business")))
def test_the_counteroffer_is_the_largest_approved_amount_on_the_step(case: tuple[Policy, ApplicationFacts]) -> None:
    policy, facts = case
    assessment = evaluate(policy, facts)
    if assessment.outcome == "approved":
        assert counteroffer(policy, facts) is None
        assert alternatives(policy, facts, assessment.decision) == (None, None)
        return
    offer = counteroffer(policy, facts)
    assert (None if offer is None else offer.loan_amount) == scan_amounts(policy, facts)
    if offer is None:
        return
    step = policy.rounding_step
    assert offer.loan_amount % step == 0 and step <= offer.loan_amount <= facts.loan_amount
    at_offer = evaluate(policy, replace(facts, loan_amount=offer.loan_amount))
    assert at_offer.outcome == "approved" and at_offer.risk_score == offer.risk_score
    above = offer.loan_amount + step
    if above <= facts.loan_amount:
        assert not approved(policy, facts, loan_amount=above)
    # The binding rule is the one whose points change on the way up to the refused amount.
    refused = evaluate(policy, replace(facts, loan_amount=min(above, facts.loan_amount)))
    points = {c.rule_id: c.points for c in at_offer.score.contributions}
    points_refused = {c.rule_id: c.points for c in refused.score.contributions}
    assert points.get(offer.binding_rule, 0) != points_refused.get(offer.binding_rule, 0)
    assert offer.to_dict() == {
        "loan_amount": str(offer.loan_amount.quantize(CENT)),
        "risk_score": offer.risk_score,
        "outcome": "approved",
        "binding_rule": offer.binding_rule,
    }


@settings(max_examples=80, deadline=None)
@given(cases())
def test_what_would_change_approves_and_is_the_smallest_change(case: tuple[Policy, ApplicationFacts]) -> None:
    policy, facts = case
    assessment = evaluate(policy, facts)
    changes = what_would_change(policy, facts)
    if assessment.outcome == "approved":
        assert changes == []
        return
    assert {change.fact for change in changes} <= set(ACTIONABLE_FACTS)
    by_fact = {change.fact: change for change in changes}
    offer = counteroffer(policy, facts)
    assert (None if offer is None else offer.loan_amount) == (
        by_fact["loan_amount"].suggested if "loan_amount" in by_fact else None
    )
    for change in changes:
        assert change.current == getattr(facts, change.fact) and change.suggested < change.current
        assert evaluate(policy, replace(facts, **{change.fact: change.suggested})).risk_score == change.risk_score
        assert approved(policy, facts, **{change.fact: change.suggested})
    # Debt: no value between the suggestion and the current debt (to the cent) approves; none at all if none.
    debt = facts.monthly_debt
    lowest = by_fact["monthly_debt"].suggested + CENT if "monthly_debt" in by_fact else Decimal(0)
    for value in _cents_sample(policy, facts, lowest, debt):
        assert not approved(policy, facts, monthly_debt=value), value


def _cents_sample(policy: Policy, facts: ApplicationFacts, low: Decimal, high: Decimal) -> list[Decimal]:
    """Every cent in [low, high) when there are few; else ``low`` and the cents around every debt band edge.

    The second is enough because the decision is constant between two edges: each piece of the line starts
    at ``low`` or just above an edge.
    """
    count = int((high - low) / CENT)
    if count <= 200:
        return [low + k * CENT for k in range(max(count, 0))]
    rule = next(rule for rule in policy.scorecard if rule.factor == "debt_to_income")
    assert isinstance(rule, BandRule)
    edges = [bound for band in rule.bands for bound in (band.interval.lower, band.interval.upper) if bound is not None]
    sample = {low}
    for edge in edges:
        cent = edge * facts.monthly_income // CENT * CENT
        sample.update(cent + k * CENT for k in (-1, 0, 1, 2))
    return sorted(value for value in sample if low <= value < high)


@settings(max_examples=40, deadline=None)
@given(cases())
def test_the_decisions_own_score_gives_the_same_answer(case: tuple[Policy, ApplicationFacts]) -> None:
    policy, facts = case
    assessment = evaluate(policy, facts)
    assert alternatives(policy, facts, assessment.decision, assessment.score) == alternatives(
        policy, facts, assessment.decision
    )


def test_seed_worked_example_to_the_cent() -> None:
    """Income 3,333.33: the loan-to-income edges are 999.999 and 1,666.665, never on a cent."""
    facts = make(720, "3333.33", "1200.00", "5000.00", "self-employed", "business")
    assessment = evaluate(SEED, facts)
    assert (assessment.outcome, assessment.risk_score) == ("rejected", 70)
    offer, changes = alternatives(SEED, facts, assessment.decision)
    # 900 scores 50 (loan-to-income 0.27); 1,000 is 0.300009 of income, 60 points: not below 60.
    assert offer == {"loan_amount": "900.00", "risk_score": 50, "outcome": "approved", "binding_rule": "loan-to-income"}
    assert changes == [
        {"fact": "loan_amount", "current": "5000.00", "suggested": "900.00", "change": "-4100.00", "risk_score": 50},
        # 933.33 is 0.279999 of income: no debt points; 933.34 is over 0.28.
        {"fact": "monthly_debt", "current": "1200.00", "suggested": "933.33", "change": "-266.67", "risk_score": 50},
    ]
    by_the_cent = counteroffer(replace(SEED, rounding_step=CENT), facts)
    assert by_the_cent is not None and by_the_cent.loan_amount == Decimal("999.99")


def test_no_counteroffer_when_the_other_facts_alone_refuse() -> None:
    """Credit score, employment and purpose are never changed: 30 + 20 + 15 refuses at any amount or debt."""
    facts = make(550, "4000", "0", "3000", "unemployed", "debt_consolidation")
    assessment = evaluate(SEED, facts)
    assert assessment.outcome == "rejected"
    assert alternatives(SEED, facts, assessment.decision) == (None, [])


def test_a_request_below_one_step_has_no_counteroffer() -> None:
    facts = make(650, "100", "0", "99.99", "employed", "debt_consolidation")
    assert evaluate(SEED, facts).outcome == "rejected"
    assert counteroffer(SEED, facts) is None


def _with_step(step: str) -> str:
    return seed_policy_text().replace("version: seed-1\n", f"version: seed-1\nrounding_step: {step}\n")


def test_the_rounding_step_is_a_validated_setting_in_the_hash() -> None:
    assert SEED.rounding_step == Decimal("100.00")
    assert parse_policy(_with_step("100")).content_hash == SEED.content_hash
    fifty = parse_policy(_with_step("50.00"))
    assert fifty.rounding_step == Decimal("50.00") and fifty.content_hash != SEED.content_hash
    for bad, message in [
        ("0", "rounding_step"),
        ("-5", "rounding_step"),
        ("0.001", "more than two decimal places"),
        ('"100"', "expected number"),
        ("1e20", "rounding_step"),
    ]:
        with pytest.raises(PolicyValidationError, match=message):
            parse_policy(_with_step(bad))
