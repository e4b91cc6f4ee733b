"""The real Kafka broker: a produce/consume round trip and the batch consumer's dead-letter handling."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from fastloans.events import Topic
from fastloans.kafka import BatchConsumer, connection_options, make_consumer, make_producer, send_all


async def _topic(settings, partitions: int = 1) -> str:
    name = f"test-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
    return name


async def test_round_trip_with_manual_commit(infra) -> None:
    settings = infra.settings()
    topic = await _topic(settings)
    producer = make_producer(settings)
    await producer.start()
    try:
        await send_all(producer, [(topic, f"k{i}".encode(), f"v{i}".encode(), [("h", b"1")]) for i in range(50)])
    finally:
        await producer.stop()
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = make_consumer(settings, topic, group=group)
    await consumer.start()
    try:
        seen: list[bytes] = []
        while len(seen) < 50:
            batches = await consumer.getmany(timeout_ms=5000)
            assert batches, "no messages arrived"
            seen += [r.value for records in batches.values() for r in records]
        await consumer.commit()
    finally:
        await consumer.stop()
    assert seen == [f"v{i}".encode() for i in range(50)]  # one partition keeps order
    # A new member of the same group resumes after the committed offsets: nothing is redelivered.
    again = make_consumer(settings, topic, group=group)
    await again.start()
    try:
        assert not await again.getmany(timeout_ms=1500)
    finally:
        await again.stop()


async def test_batch_consumer_dead_letters_bad_messages_and_keeps_going(infra) -> None:
    settings = infra.settings().model_copy(update={"kafka_topic_prefix": f"t{uuid.uuid4().hex[:6]}."})
    for topic in (Topic.SUBMITTED, Topic.DLQ):
        admin = AIOKafkaAdminClient(**connection_options(settings))
        await admin.start()
        await admin.create_topics([NewTopic(settings.topic(topic.value), 1, 1)])
        await admin.close()
    handled: list[bytes] = []

    async def handler(records) -> None:
        for record in records:
            if record.value == b"poison":
                raise ValueError("cannot process this one")
        handled.extend(r.value for r in records)

    producer = make_producer(settings)
    await producer.start()
    consumer = BatchConsumer(
        settings, topic=Topic.SUBMITTED, group="g-dlq", handler=handler, producer=producer, max_attempts=2
    )
    await consumer.start()
    runner = asyncio.create_task(consumer.run())
    try:
        source = settings.topic(Topic.SUBMITTED.value)
        await send_all(producer, [(source, b"k", v, []) for v in (b"a", b"poison", b"b")])
        for _ in range(200):
            if len(handled) >= 2 and consumer.stats.dead_lettered:
                break
            await asyncio.sleep(0.05)
        assert handled == [b"a", b"b"]
        assert consumer.stats.dead_lettered == 1
    finally:
        consumer.request_stop()
        await runner
        await consumer.stop()
        await producer.stop()
    dlq = make_consumer(settings, settings.topic(Topic.DLQ.value), group="g-dlq-reader")
    await dlq.start()
    try:
        batches = await dlq.getmany(timeout_ms=5000)
        records = [r for rs in batches.values() for r in rs]
    finally:
        await dlq.stop()
    assert [r.value for r in records] == [b"poison"]
    headers = dict(records[0].headers)
    assert headers["dlq-error"].startswith(b"ValueError: cannot process this one")
    assert headers["dlq-source-topic"] == source.encode()


@pytest.mark.parametrize("partitions", [3])
async def test_topics_exist_with_partitions(infra, partitions: int) -> None:
    admin = AIOKafkaAdminClient(**connection_options(infra.settings()))
    await admin.start()
    try:
        described = await admin.describe_topics([t.value for t in Topic])
    finally:
        await admin.close()
    assert {d["topic"]: len(d["partitions"]) for d in described} == {t.value: partitions for t in Topic}
