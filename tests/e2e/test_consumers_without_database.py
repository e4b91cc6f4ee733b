"""Risk and approval need Kafka only: with no database configured, or one that never answers, they become
ready and decide applications; the recorder still checks its database."""

from __future__ import annotations

import asyncio
import socket
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from fastloans import services as registry
from fastloans.events import ApplicationDecided, ApplicationSubmitted, Facts, Topic
from fastloans.kafka import create_topics, make_consumer, make_producer, send_all
from fastloans.settings import Settings

FACTS = Facts(
    credit_score=750,
    loan_amount="2000.00",
    monthly_income="5000.00",
    monthly_debt="1000.00",
    employment_status="employed",
    loan_purpose="home_improvement",
)


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("database", ["unset", "unreachable"])
async def test_risk_and_approval_decide_without_a_database(infra, database: str) -> None:
    """On topics of their own, both become ready without a database check and turn a submission into a decision."""
    from fastloans_dev.devstack.stack import ServiceSet
    from fastloans_dev.devstack.system import free_port

    run = uuid.uuid4().hex[:8]
    prefix = f"nodb-{run}."
    base = Settings(
        database_url=infra.postgres.primary_url,
        kafka_bootstrap_servers=infra.kafka.bootstrap_servers,
        kafka_topic_prefix=prefix,
        service_name="test-nodb",
    )
    await create_topics(base, partitions=1)
    extra = {"ENVIRONMENT": "test", "LOG_LEVEL": "INFO", "KAFKA_TOPIC_PREFIX": prefix}
    if database == "unreachable":
        extra["DATABASE_URL"] = f"postgresql://fastloans@127.0.0.1:{_closed_port()}/fastloans"
    fleet = ServiceSet(infra, extra_env=extra)
    decided = make_consumer(base, base.topic(Topic.DECIDED.value), group=f"nodb-reader-{run}")
    producer = make_producer(base)
    try:
        children = []
        for service in (registry.RISK, registry.APPROVAL):
            env_group = {"KAFKA_CONSUMER_GROUP": f"{service.group}-{run}"}
            fleet.extra_env = {**extra, **env_group}
            children.append(fleet.start(service.short, instance=f"{service.short}-nodb-{run}", port=free_port()))
        async with httpx.AsyncClient(timeout=10) as http:
            for child in children:
                await asyncio.to_thread(fleet.wait_ready, child, 90)
                ops = f"http://127.0.0.1:{child.ops_port}"  # type: ignore[attr-defined]
                ready = (await http.get(f"{ops}/readyz")).json()
                assert ready == {"status": "ready", "checks": {"kafka_partitions": True}}, child.name
                metrics = (await http.get(f"{ops}/metrics")).text
                assert "fastloans_db_pool_connections_in_use{" not in metrics, child.name

        await decided.start()
        await producer.start()
        event = ApplicationSubmitted(
            application_id=uuid.uuid4(), tenant_id=uuid.uuid4(), revision=1, submitted_at=datetime.now(UTC), facts=FACTS
        )
        await send_all(
            producer,
            [(base.topic(Topic.SUBMITTED.value), str(event.application_id).encode(), event.encode(), event.headers())],
        )
        decision = await asyncio.wait_for(_decision_for(decided, event.application_id), timeout=60)
        assert decision.outcome == "approved" and decision.risk_score == 20
        assert decision.policy.version == "seed-1"
        for child in children:
            assert child.running, f"{child.name} exited:\n{child.tail()}"
    finally:
        await producer.stop()
        await decided.stop()
        fleet.stop_all()


async def _decision_for(consumer, application_id: uuid.UUID) -> ApplicationDecided:
    """The first decision for the application read from the decided topic."""
    while True:
        for records in (await consumer.getmany(timeout_ms=1000)).values():
            for record in records:
                event = ApplicationDecided.decode(record.value)
                if event.application_id == application_id:
                    return event


def test_only_the_services_with_a_database_check_it(infra, services) -> None:
    """In the running pipeline, a consumer's /readyz lists the database exactly when the registry gives it one."""
    for service in registry.CONSUMERS:
        body = httpx.get(f"http://127.0.0.1:{infra.ports.services[service.short]}/readyz", timeout=10).json()
        expected = {"kafka_partitions": True} | ({"database": True} if service.database else {})
        assert body == {"status": "ready", "checks": expected}, service.short
