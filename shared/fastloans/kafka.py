"""Kafka helpers with safe defaults: idempotent producers, manually committed batch consumers.

Producers use `acks="all"` and idempotence. Consumers never auto-commit: a
batch's offsets are committed only after its output is durably produced or
written. Messages that cannot be decoded or processed go to the dead-letter
topic with the error in their headers, and the consumer moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from fastloans.events import EventDecodeError, Topic
from fastloans.metrics import DEAD_LETTERS
from fastloans.observability import error_scope
from fastloans.settings import Settings
from fastloans.tracing import outgoing_headers

log = logging.getLogger("fastloans.kafka")


def connection_options(settings: Settings) -> dict[str, Any]:
    """Bootstrap servers and security options shared by every Kafka client."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
        "client_id": settings.service_name,
    }
    if settings.kafka_security_protocol in {"SSL", "SASL_SSL"}:
        cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        options["ssl_context"] = create_ssl_context(cafile=cafile)
    if settings.kafka_security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        password = settings.kafka_sasl_password
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    return options


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer that waits for every in-sync replica."""
    options = {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": settings.kafka_linger_ms,
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": 30_000,
        **connection_options(settings),
        **overrides,
    }
    return AIOKafkaProducer(**options)


def make_consumer(settings: Settings, *topics: str, group: str, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer in `group` that commits only when told to."""
    options = {
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "max_poll_records": 500,
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
        "fetch_min_bytes": settings.kafka_fetch_min_bytes,
        "session_timeout_ms": 10_000,
        "heartbeat_interval_ms": 1_000,
        "rebalance_timeout_ms": 30_000,
        **connection_options(settings),
        **overrides,
    }
    return AIOKafkaConsumer(*topics, **options)


async def create_topics(
    settings: Settings, *, partitions: int = 6, replication_factor: int = 1, min_insync_replicas: int | None = None
) -> list[str]:
    """Create the pipeline's topics if they do not exist; returns the names created."""
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    created = []
    try:
        existing = set(await admin.list_topics())
        configs = {"min.insync.replicas": str(min_insync_replicas)} if min_insync_replicas else {}
        wanted = [
            NewTopic(name=settings.topic(t.value), num_partitions=partitions,
                     replication_factor=replication_factor, topic_configs=configs)
            for t in Topic
            if settings.topic(t.value) not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process created them meanwhile
                await admin.create_topics(wanted)
            created = [t.name for t in wanted]
    finally:
        await admin.close()
    return created


async def send_all(producer: AIOKafkaProducer, messages: Sequence[tuple[str, bytes, bytes, list]]) -> None:
    """Send (topic, key, value, headers) messages and wait until every one is acknowledged."""
    futures = [
        await producer.send(topic, value=value, key=key, headers=headers)
        for topic, key, value, headers in messages
    ]
    if futures:
        await asyncio.gather(*futures)


TRACE_HEADERS = frozenset({"traceparent", "tracestate", "elastic-apm-traceparent"})


def trace_headers(record: ConsumerRecord) -> list[tuple[str, bytes]]:
    """The trace-context headers to carry on to the next topic: the consuming transaction's, else the record's."""
    traced = outgoing_headers((record.topic, record.partition, record.offset))
    if traced is not None:
        return traced
    return [(key, value) for key, value in (record.headers or ()) if key in TRACE_HEADERS]


# -- batch consumer ---------------------------------------------------------

Handler = Callable[[list[ConsumerRecord]], Awaitable[None]]


def is_transient(error: BaseException) -> bool:
    """Whether an error is an outage (retry forever) rather than a bad message (dead-letter it)."""
    if isinstance(error, (OSError, TimeoutError, asyncio.TimeoutError, KafkaError, ConnectionError)):
        return True
    name = type(error).__name__
    module = type(error).__module__
    if module.startswith("asyncpg") and ("Connection" in name or "CannotConnectNow" in name):
        return True
    if module.startswith("sqlalchemy"):
        if getattr(error, "connection_invalidated", False) or name in {"OperationalError", "InterfaceError"}:
            return True
        original = getattr(error, "orig", None)
        return original is not None and original is not error and is_transient(original)
    if module.startswith("asyncpg") and name in {"AdminShutdownError", "ReadOnlySQLTransactionError"}:
        return True
    cause = error.__cause__
    return cause is not None and cause is not error and is_transient(cause)


@dataclass
class ConsumerStats:
    """What a consumer has done, for health checks and metrics."""

    processed: int = 0
    dead_lettered: int = 0
    failures: int = 0


class BatchConsumer:
    """Fetches batches from one topic, hands them to a handler, then commits.

    Decoding problems (`EventDecodeError`) and errors that persist through
    `max_attempts` go to the dead-letter topic, one message at a time; outages
    (database or broker unreachable) are retried with backoff until they pass,
    without committing, so nothing is skipped.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        topic: Topic,
        group: str,
        handler: Handler,
        producer: AIOKafkaProducer,
        max_batch: int = 500,
        max_attempts: int = 3,
    ) -> None:
        self.settings = settings
        self.topic = settings.topic(topic.value)
        self.group = group
        self.handler = handler
        self.producer = producer
        self.max_batch = max_batch
        self.max_attempts = max_attempts
        self.stats = ConsumerStats()
        self.consumer = make_consumer(settings, self.topic, group=group, max_poll_records=max_batch,
                                      group_instance_id=settings.kafka_group_instance_id or None)
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Join the group."""
        await self.consumer.start()

    def request_stop(self) -> None:
        """Stop after the batch in hand is finished and committed."""
        self._stopping.set()

    async def stop(self) -> None:
        """Leave the group cleanly."""
        await self.consumer.stop()

    @property
    def ready(self) -> bool:
        """True once the group has given this consumer its partitions."""
        return bool(self.consumer.assignment())

    async def run(self) -> None:
        """Consume until `request_stop` is called.

        Offsets are committed only for batches already handled, at most every
        KAFKA_COMMIT_INTERVAL_MS while busy and at once when the topic goes quiet or
        the consumer stops. A crash in between redelivers those batches, which
        every stage absorbs (decisions are keyed on application and revision).
        """
        interval = self.settings.kafka_commit_interval_ms / 1000
        linger = self.settings.kafka_consumer_linger_ms / 1000
        pending = False
        last_commit = time.monotonic()
        started = 0.0
        while not self._stopping.is_set():
            batches = await self.consumer.getmany(timeout_ms=200, max_records=self.max_batch)
            records = [record for partition_records in batches.values() for record in partition_records]
            if records:
                started = time.monotonic()
                await self._process(records)
                pending = True
            if pending and (not records or time.monotonic() - last_commit >= interval):
                await self._commit()
                pending = False
                last_commit = time.monotonic()
            if linger and 0 < len(records) < self.max_batch and (wait := started + linger - time.monotonic()) > 0:
                # Batches start at most once per linger: under moderate load every cycle would carry
                # a few messages and cost a fetch, a produce request and their system calls, while
                # after a quiet spell a message is handled at once.
                await asyncio.sleep(wait)
        # Only after a finished batch: an exception or cancellation above leaves a batch half done,
        # and committing the consumer's position then would skip it.
        if pending:
            await self._commit()

    async def _commit(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self.consumer.commit()
                return
            except KafkaError as error:
                if type(error).__name__ in {"CommitFailedError", "IllegalStateError"}:
                    # The group rebalanced: another member will redeliver; outputs are idempotent.
                    log.warning("offset commit refused after a rebalance", extra={"error.type": type(error).__name__})
                    return
                log.warning("offset commit failed; retrying", extra={"error.type": type(error).__name__})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _process(self, records: list[ConsumerRecord]) -> None:
        attempt = 0
        backoff = 0.2
        while True:
            try:
                await self.handler(records)
                self.stats.processed += len(records)
                return
            except EventDecodeError:
                break  # isolate the bad message below
            except Exception as error:
                self.stats.failures += 1
                if is_transient(error):
                    log.warning(
                        "transient failure; retrying the batch",
                        extra={"error.type": type(error).__name__, "event.dataset": self.topic},
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                attempt += 1
                if attempt >= self.max_attempts:
                    log.exception("batch failed; isolating the failing messages")
                    break
                await asyncio.sleep(backoff)
        for record in records:
            await self._process_one(record)

    async def _process_one(self, record: ConsumerRecord) -> None:
        attempt = 0
        backoff = 0.2
        while True:
            try:
                await self.handler([record])
                self.stats.processed += 1
                return
            except EventDecodeError as error:
                await self._dead_letter(record, error)
                return
            except Exception as error:
                self.stats.failures += 1
                if is_transient(error):
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                attempt += 1
                if attempt >= self.max_attempts:
                    await self._dead_letter(record, error)
                    return
                await asyncio.sleep(backoff)

    async def _dead_letter(self, record: ConsumerRecord, error: BaseException) -> None:
        headers = [
            *(record.headers or []),
            ("dlq-error", f"{type(error).__name__}: {error}"[:1000].encode("utf-8", "replace")),
            ("dlq-source-topic", record.topic.encode()),
            ("dlq-source-partition", str(record.partition).encode()),
            ("dlq-source-offset", str(record.offset).encode()),
            ("dlq-consumer-group", self.group.encode()),
        ]
        await send_all(self.producer, [(self.settings.topic(Topic.DLQ.value), record.key, record.value, headers)])
        self.stats.dead_lettered += 1
        DEAD_LETTERS.labels(self.settings.service_name, record.topic).inc()
        application_id = record.key.decode("utf-8", "replace") if record.key else None
        with error_scope(application_id):
            # Logged with the exception: this is also the error report (Sentry's logging integration).
            log.error(
                "message sent to the dead-letter topic",
                exc_info=error,  # sets error.type, error.message and error.stack_trace
                extra={
                    "event.dataset": record.topic,
                    "kafka.partition": record.partition,
                    "kafka.offset": record.offset,
                    "labels.application_id": application_id,
                },
            )
