"""Kafka helpers with safe defaults: idempotent producers, manually committed batch consumers.

Producers use `acks="all"` and idempotence. Consumers never auto-commit: a
batch's offsets are committed only after its output is durably produced or
written. Messages that cannot be decoded or processed, or whose output Kafka
refuses for good (too large, invalid), go to the dead-letter topic with the
error in their headers, and the consumer moves on; outages are retried.
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
from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import BrokerResponseError, KafkaError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from fastloans.db.outages import is_database_outage
from fastloans.events import EventDecodeError, Topic
from fastloans.metrics import DEAD_LETTERS
from fastloans.observability import error_scope
from fastloans.settings import Settings
from fastloans.tracecontext import trace_context
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


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    """An idempotent producer that waits for every in-sync replica."""
    options = {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": settings.kafka_linger_ms,
        "max_batch_size": 256 * 1024,
        "max_request_size": settings.kafka_max_message_bytes,
        "request_timeout_ms": 30_000,
        **connection_options(settings),
        **overrides,
    }
    return Producer(lambda: AIOKafkaProducer(**options), max_message_bytes=options["max_request_size"])


class Producer:
    """An `AIOKafkaProducer` that is replaced by a new one after the broker refuses a batch for good.

    For idempotence each partition's batches are numbered in sequence. A batch the
    broker refuses (too large for the topic, an invalid record) leaves a gap in that
    numbering, and the broker answers `OutOfOrderSequenceNumber` to every later batch
    for the partition: one bad message would stop the partition for this producer.
    A new producer (a new producer id) starts a new sequence.
    """

    def __init__(self, factory: Callable[[], AIOKafkaProducer], *, max_message_bytes: int) -> None:
        self._factory = factory
        self.client = factory()
        self.max_message_bytes = max_message_bytes
        self.renewals = 0

    async def start(self) -> None:
        """Connect to the cluster."""
        await self.client.start()

    async def stop(self) -> None:
        """Flush what is pending and disconnect."""
        await self.client.stop()

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        """Queue one message; returns the future of its acknowledgement."""
        ack: asyncio.Future[Any] = await self.client.send(topic, value=value, key=key, headers=headers)
        return ack

    async def renew(self) -> None:
        """Replace the client by a new one (a new producer id and sequence)."""
        old, self.client = self.client, self._factory()
        self.renewals += 1
        try:
            await self.client.start()
        finally:
            # Nothing of ours is in flight on the old client (every send was awaited), so this is quick.
            try:
                await asyncio.wait_for(old.stop(), 10)
            except Exception as error:
                log.warning("old producer did not stop cleanly", extra={"error.type": type(error).__name__})


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
            NewTopic(
                name=settings.topic(t.value),
                num_partitions=partitions,
                replication_factor=replication_factor,
                topic_configs=configs,
            )
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


Message = tuple[str, bytes | None, bytes | None, Sequence[tuple[str, bytes]]]  # topic, key, value, headers


async def deliver(producer: Producer | AIOKafkaProducer, messages: Sequence[Message]) -> list[BaseException | None]:
    """Send (topic, key, value, headers) messages, wait for every outcome; each message's error, or None.

    A message the producer refuses before sending (larger than its limit) fails
    alone. When the broker refused a batch for good, the producer is renewed, and
    the messages that failed only because of the gap in its sequence are sent again.
    """
    errors: list[BaseException | None] = [None] * len(messages)
    pending = list(range(len(messages)))
    while pending:
        futures: dict[int, asyncio.Future[Any]] = {}
        for index in pending:
            topic, key, value, headers = messages[index]
            try:
                futures[index] = await producer.send(topic, value=value, key=key, headers=list(headers))
            except KafkaError as error:
                errors[index] = error
                if is_transient(error):
                    # No cluster to send to (each send waited for metadata in vain): the others would wait as
                    # long again. They fail with it; those already queued may still go, and are sent again.
                    for other in (*futures, *pending[pending.index(index) + 1 :]):
                        errors[other] = error
                    for future in futures.values():
                        future.add_done_callback(_ignore_outcome)
                    return errors
        results = await asyncio.gather(*futures.values(), return_exceptions=True)
        for index, result in zip(futures, results, strict=True):
            errors[index] = result if isinstance(result, BaseException) else None
        if not isinstance(producer, Producer) or not any(_refused_by_broker(errors[i]) for i in futures):
            break
        await producer.renew()
        # On a new producer the first batch of each partition is judged on its own: each round settles at least
        # the message refused first, so this ends.
        pending = [i for i in futures if isinstance(errors[i], _SEQUENCE_ERRORS)]
    return errors


def _ignore_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so that asyncio does not report it as never retrieved


async def send_all(producer: Producer | AIOKafkaProducer, messages: Sequence[Message]) -> None:
    """Send (topic, key, value, headers) messages and wait until every one is acknowledged.

    Raises an outage error when any message met one (the batch is worth retrying
    as a whole), else the first message's permanent error.
    """
    errors = [error for error in await deliver(producer, messages) if error is not None]
    if errors:
        raise next((error for error in errors if is_transient(error)), errors[0])


def trace_headers(record: ConsumerRecord) -> list[tuple[str, bytes]]:
    """The trace-context headers to carry on to the next topic: the consuming transaction's, else the record's.

    The record's own are validated and bounded (`fastloans.tracecontext`): a message
    written straight to a topic with oversized or malformed ones does not pass them on.
    """
    traced = outgoing_headers((record.topic, record.partition, record.offset))
    if traced is not None:
        return traced
    return [(name, value.encode()) for name, value in trace_context(record.headers).items()]


# -- error classification ---------------------------------------------------

# Not flagged `retriable` by aiokafka, but the cluster or the network is not there (yet), or the
# producer's sequence was renewed after a refusal: retrying is right.
_OUTAGES: tuple[type[KafkaError], ...] = (
    kafka_errors.KafkaTimeoutError,
    kafka_errors.KafkaUnavailableError,
    kafka_errors.BrokerNotAvailableError,
    kafka_errors.ReplicaNotAvailableError,
    kafka_errors.ProducerClosed,
    kafka_errors.OutOfOrderSequenceNumber,
    kafka_errors.UnknownProducerId,
    kafka_errors.AuthenticationFailedError,
    kafka_errors.SaslAuthenticationFailed,
)
# Refusals of the message itself: no retry changes the outcome.
_POISON: tuple[type[KafkaError], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.CorruptRecordException,
    kafka_errors.InvalidTimestampError,
    kafka_errors.UnsupportedForMessageFormatError,
    kafka_errors.UnknownError,  # among others INVALID_RECORD (87), which aiokafka does not name
)


# What the broker answers to the batches after a gap in a producer's sequence.
_SEQUENCE_ERRORS = (kafka_errors.OutOfOrderSequenceNumber, kafka_errors.UnknownProducerId)


def _kafka_transient(error: KafkaError) -> bool:
    if isinstance(error, _OUTAGES) or error.retriable:
        return True
    if type(error) is KafkaError:
        # aiokafka's wrapper for an unexpected failure inside the client: judged by its cause, else retried.
        cause = error.__cause__
        return cause is None or cause is error or is_transient(cause)
    return False


def is_poison(error: BaseException) -> bool:
    """Whether a Kafka error refuses the message itself (too large, invalid): dead-letter it without retrying."""
    return isinstance(error, _POISON)


def _refused_by_broker(error: BaseException | None) -> bool:
    return isinstance(error, BrokerResponseError) and not error.retriable


# -- batch consumer ---------------------------------------------------------

Handler = Callable[[list[ConsumerRecord]], Awaitable[None]]


def is_transient(error: BaseException) -> bool:
    """Whether an error is an outage (retry forever) rather than a bad message (dead-letter it)."""
    if isinstance(error, KafkaError):
        return _kafka_transient(error)
    if isinstance(error, (OSError, TimeoutError, asyncio.TimeoutError, ConnectionError)) or is_database_outage(error):
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

    Decoding problems (`EventDecodeError`), outputs Kafka refuses for good
    (`is_poison`) and errors that persist through `max_attempts` go to the
    dead-letter topic, one message at a time, and the rest of the batch goes on;
    outages (database or broker unreachable) are retried with backoff until they
    pass, without committing, so nothing is skipped.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        topic: Topic,
        group: str,
        handler: Handler,
        producer: Producer,
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
        self.consumer = make_consumer(
            settings,
            self.topic,
            group=group,
            max_poll_records=max_batch,
            group_instance_id=settings.kafka_group_instance_id or None,
        )
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
                if is_poison(error) or attempt >= self.max_attempts:
                    log.warning(
                        "batch failed; isolating the failing messages",
                        extra={"error.type": type(error).__name__, "event.dataset": self.topic},
                    )
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
                if is_poison(error) or attempt >= self.max_attempts:
                    await self._dead_letter(record, error)
                    return
                await asyncio.sleep(backoff)

    async def _dead_letter(self, record: ConsumerRecord, error: BaseException) -> None:
        details = {
            "source-topic": record.topic,
            "source-partition": str(record.partition),
            "source-offset": str(record.offset),
            "consumer-group": self.group,
        }
        await dead_letter(
            self.producer,
            self.settings,
            key=record.key,
            value=record.value,
            headers=record.headers or (),
            error=error,
            details=details,
        )
        self.stats.dead_lettered += 1
        DEAD_LETTERS.labels(self.settings.service_name, record.topic).inc()
        application_id = record.key[:64].decode("utf-8", "replace") if record.key else None
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


# -- dead letters -------------------------------------------------------------

DLQ_HEADER_PREFIX = "dlq-"
MAX_DLQ_ERROR_CHARS = 1000
MAX_DLQ_KEY_BYTES = 1024
# Original headers kept on a dead letter: each name and value up to these sizes, all together up to the last.
MAX_DLQ_HEADER_NAME_CHARS = 255
MAX_DLQ_HEADER_VALUE_BYTES = 8 * 1024
MAX_DLQ_HEADERS_BYTES = 32 * 1024


def message_size(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> int:
    """The size the producer counts against its limit for one message (aiokafka's own estimate)."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers)))


def dead_letter_copy(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
    *,
    error: BaseException,
    details: dict[str, str],
    limit: int,
    keep_value: bool = True,
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """(key, value, headers) of the dead letter for a message: the error and `details` in `dlq-*` headers.

    The copy always fits in `limit` bytes, whatever the original: original headers
    beyond the MAX_DLQ_HEADER_* sizes are left out (counted in `dlq-headers-dropped`),
    a long key is cut (`dlq-key-truncated`: its length), and a value that still does
    not fit is cut to what does (`dlq-value-truncated`: its length; `dlq-value-dropped`
    when `keep_value` is false).
    """
    note = [
        (
            DLQ_HEADER_PREFIX + "error",
            f"{type(error).__name__}: {error}"[:MAX_DLQ_ERROR_CHARS].encode("utf-8", "replace"),
        ),
        *(
            (DLQ_HEADER_PREFIX + name, text.encode("utf-8", "replace")[:MAX_DLQ_ERROR_CHARS])
            for name, text in details.items()
        ),
    ]
    kept: list[tuple[str, bytes]] = []
    dropped = total = 0
    for name, header in headers:
        size = len(name) + len(header or b"")
        if (
            len(name) > MAX_DLQ_HEADER_NAME_CHARS
            or len(header or b"") > MAX_DLQ_HEADER_VALUE_BYTES
            or total + size > MAX_DLQ_HEADERS_BYTES
        ):
            dropped += 1
            continue
        kept.append((name, header or b""))
        total += size
    if dropped:
        note.append((DLQ_HEADER_PREFIX + "headers-dropped", str(dropped).encode()))
    if key is not None and len(key) > MAX_DLQ_KEY_BYTES:
        note.append((DLQ_HEADER_PREFIX + "key-truncated", str(len(key)).encode()))
        key = key[:MAX_DLQ_KEY_BYTES]
    if value is not None and not keep_value:
        note.append((DLQ_HEADER_PREFIX + "value-dropped", str(len(value)).encode()))
        value = b""
    elif value is not None and message_size(key, value, kept + note) > limit:
        note.append((DLQ_HEADER_PREFIX + "value-truncated", str(len(value)).encode()))
        excess = message_size(key, value, kept + note) - limit
        while excess > 0:
            # A shorter value can also shorten its length prefix: cut again until it fits.
            value = value[: max(0, len(value) - excess)]
            excess = message_size(key, value, kept + note) - limit
    return key, value, kept + note


async def dead_letter(
    producer: Producer,
    settings: Settings,
    *,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
    error: BaseException,
    details: dict[str, str],
) -> None:
    """Send a copy of a message that cannot be processed to the dead-letter topic; returns once acknowledged.

    Outages are retried until they pass. Should the broker still refuse the copy for
    good (a smaller limit on the dead-letter topic), a copy without the value is sent;
    only a dead-letter topic that refuses even that raises.
    """
    topic = settings.topic(Topic.DLQ.value)
    backoff = 0.2
    keep_value = True
    while True:
        copy = dead_letter_copy(
            key, value, headers, error=error, details=details, limit=producer.max_message_bytes, keep_value=keep_value
        )
        (failure,) = await deliver(producer, [(topic, *copy)])
        if failure is None:
            return
        if is_transient(failure):
            log.warning("dead-letter send failed; retrying", extra={"error.type": type(failure).__name__})
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
            continue
        if not keep_value:
            raise failure
        log.warning(
            "dead-letter topic refused the copy; sending it without the value",
            extra={"error.type": type(failure).__name__},
        )
        keep_value = False
