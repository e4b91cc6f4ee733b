"""Adverse-action notices rendered from fixed inputs: the wording pinned by golden files for three cases, and the
rules for what a notice holds (reasons, score disclosure, counteroffer) and when one is due.

The golden files are tests/golden/notices/*.html. After a deliberate change of the template or the wording,
regenerate them with `FASTLOANS_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_notices.py` and review the diff.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fastloans.policy import ApplicationFacts
from fastloans.policy.engine import principal_reasons, score
from fastloans.policy.loader import load_default_policy
from fastloans.policy.reasons import reason_text
from fastloans_gateway.api.routes.notices import HTML, PDF, preferred_media_type
from fastloans_gateway.notices.content import (
    content_hash,
    content_of,
    counteroffer_of,
    missing_settings,
    reason_texts,
    render_html,
    template_version,
)
from fastloans_gateway.notices.service import NoticeUnavailable, check_notice_due

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "notices"
UPDATE = os.environ.get("FASTLOANS_UPDATE_GOLDEN") == "1"
ISSUED = date(2026, 12, 2)
SETTINGS = {
    "creditor_name": "Acme Lending, Inc.",
    "address": "100 Main Street\nSpringfield, IL 62701",
    "supervising_agency": "Consumer Financial Protection Bureau\n1700 G Street NW, Washington, DC 20552",
    "contact": "1-800-555-0100 or help@acme-lending.example",
    "score_source": None,
}


def decision(facts: dict[str, Any], *, outcome: str, counteroffer: dict[str, Any] | None = None) -> dict[str, Any]:
    """A decided application's row (application, decision, settings), its reasons scored by the seed policy."""
    application = ApplicationFacts.from_mapping(facts)
    result = score(load_default_policy(), application)
    return {
        "application_id": uuid.UUID("5b0f7e44-2a0c-4d6e-9f13-7c2b8a1d0e55"),
        "decision_id": 4711,
        "status": outcome,
        "revision": 1,
        "applicant_name": "Ada <Lovelace> & Co",
        "credit_score": application.credit_score,
        "loan_amount": application.loan_amount,
        "submitted_at": datetime(2026, 11, 30, 23, 59, tzinfo=UTC),
        "decided_at": datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC),
        "outcome": outcome,
        "policy_version": "seed-1",
        "reasons": {
            "contributions": [item.to_dict() for item in result.contributions],
            "principal_reasons": [item.to_dict() for item in principal_reasons(result.contributions)],
        },
        "counteroffer": counteroffer,
    }


def facts(**values: Any) -> dict[str, Any]:
    base = {
        "credit_score": 620,
        "loan_amount": Decimal("3000.00"),
        "monthly_income": Decimal("5000.00"),
        "monthly_debt": Decimal("2000.00"),
        "employment_status": "self-employed",
        "loan_purpose": "personal",
    }
    return {**base, **values}


OFFER = {"loan_amount": "1500.00", "risk_score": 50, "outcome": "approved", "binding_rule": "loan-to-income"}
CASES = {
    # Score 70 (credit score, debt, self-employment, amount): rejected; 1,500.00 would be approved.
    "rejected-with-offer": (decision(facts(), outcome="rejected", counteroffer=OFFER), SETTINGS),
    # Five scored reasons, no amount approved: the four that weigh most are given.
    "rejected-without-offer": (
        decision(
            facts(
                credit_score=550,
                loan_amount=Decimal("1000.00"),
                monthly_income=Decimal("2000.00"),
                monthly_debt=Decimal("1000.00"),
                employment_status="unemployed",
                loan_purpose="business",
            ),
            outcome="rejected",
        ),
        SETTINGS,
    ),
    # Referred for review; the score came from a named consumer reporting agency (its rights paragraph).
    "referred": (
        decision(
            facts(
                credit_score=720,
                monthly_debt=Decimal("1500.00"),
                loan_amount=Decimal("1000.00"),
                employment_status="employed",
                loan_purpose="education",
            ),
            outcome="referred",
        ),
        {**SETTINGS, "score_source": "Example Credit Bureau\nP.O. Box 1000, Anytown, TX 75001\n1-800-555-0199"},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_wording_matches_the_golden_file(case: str) -> None:
    row, settings = CASES[case]
    html = render_html(content_of(row, settings, issued_on=ISSUED))
    golden = GOLDEN / f"{case}.html"
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(html, encoding="utf-8")
    assert golden.exists(), f"no golden file {golden}: run with FASTLOANS_UPDATE_GOLDEN=1 and review it"
    assert html == golden.read_text(encoding="utf-8"), (
        f"the notice for {case} changed: if deliberate, regenerate with FASTLOANS_UPDATE_GOLDEN=1 and review the diff"
    )


def words(row: dict[str, Any], settings: dict[str, Any]) -> str:
    """The rendered notice with its whitespace collapsed (the template wraps its sentences)."""
    return " ".join(render_html(content_of(row, settings, issued_on=ISSUED)).split())


def test_each_case_states_what_the_regulations_require() -> None:
    offer = words(*CASES["rejected-with-offer"])
    assert "a loan of <strong>$1,500.00</strong>" in offer and "terms you requested, a loan of $3,000.00" in offer
    for code in ("CREDIT_SCORE_LOW", "DEBT_TO_INCOME_HIGH", "LOAN_TO_INCOME_EXCESSIVE", "EMPLOYMENT_SELF_EMPLOYED"):
        assert reason_text(code) in offer
    assert "Your credit score: 620" in offer and "from a low of 300 to a high of 850" in offer
    assert "Equal Credit Opportunity Act" in offer and "Consumer Financial Protection Bureau" in offer
    assert "Acme Lending, Inc." in offer and "100 Main Street" in offer
    # Values are escaped: an applicant's name is text, never markup.
    assert "Ada &lt;Lovelace&gt; &amp; Co" in offer and "<Lovelace>" not in offer
    without = words(*CASES["rejected-without-offer"])
    assert "We have declined your application for a loan of $1,000.00." in without and "we can" not in without
    assert reason_text("LOAN_TO_INCOME_HIGH") not in without  # the fifth (tied, later in the scorecard): left out
    referred = words(*CASES["referred"])
    assert "referred to our credit staff" in referred and "Source of the score: Example Credit Bureau</li>" in referred
    assert "P.O. Box 1000, Anytown, TX 75001<br>1-800-555-0199" in referred and "did not make this decision" in referred


def test_up_to_four_reasons_in_the_catalogues_wording() -> None:
    raw = [{"reason_code": code} for code in ("CREDIT_SCORE_LOW", "DEBT_TO_INCOME_HIGH", "EMPLOYMENT_NONE")]
    raw += [
        {"reason_code": "CREDIT_SCORE_LOW"},
        {"reason_code": "PURPOSE_MEDICAL"},
        {"reason_code": "EMPLOYMENT_STUDENT"},
    ]
    assert reason_texts(raw) == tuple(
        reason_text(code) for code in ("CREDIT_SCORE_LOW", "DEBT_TO_INCOME_HIGH", "EMPLOYMENT_NONE", "PURPOSE_MEDICAL")
    )
    assert reason_texts([{"reason_code": "RETIRED_CODE", "text": "As stored"}]) == ("As stored",)


def test_no_score_disclosure_when_no_score_rule_added_points() -> None:
    row = decision(facts(credit_score=810), outcome="rejected")
    assert content_of(row, SETTINGS, issued_on=ISSUED).score is None
    assert "Your credit score" not in render_html(content_of(row, SETTINGS, issued_on=ISSUED))


def test_the_counteroffer_only_when_an_amount_is_approved() -> None:
    assert counteroffer_of(None) is None and counteroffer_of({"loan_amount": None, "outcome": "approved"}) is None
    assert counteroffer_of('{"loan_amount": "1500.00", "outcome": "approved"}').loan_amount == Decimal("1500.00")  # type: ignore[union-attr]


def test_the_template_version_follows_the_template_and_the_hash_the_html() -> None:
    series, digest = template_version().split(".")
    assert series and len(digest) == 12
    html = render_html(content_of(CASES["referred"][0], SETTINGS, issued_on=ISSUED))
    assert template_version() in html and len(content_hash(html)) == 64 and content_hash(html) == content_hash(html)


def test_notices_are_due_only_for_decided_adverse_applications_with_settings() -> None:
    row = {**CASES["rejected-with-offer"][0], **SETTINGS}
    check_notice_due(row)  # type: ignore[arg-type]
    for changes, reason in (
        ({"status": "approved", "outcome": "approved"}, "approved"),
        ({"status": "pending", "decision_id": None}, "pending"),
        ({"status": "withdrawn"}, "withdrawn"),
        ({"creditor_name": None}, "settings"),
        ({"contact": "  "}, "settings"),
    ):
        with pytest.raises(NoticeUnavailable) as raised:
            check_notice_due({**row, **changes})  # type: ignore[arg-type]
        assert raised.value.reason == reason
    assert missing_settings(None) == ["creditor_name", "address", "supervising_agency", "contact"]
    assert missing_settings({**SETTINGS, "address": ""}) == ["address"]


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, HTML),
        ("", HTML),
        ("*/*", HTML),
        ("application/pdf", PDF),
        ("text/html,application/pdf", HTML),
        ("text/html;q=0.5, application/pdf", PDF),
        ("application/*", PDF),
        ("application/pdf;q=0, */*", HTML),
        ("application/json", None),
        ("text/html;q=0", None),
    ],
)
def test_accept_chooses_html_or_pdf(accept: str | None, expected: str | None) -> None:
    assert preferred_media_type(accept) == expected
