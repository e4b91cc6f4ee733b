"""Kafka down while clients submit: every 202 is kept in the outbox and decided once Kafka is back."""

from __future__ import annotations

import asyncio

import httpx

from tests.e2e.test_pipeline import APPROVED, decided, submit


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
