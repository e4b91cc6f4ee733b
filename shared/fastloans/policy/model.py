"""The parsed, immutable form of a credit policy."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal

from .facts import ApplicationFacts, Measure, category, measure

RuleOutcome = Literal["approve", "reject", "refer"]
Outcome = Literal["approved", "rejected", "referred"]
OUTCOMES: Final[tuple[Outcome, ...]] = ("approved", "rejected", "referred")
PAST_TENSE: Final[Mapping[str, Outcome]] = {
    "approve": "approved",
    "reject": "rejected",
    "refer": "referred",
}

#: Reg B (12 CFR 1002.9): an applicant hears of the decision within 30 days of a completed application.
DEFAULT_REVIEW_DEADLINE_DAYS: Final = 30
#: A case still open this many days after submission is escalated (shown as such, and alerted on).
DEFAULT_REVIEW_ESCALATION_DAYS: Final = 20
#: The reviewer outcomes that, when they differ from the policy's recommendation, need a second person.
DEFAULT_SECOND_PERSON_FOR: Final[tuple[RuleOutcome, ...]] = ("approve", "reject")

#: The default step counteroffer amounts are rounded down to (policy setting `rounding_step`).
DEFAULT_ROUNDING_STEP: Final = Decimal("100.00")
#: Money is exact to the cent.
CENT: Final = Decimal("0.01")

_BOUND = r"([+-]?inf|[+-]?\d+(?:\.\d+)?)"
_INTERVAL = re.compile(rf"^\s*([\[(])\s*{_BOUND}\s*,\s*{_BOUND}\s*([\])])\s*$")


def canonical_decimal(value: Decimal) -> str:
    """Return the shortest plain notation of ``value`` (``0.430`` and ``0.43`` give ``0.43``)."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


@dataclass(frozen=True, slots=True)
class Interval:
    """A half-open, closed or open interval of the real line; ``None`` bounds are infinite."""

    lower: Decimal | None
    lower_closed: bool
    upper: Decimal | None
    upper_closed: bool

    @classmethod
    def parse(cls, text: str) -> Interval:
        """Parse interval notation such as ``[600, 700)``, ``(-inf, 0.28]`` or ``(0.43, +inf)``."""
        match = _INTERVAL.match(text)
        if match is None:
            raise ValueError(f"invalid interval {text!r}; write e.g. '[600, 700)', '(-inf, 0.28]' or '(0.43, +inf)'")
        opening, low, high, closing = match.groups()
        lower = cls._bound(low, infinite="-inf")
        upper = cls._bound(high, infinite="+inf")
        if (lower is None and opening == "[") or (upper is None and closing == "]"):
            raise ValueError(f"invalid interval {text!r}: an infinite bound must be open")
        interval = cls(lower, opening == "[", upper, closing == "]")
        if interval.is_empty():
            raise ValueError(f"interval {text!r} is empty")
        return interval

    @staticmethod
    def _bound(text: str, *, infinite: str) -> Decimal | None:
        if text.lstrip("+-") == "inf":
            sign = "-" if text.startswith("-") else "+"
            if sign + "inf" != infinite:
                raise ValueError(f"{text!r} cannot be the {'lower' if infinite[0] == '-' else 'upper'} bound")
            return None
        try:
            return Decimal(text)
        except InvalidOperation as error:  # pragma: no cover - the pattern admits only numbers
            raise ValueError(f"invalid number {text!r}") from error

    def is_empty(self) -> bool:
        """Return whether no real number lies in the interval."""
        if self.lower is None or self.upper is None:
            return False
        if self.lower == self.upper:
            return not (self.lower_closed and self.upper_closed)
        return self.lower > self.upper

    def contains(self, value: Measure) -> bool:
        """Return whether ``value`` lies in the interval (exact comparison)."""
        if self.lower is not None:
            side = value.compare(self.lower)
            if side < 0 or (side == 0 and not self.lower_closed):
                return False
        if self.upper is not None:
            side = value.compare(self.upper)
            if side > 0 or (side == 0 and not self.upper_closed):
                return False
        return True

    def __str__(self) -> str:
        low = "-inf" if self.lower is None else canonical_decimal(self.lower)
        high = "+inf" if self.upper is None else canonical_decimal(self.upper)
        return f"{'[' if self.lower_closed else '('}{low}, {high}{']' if self.upper_closed else ')'}"


@dataclass(frozen=True, slots=True)
class Points:
    """Points a band or category adds, with the reason code that explains them."""

    points: int
    reason_code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the canonical JSON form."""
        result: dict[str, Any] = {"points": self.points}
        if self.reason_code is not None:
            result["reason_code"] = self.reason_code
        return result


@dataclass(frozen=True, slots=True)
class Band:
    """One interval of a numeric factor and the points it adds."""

    interval: Interval
    award: Points

    def to_dict(self) -> dict[str, Any]:
        """Return the canonical JSON form."""
        return {"range": str(self.interval), **self.award.to_dict()}


@dataclass(frozen=True, slots=True)
class Match:
    """What one scorecard rule gives one application."""

    award: Points
    value: str


@dataclass(frozen=True, slots=True)
class BandRule:
    """A scorecard rule on a numeric factor: bands that partition the real line."""

    id: str
    factor: str
    bands: tuple[Band, ...]
    description: str | None = None

    def match(self, facts: ApplicationFacts) -> Match:
        """Return the band's points for ``facts``."""
        value = measure(self.factor, facts)
        for band in self.bands:
            if band.interval.contains(value):
                return Match(band.award, value.display())
        raise LookupError(f"rule {self.id!r}: no band contains {value.display()}")  # validated away

    def to_dict(self) -> dict[str, Any]:
        """Return the canonical JSON form."""
        result: dict[str, Any] = {
            "id": self.id,
            "factor": self.factor,
            "bands": [band.to_dict() for band in self.bands],
        }
        if self.description is not None:
            result["description"] = self.description
        return result


@dataclass(frozen=True, slots=True)
class CategoryRule:
    """A scorecard rule on a categorical factor: points per value, ``otherwise`` for the rest."""

    id: str
    factor: str
    categories: Mapping[str, Points]
    otherwise: Points | None = None
    description: str | None = None

    def award_for(self, value: str) -> Points:
        """Return the points for one value of the factor."""
        award = self.categories.get(value, self.otherwise)
        if award is None:
            raise LookupError(f"rule {self.id!r}: no points for {value!r}")  # validated away
        return award

    def match(self, facts: ApplicationFacts) -> Match:
        """Return the category's points for ``facts``."""
        value = category(self.factor, facts)
        return Match(self.award_for(value), value)

    def to_dict(self) -> dict[str, Any]:
        """Return the canonical JSON form."""
        result: dict[str, Any] = {
            "id": self.id,
            "factor": self.factor,
            "categories": {value: award.to_dict() for value, award in self.categories.items()},
        }
        if self.otherwise is not None:
            result["otherwise"] = self.otherwise.to_dict()
        if self.description is not None:
            result["description"] = self.description
        return result


ScoreRule = BandRule | CategoryRule


@dataclass(frozen=True, slots=True)
class Condition:
    """The ``when`` of a decision rule; every given part must hold (an empty one always holds)."""

    score_below: int | None = None
    score_at_least: int | None = None
    loan_purpose_in: frozenset[str] | None = None
    loan_purpose_not_in: frozenset[str] | None = None
    employment_status_in: frozenset[str] | None = None
    employment_status_not_in: frozenset[str] | None = None

    @property
    def is_catch_all(self) -> bool:
        """Return whether the condition has no parts."""
        return self == Condition()

    def matches(self, risk_score: int, loan_purpose: str, employment_status: str) -> bool:
        """Return whether an application with this score and these fields meets the condition."""
        if self.score_below is not None and not risk_score < self.score_below:
            return False
        if self.score_at_least is not None and not risk_score >= self.score_at_least:
            return False
        if self.loan_purpose_in is not None and loan_purpose not in self.loan_purpose_in:
            return False
        if self.loan_purpose_not_in is not None and loan_purpose in self.loan_purpose_not_in:
            return False
        if self.employment_status_in is not None and employment_status not in self.employment_status_in:
            return False
        return self.employment_status_not_in is None or employment_status not in self.employment_status_not_in

    def to_dict(self) -> dict[str, Any]:
        """Return the canonical JSON form (sets as sorted lists)."""
        result: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if value is not None:
                result[name] = sorted(value) if isinstance(value, frozenset) else value
        return result

    def describe(self) -> str:
        """Return the condition in words, e.g. ``score < 60 and loan_purpose not in {...}``."""
        parts: list[str] = []
        if self.score_at_least is not None:
            parts.append(f"score >= {self.score_at_least}")
        if self.score_below is not None:
            parts.append(f"score < {self.score_below}")
        for name in ("loan_purpose", "employment_status"):
            for suffix, word in (("_in", "in"), ("_not_in", "not in")):
                values = getattr(self, name + suffix)
                if values is not None:
                    parts.append(f"{name} {word} {{{', '.join(sorted(values))}}}")
        return " and ".join(parts) or "always"


@dataclass(frozen=True, slots=True)
class DecisionRule:
    """One decision rule: when the condition holds, the outcome applies."""

    id: str
    outcome: RuleOutcome
    when: Condition
    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the canonical JSON form."""
        result: dict[str, Any] = {"id": self.id, "outcome": self.outcome}
        if not self.when.is_catch_all:
            result["when"] = self.when.to_dict()
        if self.description is not None:
            result["description"] = self.description
        return result


@dataclass(frozen=True, slots=True)
class ReviewSettings:
    """How the review queue treats what this policy refers: the deadline, escalation, which overrides need two."""

    deadline_days: int = DEFAULT_REVIEW_DEADLINE_DAYS
    escalation_days: int = DEFAULT_REVIEW_ESCALATION_DAYS
    second_person_for: tuple[RuleOutcome, ...] = DEFAULT_SECOND_PERSON_FOR

    def to_dict(self) -> dict[str, Any]:
        """Return the canonical JSON form."""
        return {
            "deadline_days": self.deadline_days,
            "escalation_days": self.escalation_days,
            "second_person_for": sorted(self.second_person_for),
        }


@dataclass(frozen=True)
class Policy:
    """A validated credit policy: a scorecard and ordered decision rules."""

    name: str
    version: str
    scorecard: tuple[ScoreRule, ...]
    decision: tuple[DecisionRule, ...]
    description: str | None = None
    rounding_step: Decimal = DEFAULT_ROUNDING_STEP
    # The review queue's settings; None for a policy without them (its referrals get the defaults).
    review: ReviewSettings | None = None
    source: str | None = field(default=None, compare=False)

    @property
    def review_settings(self) -> ReviewSettings:
        """The review settings in force: the policy's own, else the defaults."""
        return self.review or ReviewSettings()

    def to_dict(self) -> dict[str, Any]:
        """Return the canonical JSON form, the input of the content hash."""
        result: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "scorecard": [rule.to_dict() for rule in self.scorecard],
            "decision": [rule.to_dict() for rule in self.decision],
        }
        if self.description is not None:
            result["description"] = self.description
        # Only when set to something else, so that policies written before the setting keep their hash.
        if self.rounding_step != DEFAULT_ROUNDING_STEP:
            result["rounding_step"] = canonical_decimal(self.rounding_step)
        if self.review is not None:
            result["review"] = self.review.to_dict()
        return result

    @property
    def content_hash(self) -> str:
        """Return the sha256 of the canonical JSON form, in hex."""
        cached: str | None = self.__dict__.get("_content_hash")
        if cached is None:
            canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            cached = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
            object.__setattr__(self, "_content_hash", cached)
        return cached

    def __hash__(self) -> int:
        return hash(self.content_hash)

    def identity(self) -> dict[str, str]:
        """Return name, version and hash, the policy's identity recorded with each decision."""
        return {"name": self.name, "version": self.version, "hash": self.content_hash}
