"""The chaos run's review checks (tests/chaos): decisions keyed on their decider, and each case against its
application."""

from __future__ import annotations

import uuid

from bench import checks
from tests.chaos.invariants import histories
from tests.chaos.reviews import _orphan

APP = uuid.uuid4()
CASE = uuid.uuid4()


def _decision(outcome: str, decided_by: str, revision: int = 1, risk_score: int = 64) -> dict[str, object]:
    return {
        "application_id": APP,
        "revision": revision,
        "outcome": outcome,
        "risk_score": risk_score,
        "decided_by": decided_by,
    }


def _row(status: str, revision: int = 1) -> dict[str, object]:
    return {"status": status, "revision": revision, "risk_score": 64}


def test_a_reviewers_decision_is_the_one_the_application_shows_and_no_surplus() -> None:
    recorded = [_decision("referred", "policy"), _decision("rejected", "review")]
    history = histories(recorded)[str(APP)]
    assert [d["decided_by"] for d in history[1]] == ["review"]
    finding = checks.check_application(str(APP), _row("rejected"), history)
    assert (finding.outcome, finding.surplus) == ("decided", 0)
    # Still referred while a reviewer's decision is recorded: the application does not show it.
    assert checks.check_application(str(APP), _row("referred"), history).outcome == "mismatched"


def test_a_second_decision_by_the_same_decider_is_surplus() -> None:
    twice = [_decision("referred", "policy"), _decision("rejected", "review"), _decision("rejected", "review")]
    assert checks.check_application(str(APP), _row("rejected"), histories(twice)[str(APP)]).surplus == 1
    policy_twice = [_decision("approved", "policy"), _decision("approved", "policy")]
    assert checks.check_application(str(APP), _row("approved"), histories(policy_twice)[str(APP)]).surplus == 1


def _case(state: str, revision: int = 1, outcome: str | None = None) -> dict[str, object]:
    return {"id": CASE, "application_id": APP, "revision": revision, "state": state, "outcome": outcome}


def _application(status: str, revision: int = 1, decided_by: str = "policy", case: uuid.UUID | None = CASE):
    return {"id": APP, "status": status, "revision": revision, "decided_by": decided_by, "review_case_id": case}


def test_cases_their_applications_account_for() -> None:
    assert _orphan(_case("open"), _application("referred")) is None
    assert _orphan(_case("decided", outcome="reject"), _application("rejected", decided_by="review")) is None
    assert _orphan(_case("withdrawn"), _application("withdrawn")) is None
    assert _orphan(_case("superseded"), _application("pending", revision=2)) is None
    assert _orphan(_case("decided", outcome="approve"), _application("approved", revision=2)) is None


def test_cases_their_applications_do_not_account_for() -> None:
    assert _orphan(_case("open"), _application("withdrawn")) == "open when withdrawn"
    assert "since changed" in (_orphan(_case("claimed"), _application("referred", revision=2)) or "")
    assert "for an application approved" in (_orphan(_case("open"), _application("approved")) or "")
    decided = _case("decided", outcome="reject")
    assert "the application shows" in (_orphan(decided, _application("referred")) or "")
    assert "the application shows" in (_orphan(decided, _application("approved", decided_by="review")) or "")
    ahead = _orphan(_case("open", revision=2), _application("referred"))
    assert ahead == "revision 2 of an application at revision 1"
