"""Submit → scored → decided → stored, through the four running services over the real Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from fastloans.contracts import APPLICATIONS_PATH
from fastloans.events import ApplicationDecided, Topic
from fastloans.kafka import make_producer, send_all

URL = APPLICATIONS_PATH

APPROVED = {
    "applicant_name": "Ada Lovelace",
    "credit_score": 750,
    "loan_amount": "2000.00",
    "loan_purpose": "home_improvement",
    "monthly_income": "5000.00",
    "monthly_debt": "1000.00",
    "employment_status": "employed",
}
# 30 (score < 600) + 30 (DTI 0.5) + 20 (unemployed) + 15 (debt consolidation) + 20 (LTI 2.0) = 115 → rejected
REJECTED = {
    "applicant_name": "Grace Hopper",
    "credit_score": 580,
    "loan_amount": "8000.00",
    "loan_purpose": "debt_consolidation",
    "monthly_income": "4000.00",
    "monthly_debt": "2000.00",
    "employment_status": "unemployed",
}


async def submit(client: httpx.AsyncClient, body: dict, **headers: str) -> dict:
    response = await client.post(URL, json=body, headers=headers)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"{URL}/{response.json()['id']}"
    return response.json()


async def decided(client: httpx.AsyncClient, application_id: str, revision: int = 1) -> dict:
    for _ in range(20):
        response = await client.get(f"{URL}/{application_id}", params={"wait": 5})
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] != "pending" and body["revision"] == revision:
            return body
    pytest.fail(f"application {application_id} revision {revision} was not decided")


async def test_approved_end_to_end(client: httpx.AsyncClient, pg) -> None:
    created = await submit(client, APPROVED)
    assert created["status"] == "pending" and created["revision"] == 1
    uuid.UUID(created["id"])
    body = await decided(client, created["id"])
    assert body["status"] == "approved" and body["is_approved"] is True
    assert body["risk_score"] == 20  # 10 (credit 750) + 10 (loan-to-income 0.4)
    assert {r["reason_code"]: r["points"] for r in body["reasons"]} == {
        "CREDIT_SCORE_BELOW_PRIME": 10,
        "LOAN_TO_INCOME_HIGH": 10,
    }
    assert body["principal_reasons"] == []
    assert body["policy_version"] == "seed-1"
    assert body["decided_at"] >= body["submitted_at"]
    history = await pg.fetch(
        "SELECT revision, outcome FROM loan_decisions WHERE application_id = $1", uuid.UUID(created["id"])
    )
    assert [(r["revision"], r["outcome"]) for r in history] == [(1, "approved")]


async def test_rejected_with_principal_reasons(client: httpx.AsyncClient) -> None:
    body = await decided(client, (await submit(client, REJECTED))["id"])
    assert body["status"] == "rejected" and body["is_approved"] is False
    assert body["risk_score"] == 115
    ranked = [(r["reason_code"], r["points"]) for r in body["principal_reasons"]]
    assert len(ranked) == 4 and [p for _, p in ranked] == sorted((p for _, p in ranked), reverse=True)
    assert ranked[0][1] == 30 and all(r["text"] for r in body["principal_reasons"])


@pytest.mark.parametrize(
    ("changes", "score", "status"),
    [
        # The original project's rules: each row is hand-computed from the handbook's seed policy.
        ({"credit_score": 820, "loan_amount": "1000.00"}, 0, "approved"),
        ({"credit_score": 650, "monthly_debt": "1800.00"}, 40, "approved"),  # 20 + 10 (DTI exactly .36) + 10
        ({"loan_purpose": "debt_consolidation", "monthly_debt": "1500.00"}, 45, "rejected"),  # 10+10+15+10
        ({"employment_status": "self-employed", "loan_purpose": "business", "loan_amount": "3000"}, 50, "approved"),
        ({"credit_score": 599, "monthly_debt": "2200.00"}, 70, "rejected"),  # 30 + 30 + 10
    ],
)
async def test_seed_policy_figures(client: httpx.AsyncClient, changes: dict, score: int, status: str) -> None:
    body = await decided(client, (await submit(client, {**APPROVED, **changes}))["id"])
    assert (body["risk_score"], body["status"]) == (score, status)


async def test_patch_makes_a_new_revision_that_is_decided_again(client: httpx.AsyncClient, pg) -> None:
    created = await submit(client, APPROVED)
    await decided(client, created["id"])
    response = await client.patch(f"{URL}/{created['id']}", json={"credit_score": 550, "monthly_debt": "3000"})
    assert response.status_code == 202, response.text
    assert response.json()["revision"] == 2 and response.json()["status"] == "pending"
    body = await decided(client, created["id"], revision=2)
    assert body["status"] == "rejected" and body["credit_score"] == 550 and body["monthly_debt"] == "3000.00"
    history = await pg.fetch(
        "SELECT revision, outcome FROM loan_decisions WHERE application_id = $1 ORDER BY 1", uuid.UUID(created["id"])
    )
    assert [(r["revision"], r["outcome"]) for r in history] == [(1, "approved"), (2, "rejected")]


async def _publish_decision(infra, application: dict, revision: int, outcome: str) -> None:
    settings = infra.settings()
    event = ApplicationDecided(
        application_id=uuid.UUID(application["id"]),
        tenant_id=uuid.UUID(application["tenant_id"]),
        revision=revision,
        submitted_at=datetime.now(UTC),
        outcome=outcome,
        risk_score=99,
        contributions=[],
        principal_reasons=[],
        policy={"name": "late", "version": "late-1", "hash": "x"},
        decided_at=datetime.now(UTC),
    )
    producer = make_producer(settings)
    await producer.start()
    try:
        await send_all(
            producer,
            [(settings.topic(Topic.DECIDED.value), application["id"].encode(), event.encode(), event.headers())],
        )
    finally:
        await producer.stop()


async def _wait_for_decision_row(pg, application_id: str, revision: int) -> None:
    for _ in range(100):
        if await pg.fetchval(
            "SELECT count(*) FROM loan_decisions WHERE application_id = $1 AND revision = $2",
            uuid.UUID(application_id),
            revision,
        ):
            return
        await asyncio.sleep(0.05)
    pytest.fail("the decision never reached the history")


async def test_a_late_decision_for_an_old_revision_never_overwrites(client, infra, pg) -> None:
    created = await submit(client, APPROVED)
    await decided(client, created["id"])
    await client.patch(f"{URL}/{created['id']}", json={"credit_score": 810})
    current = await decided(client, created["id"], revision=2)
    tenant = await pg.fetchval("SELECT tenant_id::text FROM loan_applications WHERE id = $1", uuid.UUID(created["id"]))
    # A redelivered decision for revision 1, and a duplicate one for revision 2, arrive late.
    await _publish_decision(infra, {**created, "tenant_id": tenant}, 1, "rejected")
    await _publish_decision(infra, {**created, "tenant_id": tenant}, 2, "rejected")
    await asyncio.sleep(1.5)
    after = (await client.get(f"{URL}/{created['id']}")).json()
    assert (after["status"], after["risk_score"], after["revision"]) == (current["status"], current["risk_score"], 2)
    rows = await pg.fetch(
        "SELECT revision, outcome FROM loan_decisions WHERE application_id = $1 ORDER BY 1", uuid.UUID(created["id"])
    )
    assert [(r["revision"], r["outcome"]) for r in rows] == [(1, "approved"), (2, "approved")]


async def test_delete_withdraws_and_a_late_decision_does_not_resurrect(client, infra, pg) -> None:
    created = await submit(client, APPROVED)
    response = await client.delete(f"{URL}/{created['id']}")
    assert response.status_code == 204
    assert (await client.get(f"{URL}/{created['id']}")).status_code == 404
    assert (await client.delete(f"{URL}/{created['id']}")).status_code == 404
    assert (await client.patch(f"{URL}/{created['id']}", json={"credit_score": 700})).status_code == 404
    # The decision that was in flight lands in the history, but the application stays withdrawn.
    await _wait_for_decision_row(pg, created["id"], 1)
    tenant = await pg.fetchval("SELECT tenant_id::text FROM loan_applications WHERE id = $1", uuid.UUID(created["id"]))
    await _publish_decision(infra, {**created, "tenant_id": tenant}, 1, "approved")
    await asyncio.sleep(1)
    assert (
        await pg.fetchval("SELECT status FROM loan_applications WHERE id = $1", uuid.UUID(created["id"])) == "withdrawn"
    )
    assert (await client.get(f"{URL}/{created['id']}")).status_code == 404


async def test_poison_messages_go_to_the_dead_letter_topic_and_the_pipeline_keeps_going(client, infra) -> None:
    from fastloans.kafka import make_consumer

    settings = infra.settings()
    reader = make_consumer(
        settings, settings.topic(Topic.DLQ.value), group=f"dlq-{uuid.uuid4().hex[:6]}", auto_offset_reset="latest"
    )
    await reader.start()
    try:
        await reader.getmany(timeout_ms=500)  # join and settle at the end of the topic
        marker = uuid.uuid4().hex.encode()
        producer = make_producer(settings)
        await producer.start()
        try:
            await send_all(
                producer,
                [
                    (settings.topic(Topic.SUBMITTED.value), marker, b"{not json", []),
                    (settings.topic(Topic.SCORED.value), marker, b'{"type": "Other", "version": 1}', []),
                    (settings.topic(Topic.DECIDED.value), marker, b'{"type": "ApplicationDecided", "version": 1}', []),
                ],
            )
        finally:
            await producer.stop()
        body = await decided(client, (await submit(client, APPROVED))["id"])
        assert body["status"] == "approved"
        found: dict[bytes, dict] = {}
        for _ in range(30):
            batches = await reader.getmany(timeout_ms=500)
            for record in (r for rs in batches.values() for r in rs):
                if record.key == marker:
                    headers = dict(record.headers)
                    found[headers["dlq-source-topic"]] = headers
            if len(found) == 3:
                break
    finally:
        await reader.stop()
    assert set(found) == {settings.topic(t.value).encode() for t in (Topic.SUBMITTED, Topic.SCORED, Topic.DECIDED)}
    assert all(h["dlq-error"].startswith(b"EventDecodeError") for h in found.values())


async def test_money_is_exact_to_the_cent(client: httpx.AsyncClient, pg) -> None:
    body = {**APPROVED, "loan_amount": 1234567890.12, "monthly_income": "9999999999.99", "monthly_debt": 0.1}
    created = await submit(client, body)
    assert (created["loan_amount"], created["monthly_income"], created["monthly_debt"]) == (
        "1234567890.12",
        "9999999999.99",
        "0.10",
    )
    stored = await pg.fetchrow(
        "SELECT loan_amount, monthly_debt FROM loan_applications WHERE id = $1", uuid.UUID(created["id"])
    )
    assert stored["loan_amount"] == Decimal("1234567890.12") and stored["monthly_debt"] == Decimal("0.10")
