"""Messages Kafka refuses for good, on the real broker: the batch consumer dead-letters them and goes on."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiokafka import ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from fastloans.events import EventDecodeError, Topic
from fastloans.kafka import BatchConsumer, connection_options, make_consumer, make_producer, message_size, send_all
from fastloans.settings import Settings

SMALL_TOPIC_LIMIT = 10_000


async def _create(settings: Settings, name: str, **configs: str) -> None:
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs=configs)])
    finally:
        await admin.close()


async def _isolated(infra) -> Settings:
    """Settings with topics of their own (one partition each), so nothing else reads or writes them."""
    settings = infra.settings().model_copy(update={"kafka_topic_prefix": f"p{uuid.uuid4().hex[:6]}."})
    for topic in (Topic.SUBMITTED, Topic.DLQ):
        await _create(settings, settings.topic(topic.value))
    return settings


async def _read_all(settings: Settings, topic: str, count: int) -> list[ConsumerRecord]:
    reader = make_consumer(settings, topic, group=f"r-{uuid.uuid4().hex[:6]}")
    await reader.start()
    records: list[ConsumerRecord] = []
    try:
        for _ in range(40):
            batches = await reader.getmany(timeout_ms=500)
            records += [r for rs in batches.values() for r in rs]
            if len(records) >= count:
                break
    finally:
        await reader.stop()
    return records


@asynccontextmanager
async def _consuming(
    settings: Settings, handler: Callable[[list[ConsumerRecord]], Awaitable[None]], producer
) -> AsyncIterator[BatchConsumer]:
    consumer = BatchConsumer(
        settings,
        topic=Topic.SUBMITTED,
        group=f"g-{uuid.uuid4().hex[:6]}",
        handler=handler,
        producer=producer,
        max_attempts=2,
    )
    await consumer.start()
    runner = asyncio.create_task(consumer.run())
    try:
        yield consumer
    finally:
        consumer.request_stop()
        await asyncio.wait_for(runner, 30)
        await consumer.stop()


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_an_output_the_broker_refuses_is_dead_lettered_and_the_partition_goes_on(infra) -> None:
    """The broker refuses one output (over the topic's max.message.bytes): the next outputs on the same partition
    are still accepted (the idempotent producer is renewed), and the input is in the dead-letter topic."""
    settings = await _isolated(infra)
    output = settings.topic("out")
    await _create(settings, output, **{"max.message.bytes": str(SMALL_TOPIC_LIMIT)})
    producer = make_producer(settings)
    await producer.start()
    produced: list[bytes] = []

    async def handler(records: list[ConsumerRecord]) -> None:
        await send_all(
            producer,
            [(output, r.key, r.value * (SMALL_TOPIC_LIMIT * 2 if r.value == b"P" else 1), []) for r in records],
        )
        produced.extend(r.value for r in records)

    try:
        source = settings.topic(Topic.SUBMITTED.value)
        async with _consuming(settings, handler, producer) as consumer:
            await send_all(producer, [(source, b"k", value, []) for value in (b"a", b"b")])
            await _until(lambda: produced == [b"a", b"b"], "the first outputs")
            await send_all(producer, [(source, b"k", value, [("note", b"1")]) for value in (b"c", b"P", b"d")])
            await _until(lambda: consumer.stats.dead_lettered == 1 and b"d" in produced, "the poison to be skipped")
            await send_all(producer, [(source, b"k", b"e", [])])
            await _until(lambda: b"e" in produced, "a later message")
        assert producer.renewals >= 1
    finally:
        await producer.stop()
    outputs = await _read_all(settings, output, 5)
    # A batch-mate of the poison may be produced twice (at least once, as everywhere in the pipeline).
    assert {r.value for r in outputs} == {b"a", b"b", b"c", b"d", b"e"}
    (dead,) = await _read_all(settings, settings.topic(Topic.DLQ.value), 1)
    headers = dict(dead.headers)
    assert dead.value == b"P" and headers["note"] == b"1"
    assert headers["dlq-error"].startswith(b"MessageSizeTooLargeError")
    assert headers["dlq-source-topic"] == source.encode()


async def test_an_output_over_the_producer_limit_is_dead_lettered_without_retrying(infra) -> None:
    settings = await _isolated(infra)
    output = settings.topic(Topic.SCORED.value)
    await _create(settings, output)
    producer = make_producer(settings)
    await producer.start()
    produced: list[bytes] = []
    tried: list[int] = []

    async def handler(records: list[ConsumerRecord]) -> None:
        tried.extend(len(records) for r in records if r.value == b"P")
        await send_all(
            producer, [(output, r.key, r.value * (2_000_000 if r.value == b"P" else 1), []) for r in records]
        )
        produced.extend(r.value for r in records)

    try:
        source = settings.topic(Topic.SUBMITTED.value)
        async with _consuming(settings, handler, producer) as consumer:
            await send_all(producer, [(source, b"k", value, []) for value in (b"a", b"P", b"b")])
            await _until(lambda: consumer.stats.dead_lettered == 1 and b"b" in produced, "the poison to be skipped")
    finally:
        await producer.stop()
    assert produced == [b"a", b"b"]
    # In its batch (if it came with others), then alone once: no retries of a refusal that cannot change.
    assert tried.count(1) == 1 and len(tried) <= 2
    (dead,) = await _read_all(settings, settings.topic(Topic.DLQ.value), 1)
    assert dead.value == b"P"


async def test_a_huge_input_still_fits_in_the_dead_letter_topic(infra) -> None:
    """An input near the broker's limit does not leave room for the dead-letter headers: its copy is trimmed to fit
    instead of failing the consumer for ever."""
    settings = await _isolated(infra)
    producer = make_producer(settings)
    await producer.start()
    handled: list[bytes] = []

    async def handler(records: list[ConsumerRecord]) -> None:
        for record in records:
            if record.value and record.value.startswith(b"poison"):
                raise EventDecodeError("not an event")
        handled.extend(r.value for r in records)

    headers = [("tracestate", b"t" * 600_000), ("traceparent", b"x" * 100)]
    value = b"poison" + b"v" * (producer.max_message_bytes - 600_300)
    assert message_size(b"k", value, headers) <= producer.max_message_bytes
    try:
        source = settings.topic(Topic.SUBMITTED.value)
        async with _consuming(settings, handler, producer) as consumer:
            await send_all(producer, [(source, b"k", value, headers)])
            await send_all(producer, [(source, b"k", b"next", [])])
            await _until(lambda: handled == [b"next"], "the next message")
            assert consumer.stats.dead_lettered == 1
    finally:
        await producer.stop()
    (dead,) = await _read_all(settings, settings.topic(Topic.DLQ.value), 1)
    copied = dict(dead.headers)
    assert dead.value == value  # the value fits once the huge header is left out
    assert copied["dlq-headers-dropped"] == b"1" and copied["traceparent"] == b"x" * 100
    assert copied["dlq-error"] == b"EventDecodeError: not an event"
