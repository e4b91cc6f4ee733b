"""The application facts a credit policy reads, and the factors derived from them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow
from typing import Any, Final

EMPLOYMENT_STATUSES: Final = ("employed", "self-employed", "unemployed", "retired", "student")
LOAN_PURPOSES: Final = (
    "business",
    "education",
    "debt_consolidation",
    "home_improvement",
    "auto",
    "medical",
    "personal",
    "other",
)

#: Factors scored with numeric bands.
NUMERIC_FACTORS: Final = ("credit_score", "debt_to_income", "loan_to_income")
#: Factors scored with categories, and the values each can take.
CATEGORICAL_FACTORS: Final[Mapping[str, tuple[str, ...]]] = {
    "employment_status": EMPLOYMENT_STATUSES,
    "loan_purpose": LOAN_PURPOSES,
}
FACTORS: Final = NUMERIC_FACTORS + tuple(CATEGORICAL_FACTORS)
#: The ratio factors, each the fact it divides by monthly income.
RATIO_NUMERATORS: Final[Mapping[str, str]] = {"debt_to_income": "monthly_debt", "loan_to_income": "loan_amount"}
#: The facts an applicant can act on and a lender may use, for "what would change the answer": the amount
#: asked for and the monthly debt (paid down). Credit score, employment and purpose are never suggested.
ACTIONABLE_FACTS: Final = ("loan_amount", "monthly_debt")

_RATIO_PLACES: Final = Decimal("0.0001")
# Wide enough that comparing any money amount with any policy bound is exact; Inexact would be a bug.
_EXACT: Final = Context(prec=200, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
_DISPLAY: Final = Context(prec=50)


def _money(name: str, value: object) -> Decimal:
    """Return ``value`` as a finite Decimal; floats are refused, money is never binary."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise TypeError(f"{name} must be a Decimal, not {type(value).__name__}")
    result = Decimal(value)
    if not result.is_finite():
        raise ValueError(f"{name} must be finite, got {value}")
    return result


@dataclass(frozen=True, slots=True)
class ApplicationFacts:
    """What the policy needs to know about one loan application."""

    credit_score: int
    loan_amount: Decimal
    monthly_income: Decimal
    monthly_debt: Decimal
    employment_status: str
    loan_purpose: str

    def __post_init__(self) -> None:
        if isinstance(self.credit_score, bool) or not isinstance(self.credit_score, int):
            raise TypeError("credit_score must be an int")
        for name in ("loan_amount", "monthly_income", "monthly_debt"):
            object.__setattr__(self, name, _money(name, getattr(self, name)))
        if self.monthly_income <= 0:
            raise ValueError("monthly_income must be greater than zero")
        if self.loan_amount < 0:
            raise ValueError("loan_amount must not be negative")
        if self.monthly_debt < 0:
            raise ValueError("monthly_debt must not be negative")
        if self.employment_status not in EMPLOYMENT_STATUSES:
            raise ValueError(f"unknown employment_status {self.employment_status!r}")
        if self.loan_purpose not in LOAN_PURPOSES:
            raise ValueError(f"unknown loan_purpose {self.loan_purpose!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ApplicationFacts:
        """Build facts from a mapping (an event or a database row); bad data raises ValueError or TypeError."""

        def field(name: str) -> Any:
            try:
                return data[name]
            except KeyError:
                raise ValueError(f"{name} is missing") from None

        def money(name: str) -> Decimal:
            value = field(name)
            if not isinstance(value, str):
                return _money(name, value)
            try:
                return Decimal(value)
            except InvalidOperation:
                raise ValueError(f"{name} is not a number: {value!r}") from None

        credit_score = field("credit_score")
        if isinstance(credit_score, bool) or not isinstance(credit_score, (int, str)):
            raise TypeError("credit_score must be an int")
        return cls(
            credit_score=int(credit_score),
            loan_amount=money("loan_amount"),
            monthly_income=money("monthly_income"),
            monthly_debt=money("monthly_debt"),
            employment_status=str(field("employment_status")),
            loan_purpose=str(field("loan_purpose")),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the facts as JSON-ready values (Decimals as strings)."""
        return {
            "credit_score": self.credit_score,
            "loan_amount": str(self.loan_amount),
            "monthly_income": str(self.monthly_income),
            "monthly_debt": str(self.monthly_debt),
            "employment_status": self.employment_status,
            "loan_purpose": self.loan_purpose,
        }


@dataclass(frozen=True, slots=True)
class Measure:
    """A numeric factor's value, kept as an exact fraction ``numerator / denominator``."""

    numerator: Decimal
    denominator: Decimal = Decimal(1)
    is_ratio: bool = False

    def compare(self, bound: Decimal) -> int:
        """Return -1, 0 or 1 as the value is below, at or above ``bound`` (exact, no division)."""
        difference = _EXACT.subtract(self.numerator, _EXACT.multiply(bound, self.denominator))
        return (difference > 0) - (difference < 0)

    def display(self) -> str:
        """Return the value as shown to people: an integer, or a ratio with four decimals."""
        if not self.is_ratio:
            return str(self.numerator)
        return str(_DISPLAY.divide(self.numerator, self.denominator).quantize(_RATIO_PLACES, context=_DISPLAY))


def measure(factor: str, facts: ApplicationFacts) -> Measure:
    """Return the value of numeric ``factor`` for ``facts``."""
    if factor == "credit_score":
        return Measure(Decimal(facts.credit_score))
    numerator = RATIO_NUMERATORS.get(factor)
    if numerator is not None:
        return Measure(getattr(facts, numerator), facts.monthly_income, is_ratio=True)
    raise KeyError(f"unknown numeric factor {factor!r}")


def category(factor: str, facts: ApplicationFacts) -> str:
    """Return the value of categorical ``factor`` for ``facts``."""
    if factor == "employment_status":
        return facts.employment_status
    if factor == "loan_purpose":
        return facts.loan_purpose
    raise KeyError(f"unknown categorical factor {factor!r}")
