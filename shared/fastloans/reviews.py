"""Review cases of referred applications: their states, who may move them, the recommendation, the audit chain.

Pure rules, no I/O: the recorder opens cases and the gateway's review API moves them with these, so the
transitions, the four-eyes rule and the hash chain are declared once.

A case goes `open` → `claimed` → `decided`, or through `awaiting_approval` when the reviewer's decision
differs from the policy's recommendation (an override: a second person with the `supervise` scope approves
or returns it, never the one who decided). `waiting_for_information` stops the deadline's clock until the
applicant answers (a new revision supersedes the case, and opens a new one if it is referred again); a withdrawn
application closes its case.

The history of a case is append-only and hash-chained: each entry stores the SHA-256 of the previous
entry's hash and its own canonical content, so an entry edited afterwards breaks every link after it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import orjson

from fastloans.policy.counteroffer import what_would_change, what_would_refuse
from fastloans.policy.engine import Score
from fastloans.policy.facts import ApplicationFacts
from fastloans.policy.model import Policy

#: The hash a case's first history entry chains to.
GENESIS: Final = "0" * 64


#: Scores are searched this far from the referred one for the nearest approval and rejection.
_SCORE_SEARCH: Final = 1000


class CaseState(StrEnum):
    """Where a review case stands."""

    OPEN = "open"
    CLAIMED = "claimed"
    AWAITING_APPROVAL = "awaiting_approval"
    WAITING_FOR_INFORMATION = "waiting_for_information"
    DECIDED = "decided"
    WITHDRAWN = "withdrawn"
    # A new revision (the applicant's answer, or any change) replaced the case's; it is decided again.
    SUPERSEDED = "superseded"


class Action(StrEnum):
    """What can happen to a case (each is one history entry)."""

    OPEN = "open"
    CLAIM = "claim"
    RELEASE = "release"
    DECIDE = "decide"
    APPROVE = "approve"
    RETURN = "return"
    REQUEST_INFORMATION = "request_information"
    WITHDRAW = "withdraw"
    SUPERSEDE = "supersede"


#: The states a case can still be worked in (and so counted against its deadline).
LIVE: Final = frozenset({CaseState.OPEN, CaseState.CLAIMED, CaseState.AWAITING_APPROVAL})

# (state, action) -> the next state. A decision's next state depends on whether it overrides: see `after`.
_TRANSITIONS: Final[Mapping[tuple[CaseState, Action], CaseState]] = {
    (CaseState.OPEN, Action.CLAIM): CaseState.CLAIMED,
    (CaseState.CLAIMED, Action.CLAIM): CaseState.CLAIMED,  # the holder renews its lease, or takes an expired one
    (CaseState.CLAIMED, Action.RELEASE): CaseState.OPEN,
    (CaseState.CLAIMED, Action.DECIDE): CaseState.DECIDED,
    (CaseState.CLAIMED, Action.REQUEST_INFORMATION): CaseState.WAITING_FOR_INFORMATION,
    (CaseState.AWAITING_APPROVAL, Action.APPROVE): CaseState.DECIDED,
    (CaseState.AWAITING_APPROVAL, Action.RETURN): CaseState.OPEN,
    **{(state, Action.WITHDRAW): CaseState.WITHDRAWN for state in (*LIVE, CaseState.WAITING_FOR_INFORMATION)},
    **{(state, Action.SUPERSEDE): CaseState.SUPERSEDED for state in (*LIVE, CaseState.WAITING_FOR_INFORMATION)},
}

#: The states a case is closed in (nothing more happens to it).
CLOSED: Final = frozenset({CaseState.DECIDED, CaseState.WITHDRAWN, CaseState.SUPERSEDED})


#: The factor a catalogue reason code speaks of, by its prefix: a reviewer's reason must name a factor the
#: policy scored for the application (a DEBT_TO_INCOME_* code needs a debt-to-income that added points).
REASON_FACTORS: Final[Mapping[str, str]] = {
    "CREDIT_SCORE_": "credit_score",
    "DEBT_TO_INCOME_": "debt_to_income",
    "LOAN_TO_INCOME_": "loan_to_income",
    "EMPLOYMENT_": "employment_status",
    "PURPOSE_": "loan_purpose",
}
#: At most this many reasons for a reviewer's rejection (as for the policy's principal reasons).
MAX_REVIEW_REASONS: Final = 4


def reason_factor(code: str) -> str | None:
    """The factor a reason code explains, or None for a code of no known factor."""
    return next((factor for prefix, factor in REASON_FACTORS.items() if code.startswith(prefix)), None)


class TransitionRefused(Exception):
    """The action does not apply to the case as it stands (the API answers 409)."""


class FourEyesViolation(Exception):
    """A supervisor tried to approve or return their own decision (the API answers 403)."""


def after(state: CaseState, action: Action, *, overrides: bool = False) -> CaseState:
    """The state a case in `state` moves to by `action`; `TransitionRefused` when it cannot.

    A decision that overrides the recommendation waits for a second person instead of being final.
    """
    following = _TRANSITIONS.get((state, action))
    if following is None:
        raise TransitionRefused(f"a case that is {state.value} cannot be given '{action.value}'")
    if action is Action.DECIDE and overrides:
        return CaseState.AWAITING_APPROVAL
    return following


def check_four_eyes(decided_by: str | None, supervisor: str) -> None:
    """A supervisor approves or returns only a decision someone else made."""
    if decided_by is None or decided_by == supervisor:
        raise FourEyesViolation("a decision that overrides the policy needs a second person: not the one who made it")


def recommendation(policy: Policy, risk_score: int, loan_purpose: str, employment_status: str) -> str | None:
    """What the policy would have decided without its refer rule: the first rule after it that holds.

    For a policy that refers a borderline band above its approve rules, that is usually `reject`. None when
    the application was not referred, or no later rule holds.
    """
    holding = (rule for rule in policy.decision if rule.when.matches(risk_score, loan_purpose, employment_status))
    first = next(holding, None)
    if first is None or first.outcome != "refer":
        return None
    return next((rule.outcome for rule in holding if rule.outcome != "refer"), None)


def _nearest(policy: Policy, risk_score: int, facts: ApplicationFacts, outcome: str, direction: int) -> int | None:
    """How many points the score must move in ``direction`` (-1 down, +1 up) for the policy to give ``outcome``."""
    for distance in range(1, _SCORE_SEARCH):
        score = risk_score + direction * distance
        rule = next(
            (r for r in policy.decision if r.when.matches(score, facts.loan_purpose, facts.employment_status)), None
        )
        if rule is not None and rule.outcome == outcome:
            return distance
    return None


def refer_packet(policy: Policy, facts: ApplicationFacts, scored: Score) -> dict[str, Any]:
    """What a reviewer needs before opening a referred case, computed once when it is referred.

    The refer rule and its band, the scorecard rules that put the application there (most points first), how
    many points it is from an approval and from a rejection, and per actionable fact the single change that
    would move it to either (exact, from the counteroffer engine).
    """
    rule = next(
        r for r in policy.decision if r.when.matches(scored.risk_score, facts.loan_purpose, facts.employment_status)
    )
    ranked = sorted(scored.contributions, key=lambda c: -c.points)
    return {
        "refer_rule": rule.id,
        "band": rule.when.describe(),
        "risk_score": scored.risk_score,
        "rules": [
            {"rule_id": c.rule_id, "factor": c.factor, "points": c.points, "reason_code": c.reason_code} for c in ranked
        ],
        "points_above_approval": _nearest(policy, scored.risk_score, facts, "approve", -1),
        "points_below_rejection": _nearest(policy, scored.risk_score, facts, "reject", +1),
        "to_approve": [change.to_dict() for change in what_would_change(policy, facts)],
        "to_reject": [change.to_dict() for change in what_would_refuse(policy, facts)],
    }


def canonical(entry: Mapping[str, Any]) -> bytes:
    """An entry's content as the chain hashes it: sorted keys, no whitespace, UTC timestamps as given."""
    return orjson.dumps(entry, option=orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z, default=str)


def entry_hash(previous: str, entry: Mapping[str, Any]) -> str:
    """The hash of one history entry, chained to the previous entry's."""
    return hashlib.sha256(previous.encode() + b"\n" + canonical(entry)).hexdigest()


@dataclass(frozen=True, slots=True)
class Link:
    """One stored history entry: its content, the hash it says precedes it, and its own hash."""

    content: Mapping[str, Any]
    previous: str
    hash: str


def chain(entries: Iterable[Mapping[str, Any]], start: str = GENESIS) -> list[Link]:
    """The links a sequence of entries is stored as."""
    links, previous = [], start
    for content in entries:
        digest = entry_hash(previous, content)
        links.append(Link(content, previous, digest))
        previous = digest
    return links


def first_broken(links: Sequence[Link], start: str = GENESIS) -> int | None:
    """The index of the first link that does not verify (edited, removed or reordered), or None."""
    previous = start
    for index, link in enumerate(links):
        if link.previous != previous or entry_hash(previous, link.content) != link.hash:
            return index
        previous = link.hash
    return None
