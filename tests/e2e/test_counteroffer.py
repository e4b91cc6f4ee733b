"""A rejected application's counteroffer and "what would change", decided by the running services."""

from __future__ import annotations

import uuid

import httpx

from fastloans.db import json_value
from tests.e2e.test_pipeline import APPROVED, REJECTED, URL, decided, submit

# 10 (credit 720) + 10 (debt 0.3) + 10 (self-employed) + 10 (business) + 20 (loan 1.25 of income) = 60: not
# below 60, rejected. At 2,000.00 (0.5 of income) the loan adds 10: 50, approved; 2,100.00 adds 20 again.
# Debt down to 1,120.00 (0.28) adds nothing: 50, approved.
OFFERED = {
    **APPROVED,
    "credit_score": 720,
    "loan_amount": "5000.00",
    "monthly_income": "4000.00",
    "monthly_debt": "1200.00",
    "employment_status": "self-employed",
    "loan_purpose": "business",
}


async def test_a_rejected_application_has_its_counteroffer_on_get(client: httpx.AsyncClient, pg) -> None:
    created = await submit(client, OFFERED)
    assert created["counteroffer"] is None and created["what_would_change"] is None
    body = await decided(client, created["id"])
    assert (body["status"], body["risk_score"]) == ("rejected", 60)
    assert body["counteroffer"] == {
        "loan_amount": "2000.00",
        "risk_score": 50,
        "outcome": "approved",
        "binding_rule": "loan-to-income",
    }
    assert body["what_would_change"] == [
        {"fact": "loan_amount", "current": "5000.00", "suggested": "2000.00", "change": "-3000.00", "risk_score": 50},
        {"fact": "monthly_debt", "current": "1200.00", "suggested": "1120.00", "change": "-80.00", "risk_score": 50},
    ]
    row = await pg.fetchrow(
        "SELECT counteroffer, what_would_change FROM loan_decisions WHERE application_id = $1 AND revision = 1",
        uuid.UUID(created["id"]),
    )
    assert row is not None
    assert json_value(row["counteroffer"]) == body["counteroffer"]
    assert json_value(row["what_would_change"]) == body["what_would_change"]

    # Taking the offer: a new revision at the offered amount is approved, and carries no counteroffer.
    response = await client.patch(f"{URL}/{created['id']}", json={"loan_amount": "2000.00"})
    assert response.status_code == 202, response.text
    assert response.json()["counteroffer"] is None
    revised = await decided(client, created["id"], revision=2)
    assert (revised["status"], revised["risk_score"]) == ("approved", 50)
    assert revised["counteroffer"] is None and revised["what_would_change"] is None


async def test_no_amount_is_offered_when_the_other_facts_alone_refuse(client: httpx.AsyncClient) -> None:
    # 30 (credit 580) + 20 (unemployed) + 15 (debt consolidation) = 65 before the amount or the debt count.
    body = await decided(client, (await submit(client, REJECTED))["id"])
    assert body["status"] == "rejected"
    assert body["counteroffer"] is None and body["what_would_change"] == []
