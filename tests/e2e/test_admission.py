"""Admission control on the real stack: past a bound the gateway answers 503 with Retry-After at once, stores
nothing for those requests, and every 202 it gave is decided."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from fastloans.contracts import APPLICATIONS_PATH
from tests.conftest import extra_instances
from tests.e2e.test_pipeline import APPROVED, decided


def assert_refusal(response: httpx.Response, retry_after: str) -> None:
    """A refusal is a problem+json 503 that says nothing was stored and when to come back."""
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == retry_after
    assert response.headers["content-type"] == "application/problem+json"
    assert "nothing was stored" in response.json()["detail"]


async def test_past_the_in_flight_bound_submissions_are_refused_and_every_202_is_decided(
    infra: object, client: httpx.AsyncClient, tenant_key: str, pg
) -> None:
    # A linger makes submissions wait for their group commit, so a burst holds many slots at once.
    bounds = {"ADMISSION_MAX_IN_FLIGHT": "4", "ADMISSION_RETRY_AFTER_SECONDS": "2", "SUBMIT_LINGER_MS": "50"}
    with extra_instances(infra, "gateway", ["gateway-admission"], **bounds) as (child,):
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{child.port}", headers={"Authorization": f"Bearer {tenant_key}"}, timeout=30
        ) as bounded:
            before = await pg.fetchval("SELECT count(*) FROM loan_applications")
            responses = await asyncio.gather(*(bounded.post(APPLICATIONS_PATH, json=APPROVED) for _ in range(60)))
    statuses = Counter(response.status_code for response in responses)
    assert set(statuses) == {202, 503}, statuses
    for response in responses:
        if response.status_code == 503:
            assert_refusal(response, "2")
    accepted = [response.json()["id"] for response in responses if response.status_code == 202]
    # Exactly the accepted ones were stored (other tests may add theirs meanwhile: count only these ids).
    stored = await pg.fetchval("SELECT count(*) FROM loan_applications WHERE id = ANY($1::uuid[])", accepted)
    assert stored == len(accepted) and await pg.fetchval("SELECT count(*) FROM loan_applications") >= before
    for application_id in accepted:
        assert (await decided(client, application_id))["status"] == "approved"


async def test_past_the_outbox_bound_submissions_are_refused_until_the_backlog_drains(
    infra, client: httpx.AsyncClient, tenant_key: str
) -> None:
    bounds = {"ADMISSION_MAX_OUTBOX_BACKLOG": "5", "ADMISSION_SAMPLE_MS": "50"}
    broker = infra.kafka.nodes[0]
    with extra_instances(infra, "gateway", ["gateway-backlog"], **bounds) as (child,):
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{child.port}", headers={"Authorization": f"Bearer {tenant_key}"}, timeout=30
        ) as bounded:
            accepted: list[str] = []
            refused: httpx.Response | None = None
            broker.stop()  # the relay cannot publish: rows stay in the outbox
            try:
                for _ in range(100):
                    response = await bounded.post(APPLICATIONS_PATH, json=APPROVED)
                    if response.status_code == 503:
                        refused = response
                        break
                    assert response.status_code == 202, response.text
                    accepted.append(response.json()["id"])
                    await asyncio.sleep(0.06)  # a sample of the backlog between submissions
            finally:
                broker.start(infra.kafka._libs)
                broker.wait_listening()
            assert refused is not None, "never refused with Kafka down and an outbox bound of 5"
            assert_refusal(refused, "1")
            assert len(accepted) >= 5
            for application_id in accepted:
                assert (await decided(client, application_id))["status"] == "approved"
            # Once the outbox drained, the same gateway admits again by itself.
            for _ in range(100):
                response = await bounded.post(APPLICATIONS_PATH, json=APPROVED)
                if response.status_code == 202:
                    break
                assert_refusal(response, "1")
                await asyncio.sleep(0.1)
            else:
                pytest.fail("still refusing after the outbox drained")
