"""Scoring and deciding: pure functions of a policy and an application's facts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from .facts import ApplicationFacts
from .model import PAST_TENSE, Outcome, Policy
from .reasons import reason_text

#: At most this many principal reasons are given for an adverse decision.
MAX_PRINCIPAL_REASONS: Final = 4


@dataclass(frozen=True, slots=True)
class Contribution:
    """One scorecard rule that added points, with the applicant's value that triggered it."""

    rule_id: str
    factor: str
    points: int
    reason_code: str
    value: str

    @property
    def text(self) -> str:
        """Return the reason code's plain-language text."""
        return reason_text(self.reason_code)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "rule_id": self.rule_id,
            "factor": self.factor,
            "points": self.points,
            "reason_code": self.reason_code,
            "value": self.value,
            "text": self.text,
        }


@dataclass(frozen=True, slots=True)
class Score:
    """The risk score (sum of points) and the rules that added points, in scorecard order."""

    risk_score: int
    contributions: tuple[Contribution, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "risk_score": self.risk_score,
            "contributions": [item.to_dict() for item in self.contributions],
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome, the decision rule that gave it, and the principal reasons if adverse."""

    outcome: Outcome
    rule_id: str
    principal_reasons: tuple[Contribution, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "outcome": self.outcome,
            "rule_id": self.rule_id,
            "principal_reasons": [item.to_dict() for item in self.principal_reasons],
        }


@dataclass(frozen=True, slots=True)
class Assessment:
    """A full evaluation: the policy's identity, the score and the decision."""

    policy_name: str
    policy_version: str
    policy_hash: str
    score: Score
    decision: Decision

    @property
    def risk_score(self) -> int:
        """Return the risk score."""
        return self.score.risk_score

    @property
    def outcome(self) -> Outcome:
        """Return the outcome."""
        return self.decision.outcome

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "policy": {"name": self.policy_name, "version": self.policy_version, "hash": self.policy_hash},
            **self.score.to_dict(),
            **self.decision.to_dict(),
        }


def score(policy: Policy, facts: ApplicationFacts) -> Score:
    """Score ``facts`` with the policy's scorecard."""
    contributions: list[Contribution] = []
    for rule in policy.scorecard:
        match = rule.match(facts)
        if match.award.points and match.award.reason_code is not None:
            contributions.append(
                Contribution(rule.id, rule.factor, match.award.points, match.award.reason_code, match.value)
            )
    return Score(sum(item.points for item in contributions), tuple(contributions))


def principal_reasons(contributions: Sequence[Contribution]) -> tuple[Contribution, ...]:
    """Return the top contributions by points; ties keep scorecard order."""
    ranked = sorted(enumerate(contributions), key=lambda pair: (-pair[1].points, pair[0]))
    return tuple(item for _, item in ranked[:MAX_PRINCIPAL_REASONS])


def decide(
    policy: Policy,
    facts: ApplicationFacts,
    risk_score: int,
    *,
    contributions: Sequence[Contribution] | None = None,
) -> Decision:
    """Decide on ``facts`` given their risk score; the first matching decision rule wins."""
    for rule in policy.decision:
        if rule.when.matches(risk_score, facts.loan_purpose, facts.employment_status):
            outcome = PAST_TENSE[rule.outcome]
            if outcome == "approved":
                return Decision(outcome, rule.id, ())
            if contributions is None:
                contributions = score(policy, facts).contributions
            return Decision(outcome, rule.id, principal_reasons(contributions))
    raise LookupError(f"policy {policy.name} {policy.version} decides nothing")  # validated away


def evaluate(policy: Policy, facts: ApplicationFacts) -> Assessment:
    """Score and decide ``facts`` with one policy."""
    result = score(policy, facts)
    decision = decide(policy, facts, result.risk_score, contributions=result.contributions)
    return Assessment(policy.name, policy.version, policy.content_hash, result, decision)
