"""Outages while clients submit: Kafka down (every 202 is kept in the outbox and decided once Kafka is back), and
the primary restarting (an answer is a 202 or a 503 with Retry-After, never a 500)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import httpx

from fastloans.contracts import IDEMPOTENCY_KEY_HEADER
from tests.e2e.test_pipeline import APPROVED, URL, decided, submit


async def test_submissions_survive_a_kafka_outage(client: httpx.AsyncClient, infra, pg) -> None:
    broker = infra.kafka.nodes[0]
    broker.stop()
    try:
        accepted = [await submit(client, {**APPROVED, "credit_score": 700 + i}) for i in range(20)]
        await asyncio.sleep(1)
        pending = await pg.fetchval("SELECT count(*) FROM outbox")
        assert pending >= 1  # the relay cannot publish; rows wait in the outbox
        assert all(a["status"] == "pending" for a in accepted)
    finally:
        broker.start(infra.kafka._libs)
        broker.wait_listening()
    for application in accepted:
        body = await decided(client, application["id"])
        assert body["status"] == "approved"
    for _ in range(100):
        if await pg.fetchval("SELECT count(*) FROM outbox") == 0:
            break
        await asyncio.sleep(0.1)
    assert await pg.fetchval("SELECT count(*) FROM outbox") == 0


async def test_a_database_restart_answers_503_with_retry_after_never_500(client: httpx.AsyncClient, infra) -> None:
    """Submissions while the primary restarts: each is a 202 or a 503 with Retry-After, and a retry succeeds."""
    answers: Counter[int] = Counter()
    without_retry_after = 0
    loaded, restarted, recovered = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def submitter() -> None:
        nonlocal without_retry_after
        while not recovered.is_set():
            try:
                response = await client.post(URL, json=APPROVED, headers={IDEMPOTENCY_KEY_HEADER: str(uuid.uuid4())})
            except httpx.TransportError:
                answers[0] += 1
                continue
            answers[response.status_code] += 1
            if response.status_code == 503:
                without_retry_after += "retry-after" not in response.headers
                await asyncio.sleep(0.1)
            elif response.status_code == 202:
                if answers[202] >= 10:
                    loaded.set()
                if restarted.is_set():
                    recovered.set()

    submitters = [asyncio.create_task(submitter()) for _ in range(6)]
    try:
        await asyncio.wait_for(loaded.wait(), 30)  # the load is on before the restart
        await asyncio.to_thread(infra.postgres.primary.restart)
        restarted.set()
        await asyncio.wait_for(recovered.wait(), 60)
        await asyncio.gather(*submitters)
    finally:
        recovered.set()
        for task in submitters:
            task.cancel()
    assert answers[503] > 0, answers  # the restart was met
    assert set(answers) <= {202, 503}, answers
    assert without_retry_after == 0
