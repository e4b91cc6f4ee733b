"""Review cases without I/O: the transitions, four eyes, the recommendation, and the hash chain."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from fastloans.policy import ApplicationFacts, evaluate, load_default_policy, load_policy, score
from fastloans.policy.loader import shipped_policy_path
from fastloans.policy.model import Condition, DecisionRule, Policy
from fastloans.reviews import (
    GENESIS,
    LIVE,
    Action,
    CaseState,
    FourEyesViolation,
    TransitionRefused,
    after,
    chain,
    check_four_eyes,
    first_broken,
    recommendation,
    refer_packet,
)

pytestmark = pytest.mark.unit


def referring_policy() -> Policy:
    """The seed policy with a borderline band referred between its approve rules and its catch-all reject."""
    seed = load_default_policy()
    refer = DecisionRule("refer-borderline", "refer", Condition(score_below=70))
    return replace(seed, decision=(*seed.decision[:-1], refer, seed.decision[-1]))


def test_the_happy_path_and_an_override() -> None:
    state = after(CaseState.OPEN, Action.CLAIM)
    assert state is CaseState.CLAIMED
    assert after(state, Action.DECIDE) is CaseState.DECIDED
    assert after(state, Action.DECIDE, overrides=True) is CaseState.AWAITING_APPROVAL
    assert after(CaseState.AWAITING_APPROVAL, Action.APPROVE) is CaseState.DECIDED
    assert after(CaseState.AWAITING_APPROVAL, Action.RETURN) is CaseState.OPEN


@pytest.mark.parametrize(
    ("state", "action"),
    [
        (CaseState.OPEN, Action.DECIDE),  # decide only what you hold
        (CaseState.DECIDED, Action.CLAIM),
        (CaseState.DECIDED, Action.WITHDRAW),
        (CaseState.WITHDRAWN, Action.CLAIM),
        (CaseState.CLAIMED, Action.APPROVE),
        (CaseState.OPEN, Action.REQUEST_INFORMATION),
    ],
)
def test_actions_that_do_not_apply_are_refused(state: CaseState, action: Action) -> None:
    with pytest.raises(TransitionRefused, match=state.value):
        after(state, action)


def test_every_unfinished_case_can_be_withdrawn() -> None:
    for state in (CaseState.OPEN, CaseState.CLAIMED, CaseState.AWAITING_APPROVAL, CaseState.WAITING_FOR_INFORMATION):
        assert after(state, Action.WITHDRAW) is CaseState.WITHDRAWN


def test_four_eyes() -> None:
    check_four_eyes("reviewer-1", "supervisor-1")
    with pytest.raises(FourEyesViolation):
        check_four_eyes("reviewer-1", "reviewer-1")
    with pytest.raises(FourEyesViolation):
        check_four_eyes(None, "supervisor-1")


def test_the_recommendation_is_the_first_rule_after_the_refer_rule_that_holds() -> None:
    policy = referring_policy()
    assert recommendation(policy, 65, "car", "employed") == "reject"  # referred: the catch-all rejects
    assert recommendation(policy, 50, "debt_consolidation", "employed") == "reject"
    assert recommendation(policy, 10, "car", "employed") is None  # approved, never referred
    assert recommendation(policy, 80, "car", "employed") is None  # rejected, never referred


def test_a_chain_verifies_and_any_edit_breaks_it_from_that_entry_on() -> None:
    at = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
    entries = [
        {"action": "open", "actor": None, "at": at},
        {"action": "claim", "actor": "reviewer-1", "at": at},
        {"action": "decide", "actor": "reviewer-1", "outcome": "approve", "reason_codes": [], "at": at},
    ]
    links = chain(entries)
    assert links[0].previous == GENESIS and first_broken(links) is None
    edited = [links[0], replace(links[1], content={**links[1].content, "actor": "someone-else"}), links[2]]
    assert first_broken(edited) == 1
    assert first_broken([links[0], links[2]]) == 1  # a removed entry
    assert first_broken([links[1], links[0], links[2]]) == 0  # reordered


def test_a_new_revision_supersedes_an_unfinished_case() -> None:
    for state in (*LIVE, CaseState.WAITING_FOR_INFORMATION):
        assert after(state, Action.SUPERSEDE) is CaseState.SUPERSEDED
    with pytest.raises(TransitionRefused):
        after(CaseState.DECIDED, Action.SUPERSEDE)


def test_the_refer_packet_names_the_band_the_points_and_the_single_changes() -> None:
    policy = load_policy(shipped_policy_path())
    # 20 (credit 650) + 10 (DTI 0.30) + 10 (self-employed) + 10 (business) + 10 (LTI 0.4) = 60: referred
    money = (Decimal("2000.00"), Decimal("5000.00"), Decimal("1500.00"))
    facts = ApplicationFacts(650, *money, "self-employed", "business")
    scored = score(policy, facts)
    assert scored.risk_score == 60
    packet = refer_packet(policy, facts, scored)
    assert packet["refer_rule"] == "refer-borderline"
    assert packet["band"] == "score >= 60 and score < 70"
    assert [rule["points"] for rule in packet["rules"]] == [20, 10, 10, 10, 10]
    assert (packet["points_above_approval"], packet["points_below_rejection"]) == (1, 10)
    # Asking for 1,500 (LTI 0.3: 0 points) or paying debt down to 1,400 (DTI 0.28: 0 points) approves.
    assert {c["fact"]: c["suggested"] for c in packet["to_approve"]} == {
        "loan_amount": "1500.00",
        "monthly_debt": "1400.00",
    }
    # Asking for 2,500.01 (LTI over 0.5: +10) or 1,800.01 of debt (DTI over 0.36: +10) reaches 70: rejected.
    assert {c["fact"]: c["suggested"] for c in packet["to_reject"]} == {
        "loan_amount": "2500.01",
        "monthly_debt": "1800.01",
    }
    for change in packet["to_approve"]:
        moved = replace(facts, **{change["fact"]: Decimal(change["suggested"])})
        assert evaluate(policy, moved).outcome == "approved"
    for change in packet["to_reject"]:
        moved = replace(facts, **{change["fact"]: Decimal(change["suggested"])})
        assert evaluate(policy, moved).outcome == "rejected"
        just_below = replace(facts, **{change["fact"]: Decimal(change["suggested"]) - Decimal("0.01")})
        assert evaluate(policy, just_below).outcome == "referred"


def test_every_catalogued_reason_names_a_factor() -> None:
    from fastloans.policy import FACTORS, reason_catalogue
    from fastloans.reviews import reason_factor

    assert {code: reason_factor(code) in FACTORS for code in reason_catalogue()} == dict.fromkeys(
        reason_catalogue(), True
    )


def test_the_reason_options_are_the_codes_a_decision_may_give() -> None:
    from fastloans_gateway.reviews import InvalidDecision, check_reasons, reason_options

    packet = {"rules": [{"factor": "debt_to_income", "points": 20}, {"factor": "credit_score", "points": 20}]}
    options = reason_options(packet)
    codes = [code for code, _ in options]
    assert codes == [
        "CREDIT_SCORE_VERY_LOW",
        "CREDIT_SCORE_LOW",
        "CREDIT_SCORE_BELOW_PRIME",
        "DEBT_TO_INCOME_EXCESSIVE",
        "DEBT_TO_INCOME_HIGH",
        "DEBT_TO_INCOME_ELEVATED",
    ]
    assert all(text for _, text in options)
    case = {"packet": packet}
    for code in codes:
        check_reasons(case, "reject", [code])
    with pytest.raises(InvalidDecision, match="not supported"):
        check_reasons(case, "reject", ["PURPOSE_BUSINESS"])
    assert reason_options(None) == []
