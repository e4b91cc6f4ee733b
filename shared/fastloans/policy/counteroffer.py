"""The best the policy allows an adverse decision: the counteroffer, and what single change would approve.

Both are exact. A fact moves the decision only through the ratio factors it is the numerator of, and a
ratio rule changes its points only at a band edge, so the decision is constant between two consecutive
edges (turned into amounts: ``bound * monthly_income``). The largest approved value on a grid, no larger
than a cap, is therefore the grid point just below or at one of the edges, or the largest one under the
cap: those few candidates are evaluated, from the largest down, and the first approved one is the answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation
from typing import Any, Final

from .engine import Decision, Score
from .facts import ACTIONABLE_FACTS, RATIO_NUMERATORS, ApplicationFacts
from .model import CENT, BandRule, Policy

# Edges are bound * income: exact in this precision for any money amount and any policy bound.
_EXACT: Final = Context(prec=200, traps=[InvalidOperation, Inexact])
_ZERO: Final = Decimal(0)


@dataclass(frozen=True, slots=True)
class Counteroffer:
    """The largest amount on the policy's step, up to the one requested, that the policy approves."""

    loan_amount: Decimal
    risk_score: int
    binding_rule: str

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (the amount as a decimal string with two places)."""
        return {
            "loan_amount": str(self.loan_amount.quantize(CENT)),
            "risk_score": self.risk_score,
            "outcome": "approved",
            "binding_rule": self.binding_rule,
        }


@dataclass(frozen=True, slots=True)
class Change:
    """The smallest change of one actionable fact, all others unchanged, that makes the policy approve."""

    fact: str
    current: Decimal
    suggested: Decimal
    risk_score: int

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (amounts as decimal strings with two places)."""
        return {
            "fact": self.fact,
            "current": str(self.current.quantize(CENT)),
            "suggested": str(self.suggested.quantize(CENT)),
            "change": str((self.suggested - self.current).quantize(CENT)),
            "risk_score": self.risk_score,
        }


# One band of a ratio rule in the units of its numerator fact: lower, lower closed, upper, upper closed, points.
_Band = tuple[Decimal | None, bool, Decimal | None, bool, int]


def _contains(band: _Band, value: Decimal) -> bool:
    lower, lower_closed, upper, upper_closed, _ = band
    if lower is not None and (value < lower or (value == lower and not lower_closed)):
        return False
    return upper is None or value < upper or (value == upper and upper_closed)


class _Axis:
    """The policy as a function of one fact, every other fact held: fixed points plus the moving rules'."""

    __slots__ = ("_employment", "_fixed", "_moving", "_policy", "_purpose")

    def __init__(self, policy: Policy, facts: ApplicationFacts, fact: str, scored: Score | None = None) -> None:
        self._policy = policy
        self._purpose = facts.loan_purpose
        self._employment = facts.employment_status
        income = facts.monthly_income
        # The ratio rules on `fact`, their bands turned into amounts of it (exact: bound * income).
        self._moving: list[tuple[str, tuple[_Band, ...]]] = []
        fixed = 0
        for rule in policy.scorecard:
            if isinstance(rule, BandRule) and RATIO_NUMERATORS.get(rule.factor) == fact:
                bands = tuple(
                    (
                        None if band.interval.lower is None else _EXACT.multiply(band.interval.lower, income),
                        band.interval.lower_closed,
                        None if band.interval.upper is None else _EXACT.multiply(band.interval.upper, income),
                        band.interval.upper_closed,
                        band.award.points,
                    )
                    for band in rule.bands
                )
                self._moving.append((rule.id, bands))
            elif scored is None:
                fixed += rule.match(facts).award.points
        if scored is not None:
            moving = {rule_id for rule_id, _ in self._moving}
            fixed = scored.risk_score - sum(c.points for c in scored.contributions if c.rule_id in moving)
        self._fixed = fixed

    def edges(self) -> Iterator[Decimal]:
        """Yield the fact's values at which a moving rule's band changes."""
        for _, bands in self._moving:
            for lower, _closed, upper, _upper_closed, _points in bands:
                if lower is not None:
                    yield lower
                if upper is not None:
                    yield upper

    def points(self, value: Decimal) -> list[int]:
        """Return each moving rule's points at ``value``."""
        return [next(band[4] for band in bands if _contains(band, value)) for _, bands in self._moving]

    def outcome(self, value: Decimal) -> tuple[str, int]:
        """Return the outcome and the risk score at ``value``."""
        risk_score = self._fixed + sum(self.points(value))
        for rule in self._policy.decision:
            if rule.when.matches(risk_score, self._purpose, self._employment):
                return rule.outcome, risk_score
        raise LookupError("the policy decides nothing")  # validated away

    def binding_rule(self, value: Decimal, above: Decimal) -> str:
        """Return the first moving rule whose points differ between ``value`` and ``above``."""
        for (rule_id, _), low, high in zip(self._moving, self.points(value), self.points(above), strict=True):
            if low != high:
                return rule_id
        raise LookupError("nothing changes between the two values")  # an approval and a refusal differ

    def largest_approved(self, cap: Decimal, step: Decimal, least: Decimal) -> tuple[Decimal, int] | None:
        """Return the largest multiple of ``step`` in [``least``, ``cap``] that is approved, with its score."""
        candidates = {_grid_at_or_below(cap, step)}
        for edge in self.edges():
            if least <= edge <= cap:
                below = _grid_at_or_below(edge, step)
                candidates.add(below)
                candidates.add(below - step if below == edge else below)
        for value in sorted(candidates, reverse=True):
            if value < least:
                break
            outcome, risk_score = self.outcome(value)
            if outcome == "approve":
                return value, risk_score
        return None


def _grid_at_or_below(value: Decimal, step: Decimal) -> Decimal:
    """Return the largest multiple of ``step`` that is at most ``value``."""
    quotient = _EXACT.divide_int(value, step)
    result = _EXACT.multiply(quotient, step)
    return result - step if result > value else result


def counteroffer(policy: Policy, facts: ApplicationFacts, scored: Score | None = None) -> Counteroffer | None:
    """Return the largest amount on the policy's step, at most the one asked for, that the policy approves.

    None when the amount asked for is approved (nothing to offer instead), or when no positive amount on
    the step is (the other facts alone refuse, or the request is smaller than one step).
    """
    requested, step = facts.loan_amount, policy.rounding_step
    axis = _Axis(policy, facts, "loan_amount", scored)
    if axis.outcome(requested)[0] == "approve":
        return None
    best = axis.largest_approved(requested, step, step)
    if best is None:
        return None
    amount, risk_score = best
    # What stops the next step up (or, past the request, the request itself: it is refused).
    above = min(amount + step, requested)
    return Counteroffer(amount, risk_score, axis.binding_rule(amount, above))


def what_would_change(policy: Policy, facts: ApplicationFacts) -> list[Change]:
    """Return, per actionable fact, the smallest single change that makes the policy approve (if one does).

    Loan amounts move on the policy's rounding step (the lender lends in those: the change is the one to
    the counteroffer), monthly debt to the cent; both only down: asking for less and paying debt down are
    what an applicant can do. Empty when no single change approves, or when the policy approves already.
    """
    return _changes(policy, facts, counteroffer(policy, facts))


def _changes(
    policy: Policy, facts: ApplicationFacts, offer: Counteroffer | None, scored: Score | None = None
) -> list[Change]:
    changes: list[Change] = []
    for fact in ACTIONABLE_FACTS:
        current: Decimal = getattr(facts, fact)
        if fact == "loan_amount":
            if offer is not None:
                changes.append(Change(fact, current, offer.loan_amount, offer.risk_score))
            continue
        axis = _Axis(policy, facts, fact, scored)
        if axis.outcome(current)[0] == "approve":
            continue
        best = axis.largest_approved(current, CENT, _ZERO)
        if best is not None:
            changes.append(Change(fact, current, best[0], best[1]))
    return changes


def alternatives(
    policy: Policy, facts: ApplicationFacts, decision: Decision, scored: Score | None = None
) -> tuple[dict[str, Any] | None, list[dict[str, Any]] | None]:
    """Return the JSON forms of the counteroffer and of what would change, for a decision.

    For an approval both are None (nothing to offer instead). For an adverse one the counteroffer is None
    when no amount is approved, and the list of changes is empty when no single change approves. ``scored``,
    the decision's own score under ``policy`` when at hand, saves scoring the facts again.
    """
    if decision.outcome == "approved":
        return None, None
    offer = counteroffer(policy, facts, scored)
    changes = _changes(policy, facts, offer, scored)
    return (None if offer is None else offer.to_dict()), [change.to_dict() for change in changes]
