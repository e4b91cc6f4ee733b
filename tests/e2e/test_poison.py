"""Messages that can never be produced or stored, at each stage of the running pipeline: the bad one ends in the
dead-letter topic and the next application is still decided."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
from aiokafka import ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from fastloans.events import ApplicationDecided, ApplicationSubmitted, Facts, PolicyRef, Topic
from fastloans.kafka import connection_options, make_consumer, make_producer, send_all
from fastloans.tracecontext import MAX_TRACESTATE_CHARS
from tests.e2e.test_pipeline import APPROVED, URL, decided, submit
from tests.poison_messages import (
    FACTS,
    LATEST_POLICY_SQL,
    PARENT,
    decision_near_limit,
    event_ids,
    scored_with_huge_reason,
    submission_near_limit,
)


class Tail:
    """Reads a topic from its end onwards (started before the test produces anything)."""

    def __init__(self, settings, topic: Topic | str) -> None:
        name = settings.topic(topic.value) if isinstance(topic, Topic) else topic
        self.consumer = make_consumer(settings, name, group=f"tail-{uuid.uuid4().hex[:8]}", auto_offset_reset="latest")
        self.records: list[ConsumerRecord] = []

    async def start(self) -> None:
        await self.consumer.start()
        for _ in range(60):  # join the group, then fix the position at the end of every partition
            await self.consumer.getmany(timeout_ms=250)
            if self.consumer.assignment():
                break
        for partition in self.consumer.assignment():
            await self.consumer.position(partition)

    async def wait_for(self, keys: set[bytes], what: str) -> dict[bytes, ConsumerRecord]:
        """The records with these keys, waiting up to 40 s."""
        for _ in range(80):
            if keys <= {r.key for r in self.records}:
                break
            batches = await self.consumer.getmany(timeout_ms=500)
            self.records += [r for rs in batches.values() for r in rs]
        found = {r.key: r for r in self.records if r.key in keys}
        assert set(found) == keys, f"{what}: missing {keys - set(found)}"
        return found


@asynccontextmanager
async def tail(settings, topic: Topic | str) -> AsyncIterator[Tail]:
    reader = Tail(settings, topic)
    await reader.start()
    try:
        yield reader
    finally:
        await reader.consumer.stop()


async def produce(settings, messages: list) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        await send_all(producer, messages)
    finally:
        await producer.stop()


async def _next_is_decided(client: httpx.AsyncClient) -> None:
    body = await decided(client, (await submit(client, APPROVED))["id"])
    assert body["status"] == "approved"


async def test_relay_dead_letters_a_row_that_can_never_be_published(client, infra, pg) -> None:
    settings = infra.settings()
    too_large = uuid.uuid4().hex
    async with tail(settings, Topic.DLQ) as dlq:
        row_id = await pg.fetchval(
            "INSERT INTO outbox (topic, key, payload, headers) VALUES ($1, $2, $3, $4::jsonb) RETURNING id",
            settings.topic(Topic.SUBMITTED.value),
            too_large,
            b"x" * 1_200_000,
            '{"event-type": "ApplicationSubmitted"}',
        )
        await _next_is_decided(client)
        dead = (await dlq.wait_for({too_large.encode()}, "the dead letter"))[too_large.encode()]
    headers = dict(dead.headers)
    assert headers["dlq-error"].startswith(b"MessageSizeTooLargeError")
    assert headers["dlq-outbox-id"] == str(row_id).encode()
    assert headers["dlq-source-topic"] == settings.topic(Topic.SUBMITTED.value).encode()
    assert headers["dlq-value-truncated"] == b"1200000" and headers["event-type"] == b"ApplicationSubmitted"
    assert await pg.fetchval("SELECT count(*) FROM outbox WHERE id = $1", row_id) == 0


async def test_relay_isolates_a_row_the_broker_refuses_from_the_rest_of_its_batch(client, infra, pg) -> None:
    """A topic with a small max.message.bytes refuses one row: its batch-mates and later rows of the same partition
    are still published (the relay's idempotent producer is renewed), and the bad row is dead-lettered."""
    settings = infra.settings()
    small = f"poison-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(small, 1, 1, topic_configs={"max.message.bytes": "10000"})])
    finally:
        await admin.close()
    marker = uuid.uuid4().hex
    async with tail(settings, Topic.DLQ) as dlq, tail(settings, small) as out:
        async with pg.acquire() as conn, conn.transaction():  # one commit: the relay takes them in one batch
            ids = [
                await conn.fetchval(
                    "INSERT INTO outbox (topic, key, payload) VALUES ($1, $2, $3) RETURNING id", small, marker, payload
                )
                for payload in (b"first", b"p" * 20_000, b"second")
            ]
        await _next_is_decided(client)
        dead = (await dlq.wait_for({marker.encode()}, "the dead letter"))[marker.encode()]
        await out.wait_for({marker.encode()}, "the good rows")
        for _ in range(20):
            if {r.value for r in out.records} >= {b"first", b"second"}:
                break
            out.records += [r for rs in (await out.consumer.getmany(timeout_ms=500)).values() for r in rs]
    assert {r.value for r in out.records} == {b"first", b"second"}
    assert dead.value == b"p" * 20_000 and dict(dead.headers)["dlq-outbox-id"] == str(ids[1]).encode()
    assert dict(dead.headers)["dlq-error"].startswith(b"MessageSizeTooLargeError")
    assert await pg.fetchval("SELECT count(*) FROM outbox WHERE id = ANY($1::bigint[])", ids) == 0


async def test_risk_dead_letters_a_submission_whose_score_can_never_be_produced(client, infra) -> None:
    """A submitted event just within the broker's limit (an amount written with a million zeros): the scored event,
    which repeats the facts and adds the score, cannot be produced."""
    settings = infra.settings()
    ids = event_ids()
    headers = ApplicationSubmitted(**ids, facts=Facts(**FACTS)).headers()
    value = submission_near_limit(ids, settings.kafka_max_message_bytes, headers)
    key = str(ids["application_id"]).encode()
    async with tail(settings, Topic.DLQ) as dlq:
        await produce(settings, [(settings.topic(Topic.SUBMITTED.value), key, value, headers)])
        await _next_is_decided(client)
        dead = (await dlq.wait_for({key}, "the dead letter"))[key]
    assert dict(dead.headers)["dlq-source-topic"] == settings.topic(Topic.SUBMITTED.value).encode()
    assert dict(dead.headers)["dlq-error"].startswith(b"MessageSizeTooLargeError")
    assert dict(dead.headers)["dlq-consumer-group"] == b"fastloans-risk"


async def test_approval_dead_letters_a_score_whose_decision_can_never_be_produced(client, infra, pg) -> None:
    """A scored event under the active policy with one huge reason: the decision repeats it among its principal
    reasons and comes out twice as large as the broker takes."""
    settings = infra.settings()
    await _next_is_decided(client)
    ids = event_ids()
    scored = scored_with_huge_reason(ids, await pg.fetchrow(LATEST_POLICY_SQL))
    key = str(ids["application_id"]).encode()
    async with tail(settings, Topic.DLQ) as dlq:
        await produce(settings, [(settings.topic(Topic.SCORED.value), key, scored.encode(), scored.headers())])
        await _next_is_decided(client)
        dead = (await dlq.wait_for({key}, "the dead letter"))[key]
    assert dict(dead.headers)["dlq-source-topic"] == settings.topic(Topic.SCORED.value).encode()
    assert dict(dead.headers)["dlq-error"].startswith(b"MessageSizeTooLargeError")
    assert dead.value == scored.encode()


async def test_recorder_dead_letters_decisions_that_can_never_be_stored(client, infra, pg) -> None:
    """A decision for no known application, near the broker's limit with a huge header (its dead letter must still
    fit), and one PostgreSQL cannot store (a NUL character) for a real application."""
    settings = infra.settings()
    real = await submit(client, APPROVED)
    await decided(client, real["id"])
    tenant = await pg.fetchval("SELECT tenant_id FROM loan_applications WHERE id = $1", uuid.UUID(real["id"]))
    unknown = event_ids()
    junk = [("x-junk", b"j" * 500_000)]
    huge = decision_near_limit(unknown, settings.kafka_max_message_bytes, junk)
    unstorable = ApplicationDecided(
        application_id=uuid.UUID(real["id"]),
        tenant_id=tenant,
        revision=1,
        submitted_at=datetime.now(UTC),
        outcome="approved",
        risk_score=0,
        contributions=[],
        principal_reasons=[],
        policy=PolicyRef(name="nul\u0000", version="1", hash="h"),
        decided_at=datetime.now(UTC),
    )
    huge_key, nul_key = str(unknown["application_id"]).encode(), b"nul-" + uuid.uuid4().hex.encode()
    async with tail(settings, Topic.DLQ) as dlq:
        await produce(
            settings,
            [
                (settings.topic(Topic.DECIDED.value), huge_key, huge, junk),
                (settings.topic(Topic.DECIDED.value), nul_key, unstorable.encode(), []),
            ],
        )
        await _next_is_decided(client)
        dead = await dlq.wait_for({huge_key, nul_key}, "the dead letters")
    copied = dict(dead[huge_key].headers)
    assert copied["dlq-error"].startswith(b"EventDecodeError: decision for unknown application")
    assert copied["dlq-headers-dropped"] == b"1" and "x-junk" not in copied
    assert dead[huge_key].value == huge
    assert dict(dead[nul_key].headers)["dlq-source-topic"] == settings.topic(Topic.DECIDED.value).encode()
    assert dict(dead[nul_key].headers)["dlq-consumer-group"] == b"fastloans-recorder"


async def test_an_oversized_tracestate_does_not_stop_the_pipeline(client, infra) -> None:
    """The original attack: a POST with a tracestate of about 1 MB. It is refused at the edge (431) or accepted and
    decided without it; either way the next application is decided."""
    response = await client.post(
        URL, json=APPROVED, headers={"traceparent": PARENT, "tracestate": "k=" + "v" * 1_050_000}
    )
    assert response.status_code in {202, 431}, response.text
    if response.status_code == 202:
        assert (await decided(client, response.json()["id"]))["status"] == "approved"
    await _next_is_decided(client)


async def test_only_a_valid_trace_context_travels_with_the_events(client, infra) -> None:
    settings = infra.settings()
    cases = {
        "valid": {"traceparent": PARENT, "tracestate": "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"},
        "long": {"traceparent": PARENT, "tracestate": "k=" + "v" * MAX_TRACESTATE_CHARS},
        "many": {"traceparent": PARENT, "tracestate": ",".join(f"k{i}=v" for i in range(33))},
        "grammar": {"traceparent": PARENT, "tracestate": "UPPER=1"},
        "parent": {"traceparent": PARENT.upper(), "tracestate": "rojo=1"},
        "zero": {"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01", "tracestate": "rojo=1"},
        "version": {"traceparent": "ff" + PARENT[2:]},
    }
    async with tail(settings, Topic.SUBMITTED) as submitted, tail(settings, Topic.DECIDED) as decided_topic:
        ids = {}
        for name, headers in cases.items():
            response = await client.post(URL, json=APPROVED, headers=headers)
            assert response.status_code == 202, (name, response.text)
            ids[name] = response.json()["id"]
        for application_id in ids.values():
            assert (await decided(client, application_id))["status"] == "approved"
        events = await submitted.wait_for({i.encode() for i in ids.values()}, "the submitted events")
        outcomes = await decided_topic.wait_for({i.encode() for i in ids.values()}, "the decided events")
    trace = {
        name: {k: v for k, v in events[i.encode()].headers if k in {"traceparent", "tracestate"}}
        for name, i in ids.items()
    }
    assert trace.pop("valid") == {"traceparent": PARENT.encode(), "tracestate": cases["valid"]["tracestate"].encode()}
    assert trace == {
        "long": {"traceparent": PARENT.encode()},
        "many": {"traceparent": PARENT.encode()},
        "grammar": {"traceparent": PARENT.encode()},
        "parent": {},
        "zero": {},
        "version": {},
    }
    carried = dict(outcomes[ids["valid"].encode()].headers)
    assert carried["traceparent"] == PARENT.encode() and carried["tracestate"] == cases["valid"]["tracestate"].encode()
