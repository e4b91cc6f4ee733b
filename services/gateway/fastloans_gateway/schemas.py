"""Request and response bodies of the loan application API."""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict

from fastloans.db import json_value
from fastloans.policy import EMPLOYMENT_STATUSES, LOAN_PURPOSES

CREDIT_SCORE_MIN = 300
CREDIT_SCORE_MAX = 850
MONEY_MAX = Decimal("999999999999.99")
CENT = Decimal("0.01")
NAME_MAX = 200
# A decimal written the way JSON writes numbers, in ASCII digits only: Python's Decimal alone would also take
# "1_000", Arabic-Indic or full-width digits. The exponent is bounded so Decimal can always represent it.
MONEY_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
# Format characters a name may need: the joiners of Persian, Indic and emoji sequences. Every other format
# character (bidirectional overrides and isolates, zero-width spaces, byte order marks, ...) is refused.
NAME_JOINERS = frozenset("\u200c\u200d")
# Letters that render as nothing (fillers); a name needs at least one letter that is not one of these.
BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
REFUSED_CATEGORIES = {
    "Cc": "control characters (such as line breaks, tabs, NUL or escape sequences)",
    "Cf": "invisible formatting characters (such as bidirectional overrides or zero-width spaces)",
    "Cs": "unpaired surrogates",
    "Zl": "line separators",
    "Zp": "paragraph separators",
}


def _money_text(value: object) -> object:
    if isinstance(value, str):
        text = value.strip(" \t\r\n")
        if not MONEY_TEXT.fullmatch(text):
            raise ValueError('must be a decimal number in ASCII digits, such as "2000.00"')
        return text
    return value


def _canonical_money(value: Decimal) -> Decimal:
    # Two places always, and no negative zero: the 202, a later GET and the idempotency check then agree.
    return value.quantize(CENT).copy_abs() if value == 0 else value.quantize(CENT)


def _nfc(value: object) -> object:
    return unicodedata.normalize("NFC", value) if isinstance(value, str) else value


def check_name(value: str) -> str:
    """`value` if it is a printable name (at least one letter, no control or format characters), else ValueError."""
    has_letter = False
    for char in value:
        category = unicodedata.category(char)
        if category in REFUSED_CATEGORIES and char not in NAME_JOINERS:
            raise ValueError(f"must not contain {REFUSED_CATEGORIES[category]}; found U+{ord(char):04X}")
        if category[0] == "L" and char not in BLANK_LETTERS:
            has_letter = True
    if not has_letter:
        raise ValueError("must contain at least one letter")
    return value


Money = Annotated[
    Decimal,
    BeforeValidator(_money_text),
    Field(
        max_digits=14,
        decimal_places=2,
        le=MONEY_MAX,
        allow_inf_nan=False,
        description="Amount in the loan's currency, at most two decimal places; a JSON number or a string "
        "of ASCII digits.",
    ),
    AfterValidator(_canonical_money),
]
PositiveMoney = Annotated[Money, Field(gt=0)]
NonNegativeMoney = Annotated[Money, Field(ge=0)]
CreditScore = Annotated[
    StrictInt, Field(ge=CREDIT_SCORE_MIN, le=CREDIT_SCORE_MAX, description="FICO-style score, 300 to 850.")
]
ApplicantName = Annotated[
    str,
    BeforeValidator(_nfc),
    Field(
        min_length=1,
        max_length=NAME_MAX,
        description="The applicant's full name (Unicode NFC): at least one letter, no control or invisible "
        "formatting characters.",
    ),
    AfterValidator(check_name),
]

EMPLOYMENT_HELP = "One of: " + ", ".join(sorted(EMPLOYMENT_STATUSES)) + " (case-insensitive)."
PURPOSE_HELP = "One of: " + ", ".join(sorted(LOAN_PURPOSES)) + " (case-insensitive)."


def _choice(value: object, allowed: tuple[str, ...] | frozenset[str], what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, one of: {', '.join(sorted(allowed))}")
    normalised = value.strip().lower()
    for candidate in (normalised, normalised.replace("_", "-"), normalised.replace("-", "_").replace(" ", "_")):
        if candidate in allowed:
            return candidate
    raise ValueError(f"unknown {what}; use one of: {', '.join(sorted(allowed))}")


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("employment_status", mode="before", check_fields=False)
    @classmethod
    def _employment(cls, value: object) -> object:
        return value if value is None else _choice(value, EMPLOYMENT_STATUSES, "employment status")

    @field_validator("loan_purpose", mode="before", check_fields=False)
    @classmethod
    def _purpose(cls, value: object) -> object:
        return value if value is None else _choice(value, LOAN_PURPOSES, "loan purpose")

    @field_validator("loan_amount", "monthly_income", "monthly_debt", mode="before", check_fields=False)
    @classmethod
    def _money(cls, value: object) -> object:
        if isinstance(value, bool) or (value is not None and not isinstance(value, (int, str, Decimal))):
            raise ValueError("must be a number or a numeric string")
        return value


EXAMPLE: JsonDict = {
    "applicant_name": "Ada Lovelace",
    "credit_score": 750,
    "loan_amount": "2000.00",
    "loan_purpose": "home_improvement",
    "monthly_income": "5000.00",
    "monthly_debt": "1000.00",
    "employment_status": "employed",
}


class LoanApplicationCreate(_Fields):
    """A new loan application."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [EXAMPLE]})

    applicant_name: ApplicantName
    credit_score: CreditScore
    loan_amount: PositiveMoney
    loan_purpose: str = Field(description=PURPOSE_HELP)
    monthly_income: PositiveMoney
    monthly_debt: NonNegativeMoney
    employment_status: str = Field(description=EMPLOYMENT_HELP)


def _changes_schema(schema: dict[str, Any]) -> None:
    for field in schema["properties"].values():
        field.pop("default", None)
    schema["examples"] = [{"monthly_debt": "500.00"}]


class LoanApplicationUpdate(_Fields):
    """Changes to an application's data; the application is decided again as a new revision."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra=_changes_schema)

    # Every field is optional but none is nullable: the default None only marks "not given", so the schema
    # shows no default (null is not a value these fields accept).
    applicant_name: ApplicantName = None  # type: ignore[assignment]
    credit_score: CreditScore = None  # type: ignore[assignment]
    loan_amount: PositiveMoney = None  # type: ignore[assignment]
    loan_purpose: str = Field(None, description=PURPOSE_HELP)  # type: ignore[assignment]
    monthly_income: PositiveMoney = None  # type: ignore[assignment]
    monthly_debt: NonNegativeMoney = None  # type: ignore[assignment]
    employment_status: str = Field(None, description=EMPLOYMENT_HELP)  # type: ignore[assignment]

    @model_validator(mode="after")
    def _something(self) -> LoanApplicationUpdate:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        return self


class Reason(BaseModel):
    """A scorecard rule that added points, in plain language."""

    reason_code: str
    text: str
    points: int
    factor: str
    value: str


Status = Literal["pending", "approved", "rejected", "referred"]


class Counteroffer(BaseModel):
    """The largest amount, on the lender's rounding step and at most the one asked for, the policy approves."""

    loan_amount: str = Field(description="Decimal string, two places.")
    risk_score: int = Field(description="The risk score at that amount, every other fact unchanged.")
    outcome: Literal["approved"]
    binding_rule: str = Field(description="The scorecard rule that refuses the next step up.")


class SuggestedChange(BaseModel):
    """The smallest change of one fact the applicant can act on, all others unchanged, that would approve."""

    fact: Literal["loan_amount", "monthly_debt"]
    current: str = Field(description="Decimal string, two places.")
    suggested: str = Field(description="Decimal string, two places: the largest value that is approved.")
    change: str = Field(description="suggested - current, a negative decimal string.")
    risk_score: int


class ReviewReason(BaseModel):
    """A reason code a reviewer gave with their decision, with its catalogue text."""

    reason_code: str
    text: str


class LoanApplication(BaseModel):
    """An application and, once decided, its decision."""

    id: uuid.UUID
    status: Status
    revision: int
    applicant_name: str
    credit_score: int
    loan_amount: str = Field(description="Decimal string, two places.")
    loan_purpose: str
    monthly_income: str
    monthly_debt: str
    employment_status: str
    risk_score: int | None = Field(None, description="Sum of the points the policy's rules added.")
    is_approved: bool | None = None
    reasons: list[Reason] = Field(default_factory=list, description="Every rule that added points.")
    principal_reasons: list[Reason] = Field(
        default_factory=list, description="For adverse decisions: at most four principal reasons, ranked."
    )
    counteroffer: Counteroffer | None = Field(
        None, description="For adverse decisions: the amount the policy would approve instead; null if none is."
    )
    what_would_change: list[SuggestedChange] | None = Field(
        None,
        description="For adverse decisions: per actionable fact (loan amount, monthly debt), the smallest single "
        "change that would approve; empty when none would. Null until decided and for approvals.",
    )
    policy_version: str | None = None
    submitted_at: datetime = Field(description="When the current revision was submitted.")
    decided_at: datetime | None = None
    created_at: datetime
    decided_by: Literal["policy", "review"] | None = Field(
        None, description="Who made the current decision: the credit policy, or a reviewer (null until decided)."
    )
    review_case_id: uuid.UUID | None = Field(
        None, description="The review case of a referred revision (GET /api/v1/reviews/{id}); null otherwise."
    )
    review_reasons: list[ReviewReason] = Field(
        default_factory=list, description="The reason codes the reviewer gave, when a reviewer decided."
    )


class LoanApplicationPage(BaseModel):
    """One page of a tenant's applications, newest first."""

    items: list[LoanApplication]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null on the last.")


def render_application(row: Mapping[str, Any]) -> dict[str, Any]:
    """The API form (`LoanApplication`, JSON-ready) of a `loan_applications` row, without a model round trip.

    Built directly because it is on every request's path; `tests/unit/test_render.py` checks that it
    matches `LoanApplication`'s own serialisation field for field.
    """
    reasons = json_value(row["reasons"]) or {}
    decided_at = row["decided_at"]
    return {
        "id": str(row["id"]),
        "status": row["status"],
        "revision": row["revision"],
        "applicant_name": row["applicant_name"],
        "credit_score": row["credit_score"],
        "loan_amount": f"{row['loan_amount']:.2f}",
        "loan_purpose": row["loan_purpose"],
        "monthly_income": f"{row['monthly_income']:.2f}",
        "monthly_debt": f"{row['monthly_debt']:.2f}",
        "employment_status": row["employment_status"],
        "risk_score": row["risk_score"],
        "is_approved": row["is_approved"],
        "reasons": [_reason(r) for r in reasons.get("contributions", ())],
        "principal_reasons": [_reason(r) for r in reasons.get("principal_reasons", ())],
        "counteroffer": json_value(row["counteroffer"]),
        "what_would_change": json_value(row["what_would_change"]),
        "policy_version": row["policy_version"],
        "submitted_at": _timestamp(row["submitted_at"]),
        "decided_at": None if decided_at is None else _timestamp(decided_at),
        "created_at": _timestamp(row["created_at"]),
        "decided_by": row.get("decided_by"),
        "review_case_id": None if (case := row.get("review_case_id")) is None else str(case),
        "review_reasons": [
            {"reason_code": r["reason_code"], "text": r.get("text", "")}
            for r in json_value(row.get("review_reasons")) or ()
        ],
    }


def _timestamp(value: datetime) -> str:
    # pydantic's JSON form of an aware datetime: ISO 8601, "Z" for UTC, microseconds only when non-zero.
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _reason(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "reason_code": raw["reason_code"],
        "text": raw.get("text", ""),
        "points": raw["points"],
        "factor": raw["factor"],
        "value": str(raw["value"]),
    }
