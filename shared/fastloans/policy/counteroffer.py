"""The best the policy allows an adverse decision: the counteroffer, and what single change would approve.

Both are exact. A fact moves the decision only through the ratio factors it is the numerator of, and a
ratio rule changes its points only at a band edge, so the decision is constant between two consecutive
edges (turned into amounts: ``bound * monthly_income``). The largest approved value on a grid, no larger
than a cap, is therefore the grid point just below or at one of the edges, or the largest one under the
cap: those few candidates are evaluated, from the largest down, and the first approved one is the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation
from functools import lru_cache
from typing import Any, Final

from .engine import Decision, Score
from .facts import ACTIONABLE_FACTS, RATIO_NUMERATORS, ApplicationFacts
from .model import CENT, Band, BandRule, Policy

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


# One band of a ratio rule: the index of its lower edge (None: -inf), lower closed, upper edge, upper closed,
# and its points. Edges are indices into the rule set's sorted distinct bounds.
_Band = tuple[int | None, bool, int | None, bool, int]


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one fact moves in a policy: the ratio rules on it, by id, and the distinct bounds of their bands."""

    rule_ids: tuple[str, ...]
    bands: tuple[tuple[_Band, ...], ...]
    bounds: tuple[Decimal, ...]


def _lower_first(band: Band) -> tuple[bool, Decimal, bool]:
    lower = band.interval.lower
    return (lower is not None, lower if lower is not None else _ZERO, not band.interval.lower_closed)


@lru_cache(maxsize=64)
def _plan(policy: Policy, fact: str) -> _Plan:
    rules = [r for r in policy.scorecard if isinstance(r, BandRule) and RATIO_NUMERATORS.get(r.factor) == fact]
    bounds = sorted(
        {b for r in rules for band in r.bands for b in (band.interval.lower, band.interval.upper) if b is not None}
    )
    index = {bound: position for position, bound in enumerate(bounds)}

    def edge(bound: Decimal | None) -> int | None:
        return None if bound is None else index[bound]

    # Each rule's bands in order along the line (the loader sorts them; a policy built in code may not).
    bands = tuple(
        tuple(
            (
                edge(b.interval.lower),
                b.interval.lower_closed,
                edge(b.interval.upper),
                b.interval.upper_closed,
                b.award.points,
            )
            for b in sorted(r.bands, key=_lower_first)
        )
        for r in rules
    )
    return _Plan(tuple(r.id for r in rules), bands, tuple(bounds))


@lru_cache(maxsize=16)
def _outcomes(policy: Policy) -> dict[tuple[int, str, str], str]:
    """A policy's decision outcomes by (risk score, loan purpose, employment status), filled as they are met."""
    return {}


class _Axis:
    """The policy as a function of one fact, every other fact held: fixed points plus the moving rules'."""

    __slots__ = ("_edges", "_employment", "_fixed", "_outcomes", "_plan", "_policy", "_purpose")

    def __init__(self, policy: Policy, facts: ApplicationFacts, fact: str, scored: Score | None = None) -> None:
        self._policy = policy
        self._purpose = facts.loan_purpose
        self._employment = facts.employment_status
        self._outcomes = _outcomes(policy)
        self._plan = plan = _plan(policy, fact)
        # The bounds as values of the fact: bound * income, exact.
        income = facts.monthly_income
        self._edges = [_EXACT.multiply(bound, income) for bound in plan.bounds]
        if scored is None:
            moving = set(plan.rule_ids)
            self._fixed = sum(r.match(facts).award.points for r in policy.scorecard if r.id not in moving)
        else:
            self._fixed = scored.risk_score - sum(c.points for c in scored.contributions if c.rule_id in plan.rule_ids)

    def _contains(self, band: _Band, value: Decimal) -> bool:
        lower, lower_closed, upper, upper_closed, _ = band
        if lower is not None:
            edge = self._edges[lower]
            if value < edge or (value == edge and not lower_closed):
                return False
        if upper is None:
            return True
        edge = self._edges[upper]
        return value < edge or (value == edge and upper_closed)

    def _meets(self, band: _Band, least: Decimal, cap: Decimal) -> bool:
        lower, lower_closed, upper, upper_closed, _ = band
        if upper is not None:
            edge = self._edges[upper]
            if edge < least or (edge == least and not upper_closed):
                return False
        if lower is None:
            return True
        edge = self._edges[lower]
        return edge < cap or (edge == cap and lower_closed)

    def points(self, value: Decimal) -> list[int]:
        """Return each moving rule's points at ``value``."""
        return [next(band[4] for band in bands if self._contains(band, value)) for bands in self._plan.bands]

    def decided(self, risk_score: int) -> str:
        """Return the decision rule's outcome for ``risk_score`` (the other facts are fixed)."""
        key = (risk_score, self._purpose, self._employment)
        outcome = self._outcomes.get(key)
        if outcome is None:
            rule = next(r for r in self._policy.decision if r.when.matches(*key))
            # Bounded: scores are sums of a policy's points, and purposes and statuses are few.
            outcome = self._outcomes[key] = rule.outcome
        return outcome

    def outcome(self, value: Decimal) -> tuple[str, int]:
        """Return the outcome and the risk score at ``value``."""
        risk_score = self._fixed + sum(self.points(value))
        return self.decided(risk_score), risk_score

    def may_approve(self, least: Decimal, cap: Decimal) -> bool:
        """Return whether any risk score the moving rules can give in [``least``, ``cap``] is approved."""
        totals = {self._fixed}
        for bands in self._plan.bands:
            points = {band[4] for band in bands if self._meets(band, least, cap)}
            totals = {total + more for total in totals for more in points}
        return any(self.decided(total) == "approve" for total in totals)

    def binding_rule(self, value: Decimal, above: Decimal) -> str:
        """Return the first moving rule whose points differ between ``value`` and ``above``."""
        for rule_id, low, high in zip(self._plan.rule_ids, self.points(value), self.points(above), strict=True):
            if low != high:
                return rule_id
        raise LookupError("nothing changes between the two values")  # an approval and a refusal differ

    def _largest_in_bands(
        self, bands: tuple[_Band, ...], cap: Decimal, step: Decimal, least: Decimal
    ) -> tuple[Decimal, int] | None:
        """One moving rule: each band is a piece; its largest grid value is the candidate, from the top down."""
        for lower, lower_closed, upper, upper_closed, points in reversed(bands):
            if upper is None or self._edges[upper] > cap:
                top = _grid_at_or_below(cap, step)
            else:
                edge = self._edges[upper]
                top = _grid_at_or_below(edge, step)
                if top == edge and not upper_closed:
                    top -= step
            if top < least:
                return None  # this band and every lower one lie below the least value
            if lower is not None and (top < self._edges[lower] or (top == self._edges[lower] and not lower_closed)):
                continue  # no grid value inside the band
            risk_score = self._fixed + points
            if self.decided(risk_score) == "approve":
                return top, risk_score
        return None

    def largest_approved(self, cap: Decimal, step: Decimal, least: Decimal) -> tuple[Decimal, int] | None:
        """Return the largest multiple of ``step`` in [``least``, ``cap``] that is approved, with its score."""
        if len(self._plan.bands) == 1:
            return self._largest_in_bands(self._plan.bands[0], cap, step, least)
        if not self.may_approve(least, cap):
            return None
        candidates = {_grid_at_or_below(cap, step)}
        for edge in self._edges:
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


def _smallest_above(axis: _Axis, current: Decimal, outcome: str, step: Decimal) -> tuple[Decimal, int] | None:
    """The smallest multiple of ``step`` above ``current`` at which the policy gives ``outcome``, with its score.

    The outcome is constant between two edges, so the candidates are the grid points at or just past each edge.
    """
    candidates: set[Decimal] = set()
    for edge in axis._edges:
        if edge >= current:
            up = _grid_at_or_below(edge, step)
            candidates.update((up, up + step, up + step + step))
    for value in sorted(candidates):
        if value <= current:
            continue
        decided, risk_score = axis.outcome(value)
        if decided == outcome:
            return value, risk_score
    return None


def what_would_refuse(policy: Policy, facts: ApplicationFacts) -> list[Change]:
    """Return, per actionable fact, the smallest single increase (to the cent) that makes the policy reject.

    The other side of `what_would_change` for a referred application: how far it is from a rejection. Empty
    when no single increase rejects, or when the policy rejects already.
    """
    changes: list[Change] = []
    for fact in ACTIONABLE_FACTS:
        current: Decimal = getattr(facts, fact)
        axis = _Axis(policy, facts, fact)
        if axis.outcome(current)[0] == "reject":
            continue
        found = _smallest_above(axis, current, "reject", CENT)
        if found is not None:
            changes.append(Change(fact, current, found[0], found[1]))
    return changes


def _grid_at_or_below(value: Decimal, step: Decimal) -> Decimal:
    """Return the largest multiple of ``step`` that is at most ``value``."""
    quotient = _EXACT.divide_int(value, step)
    result = _EXACT.multiply(quotient, step)
    return result - step if result > value else result


def counteroffer(
    policy: Policy, facts: ApplicationFacts, scored: Score | None = None, *, refused: bool = False
) -> Counteroffer | None:
    """Return the largest amount on the policy's step, at most the one asked for, that the policy approves.

    None when the amount asked for is approved (nothing to offer instead), or when no positive amount on
    the step is (the other facts alone refuse, or the request is smaller than one step). ``refused`` says
    the facts are already known not to be approved.
    """
    requested, step = facts.loan_amount, policy.rounding_step
    axis = _Axis(policy, facts, "loan_amount", scored)
    if not refused and axis.outcome(requested)[0] == "approve":
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
    policy: Policy,
    facts: ApplicationFacts,
    offer: Counteroffer | None,
    scored: Score | None = None,
    refused: bool = False,
) -> list[Change]:
    changes: list[Change] = []
    for fact in ACTIONABLE_FACTS:
        current: Decimal = getattr(facts, fact)
        if fact == "loan_amount":
            if offer is not None:
                changes.append(Change(fact, current, offer.loan_amount, offer.risk_score))
            continue
        axis = _Axis(policy, facts, fact, scored)
        if not refused and axis.outcome(current)[0] == "approve":
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
    offer = counteroffer(policy, facts, scored, refused=True)
    changes = _changes(policy, facts, offer, scored, refused=True)
    return (None if offer is None else offer.to_dict()), [change.to_dict() for change in changes]
