"""The gateway's direct rendering of an application row matches the documented `LoanApplication` model."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest

from fastloans_gateway.api.responses import json_response
from fastloans_gateway.schemas import LoanApplication, render_application

JSON_COLUMNS = ("reasons", "counteroffer", "what_would_change", "review_reasons")
SUBMITTED = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
REASONS = {
    "contributions": [
        {"reason_code": "R01", "text": "Credit score below 600", "points": 40, "factor": "credit_score", "value": 580},
        {"reason_code": "R07", "points": 10, "factor": "debt_to_income", "value": Decimal("0.41")},
    ],
    "principal_reasons": [
        {"reason_code": "R01", "text": "Credit score below 600", "points": 40, "factor": "credit_score", "value": 580},
    ],
}


def row(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": uuid.UUID("7d1f3a52-5c4e-4f0e-9b7a-1f6a0c2d9e11"),
        "tenant_id": uuid.uuid4(),
        "revision": 1,
        "status": "pending",
        "applicant_name": "Grace Hopper",
        "credit_score": 720,
        "loan_amount": Decimal("2000"),
        "loan_purpose": "car",
        "monthly_income": Decimal("5000.5"),
        "monthly_debt": Decimal("0"),
        "employment_status": "employed",
        "risk_score": None,
        "is_approved": None,
        "reasons": None,
        "counteroffer": None,
        "what_would_change": None,
        "policy_version": None,
        "submitted_at": SUBMITTED,
        "decided_at": None,
        "created_at": SUBMITTED.replace(microsecond=0),
    }
    base.update(overrides)
    return base


def model_form(values: dict[str, object]) -> dict[str, object]:
    """What pydantic writes for the same application (the reference)."""
    reasons = values["reasons"] or {}
    assert isinstance(reasons, dict)

    def reason(raw: dict[str, object]) -> dict[str, object]:
        return {**{"text": ""}, **raw, "value": str(raw["value"])}

    model = LoanApplication(
        **{
            k: v
            for k, v in values.items()
            if k not in {"tenant_id", "reasons", "loan_amount", "monthly_income", "monthly_debt"}
        },
        loan_amount=f"{values['loan_amount']:.2f}",
        monthly_income=f"{values['monthly_income']:.2f}",
        monthly_debt=f"{values['monthly_debt']:.2f}",
        reasons=[reason(r) for r in reasons.get("contributions", [])],
        principal_reasons=[reason(r) for r in reasons.get("principal_reasons", [])],
    )
    return orjson.loads(model.model_dump_json())


@pytest.mark.parametrize(
    "values",
    [
        row(),
        row(
            status="rejected",
            risk_score=55,
            is_approved=False,
            reasons=REASONS,
            counteroffer={"loan_amount": "900.00", "risk_score": 50, "outcome": "approved", "binding_rule": "lti"},
            what_would_change=orjson.dumps(
                [{"fact": "monthly_debt", "current": "1.00", "suggested": "0.50", "change": "-0.50", "risk_score": 5}]
            ).decode(),
            policy_version="2024.1",
            decided_at=SUBMITTED + timedelta(milliseconds=40),
        ),
        row(
            status="approved",
            risk_score=0,
            is_approved=True,
            reasons=orjson.dumps({"contributions": []}).decode(),
            policy_version="2024.1",
            decided_at=SUBMITTED.replace(microsecond=0),
        ),
        row(
            status="rejected",
            risk_score=60,
            is_approved=False,
            reasons=REASONS,
            policy_version="seed-with-review-1",
            decided_at=SUBMITTED + timedelta(days=2),
            decided_by="review",
            review_case_id=uuid.UUID("0c4b8a4e-8d2e-4f57-9c55-6a8f9f1b2c3d"),
            review_reasons=orjson.dumps([{"reason_code": "R01", "text": "Credit score below 600"}]).decode(),
        ),
    ],
    ids=["pending", "rejected-with-reasons", "approved-reasons-as-text", "decided-by-a-reviewer"],
)
def test_render_matches_the_model(values: dict[str, object]) -> None:
    # JSON columns may come back from the driver as text.
    expected = model_form(
        {
            name: orjson.loads(value) if name in JSON_COLUMNS and isinstance(value, str) else value
            for name, value in values.items()
        }
    )
    rendered = orjson.loads(json_response(render_application(values)).body)
    assert rendered == expected
    assert list(rendered) == list(LoanApplication.model_fields)


def test_money_is_two_places_and_times_are_utc_z() -> None:
    rendered = render_application(row(loan_amount=Decimal("1E+3"), monthly_debt=Decimal("12.3")))
    assert (rendered["loan_amount"], rendered["monthly_debt"]) == ("1000.00", "12.30")
    assert rendered["submitted_at"] == "2026-03-01T09:30:15.123456Z"
    assert rendered["created_at"] == "2026-03-01T09:30:15Z"


def test_non_utc_offsets_are_kept() -> None:
    local = SUBMITTED.astimezone(timezone(timedelta(hours=2)))
    assert render_application(row(submitted_at=local))["submitted_at"] == "2026-03-01T11:30:15.123456+02:00"
