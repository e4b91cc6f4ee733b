"""What an adverse-action notice says, rendered from fixed inputs: no I/O, so the wording is pinned by golden files.

One HTML template (`templates/adverse_action.html`) is the notice; the PDF is made from the same HTML. The
template's version is derived from its text, so a stored notice always names the exact template it came from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any, Final, Literal

import jinja2

from fastloans.db import json_value
from fastloans.policy.engine import MAX_PRINCIPAL_REASONS
from fastloans.policy.reasons import reason_catalogue
from fastloans.tenants import REQUIRED_NOTICE_SETTINGS

TEMPLATE: Final = "adverse_action.html"
#: Bumped by hand when the notice's structure changes; the template's own hash follows every edit.
TEMPLATE_SERIES: Final = "1"
#: The range of the credit scores the API accepts, as the score disclosure states it.
SCORE_RANGE: Final = (300, 850)
#: The scorecard factor whose rules read the applicant's credit score.
SCORE_FACTOR: Final = "credit_score"

Outcome = Literal["rejected", "referred"]


@dataclass(frozen=True, slots=True)
class Creditor:
    """The tenant's notice settings: who the creditor is, where, who supervises it, how to reach it."""

    name: str
    address: str
    supervising_agency: str
    contact: str
    score_source: str | None = None


@dataclass(frozen=True, slots=True)
class Counteroffer:
    """The amount the same policy approves, offered in the combined notice."""

    loan_amount: Decimal


@dataclass(frozen=True, slots=True)
class ScoreDisclosure:
    """The credit-score disclosure: the score the policy used, when, where it came from, and its key factors."""

    score: int
    scored_on: date
    source: str | None
    key_factors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NoticeContent:
    """Everything a notice states, from the decision and the tenant's settings."""

    creditor: Creditor
    application_id: str
    decision_id: int
    applicant_name: str
    outcome: Outcome
    loan_amount: Decimal
    submitted_on: date
    decided_on: date
    issued_on: date
    policy_version: str
    reasons: tuple[str, ...]
    score: ScoreDisclosure | None
    counteroffer: Counteroffer | None


def reason_texts(raw: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """Up to four reasons in the catalogue's wording (the text stored with the decision for an unknown code)."""
    catalogue = reason_catalogue()
    texts = (catalogue.get(item["reason_code"], item.get("text") or item["reason_code"]) for item in raw)
    return tuple(dict.fromkeys(texts))[:MAX_PRINCIPAL_REASONS]


def counteroffer_of(raw: object) -> Counteroffer | None:
    """The offer in a decision's `counteroffer` column, or None when the policy approves no amount."""
    offer = json_value(raw)
    if not isinstance(offer, dict) or offer.get("loan_amount") is None or offer.get("outcome") != "approved":
        return None
    return Counteroffer(Decimal(str(offer["loan_amount"])))


def score_disclosure(
    contributions: Sequence[Mapping[str, Any]], *, score: int, scored_on: date, source: str | None
) -> ScoreDisclosure | None:
    """The disclosure when the policy used the credit score in this decision (a score rule added points), else None.

    The key factors are the scored reasons, the ones that weighed most first.
    """
    if not any(item.get("factor") == SCORE_FACTOR for item in contributions):
        return None
    ranked = sorted(enumerate(contributions), key=lambda pair: (-int(pair[1]["points"]), pair[0]))
    return ScoreDisclosure(score, scored_on, source, reason_texts([item for _, item in ranked]))


def missing_settings(settings: Mapping[str, Any] | None) -> list[str]:
    """The required notice settings a tenant has not set (all of them when it has none)."""
    return [name for name in REQUIRED_NOTICE_SETTINGS if not (settings and (settings.get(name) or "").strip())]


def content_of(decision: Mapping[str, Any], settings: Mapping[str, Any], *, issued_on: date) -> NoticeContent:
    """The notice for a decided application (one row: the application, its decision and the tenant's settings)."""
    reasons = json_value(decision["reasons"]) or {}
    submitted: datetime = decision["submitted_at"]
    creditor = Creditor(
        name=settings["creditor_name"],
        address=settings["address"],
        supervising_agency=settings["supervising_agency"],
        contact=settings["contact"],
        score_source=settings.get("score_source"),
    )
    return NoticeContent(
        creditor=creditor,
        application_id=str(decision["application_id"]),
        decision_id=int(decision["decision_id"]),
        applicant_name=decision["applicant_name"],
        outcome=decision["outcome"],
        loan_amount=decision["loan_amount"],
        submitted_on=submitted.date(),
        decided_on=decision["decided_at"].date(),
        issued_on=issued_on,
        policy_version=decision["policy_version"],
        reasons=reason_texts(reasons.get("principal_reasons", ())),
        score=score_disclosure(
            reasons.get("contributions", ()),
            score=decision["credit_score"],
            scored_on=submitted.date(),
            source=creditor.score_source,
        ),
        counteroffer=counteroffer_of(decision["counteroffer"]),
    )


def money(amount: Decimal) -> str:
    """An amount as the notice prints it: $1,900.00."""
    return f"${amount:,.2f}"


def long_date(day: date) -> str:
    """A date as the notice prints it: December 2, 2026."""
    return f"{day:%B} {day.day}, {day.year}"


def lines(text: str) -> list[str]:
    """A multi-line setting (an address) as its non-empty lines."""
    return [line.strip() for line in text.splitlines() if line.strip()]


@cache
def template_text() -> str:
    """The notice template's source."""
    return resources.files(__package__).joinpath("templates", TEMPLATE).read_text(encoding="utf-8")


@cache
def template_version() -> str:
    """The version a stored notice records: the series and the first 12 hex digits of the template's SHA-256."""
    return f"{TEMPLATE_SERIES}.{hashlib.sha256(template_text().encode('utf-8')).hexdigest()[:12]}"


@cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    environment.filters.update(money=money, long_date=long_date, lines=lines)
    return environment.from_string(template_text())


def render_html(content: NoticeContent) -> str:
    """The notice as an HTML document (every value escaped)."""
    return _template().render(notice=content, score_range=SCORE_RANGE, template_version=template_version())


def content_hash(html: str) -> str:
    """The SHA-256 (hex) of a rendered notice, as stored beside it."""
    return hashlib.sha256(html.encode("utf-8")).hexdigest()
