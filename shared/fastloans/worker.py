"""The common shape of the pipeline's consumer services (risk, approval, recorder)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import ClassVar

from aiokafka import ConsumerRecord

from fastloans.db import Database
from fastloans.events import EventDecodeError, Topic
from fastloans.kafka import BatchConsumer, make_producer
from fastloans.metrics import (
    CONSUMER_LAG,
    MESSAGE_FAILURES,
    MESSAGE_LATENCY,
    MESSAGES_PROCESSED,
    declare_consumer,
    sample_database,
)
from fastloans.settings import Settings
from fastloans.tracing import message_transactions

log = logging.getLogger("fastloans.worker")
trail = logging.getLogger("fastloans.pipeline")


class PipelineWorker:
    """Consumes one topic in batches; subclasses implement `handle`.

    Readiness means: the consumer holds partitions and, for a service the registry declares with a
    database, the primary answers; a service without one opens no database at all.
    Each message gets an APM transaction continuing its trace (when APM is on)
    and one log line naming its application and trace.
    """

    input_topic: ClassVar[Topic]
    # PostgreSQL settings for this service's connections.
    database_settings: ClassVar[dict[str, str]] = {}

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.service_name
        self.producer = make_producer(settings)
        self._db = Database.from_settings(settings, **self.database_settings) if settings.uses_database else None
        self.consumer = BatchConsumer(
            settings,
            topic=self.input_topic,
            group=settings.kafka_consumer_group or self.name,
            handler=self._timed_handle,
            producer=self.producer,
        )
        # An undecodable message is the one failure every consumer expects.
        declare_consumer(self.name, self.consumer.topic, (EventDecodeError.__name__,))
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def db(self) -> Database:
        """The database pools (only for a service the registry declares with a database)."""
        if self._db is None:
            raise RuntimeError(f"{self.name} is declared without a database")
        return self._db

    async def handle(self, records: list[ConsumerRecord]) -> None:
        """Process one batch; raise to have it retried (or dead-lettered if it keeps failing)."""
        raise NotImplementedError

    async def _timed_handle(self, records: list[ConsumerRecord]) -> None:
        started = time.perf_counter()
        topic = records[0].topic
        messages = [((r.topic, r.partition, r.offset), r.key, r.headers) for r in records]
        with message_transactions(f"Kafka RECEIVE from {topic}", messages) as traces:
            try:
                await self.handle(records)
            except Exception as error:
                MESSAGE_FAILURES.labels(self.name, type(error).__name__).inc()
                raise
            MESSAGE_LATENCY.labels(self.name).observe(time.perf_counter() - started)
            MESSAGES_PROCESSED.labels(self.name, topic).inc(len(records))
            if trail.isEnabledFor(logging.INFO):
                for trace, record in zip(traces, records, strict=True):
                    trail.info(
                        "message processed",
                        extra={
                            **trace.log_fields(),
                            "event.dataset": topic,
                            "kafka.partition": record.partition,
                            "kafka.offset": record.offset,
                        },
                    )

    async def start(self) -> None:
        """Start the producer, then join the consumer group."""
        await self.producer.start()
        try:
            await self.consumer.start()
        except Exception:
            await self.producer.stop()
            raise
        self._tasks = [asyncio.create_task(self._watch_lag())]
        if self._db is not None:
            self._tasks.append(asyncio.create_task(sample_database(self._db)))

    async def run(self) -> None:
        """Consume until asked to stop."""
        await self.consumer.run()

    def request_stop(self) -> None:
        """Stop after the batch in hand."""
        self.consumer.request_stop()

    async def stop(self) -> None:
        """Leave the group, flush the producer, close the database pools (if any)."""
        for task in self._tasks:
            task.cancel()
        await self.consumer.stop()
        await self.producer.stop()
        if self._db is not None:
            await self._db.dispose()

    async def readiness(self) -> dict[str, bool]:
        """Partitions assigned, and the primary answers (when the service has a database)."""
        checks = {"kafka_partitions": self.consumer.ready}
        if self._db is not None:
            checks["database"] = await self._db.ping_primary()
        return checks

    async def _watch_lag(self) -> None:
        consumer = self.consumer.consumer
        reported: set[tuple[str, str]] = set()
        while True:
            # Every half second until the first partitions are assigned, so the series exist as soon as the consumer
            # is ready (a scrape of a just-started service has them); every five seconds after that.
            await asyncio.sleep(5 if reported else 0.5)
            try:
                partitions = list(consumer.assignment())
                ends = await consumer.end_offsets(partitions) if partitions else {}
                current = set()
                for tp in partitions:
                    position = await consumer.position(tp)
                    CONSUMER_LAG.labels(self.name, tp.topic, str(tp.partition)).set(max(0, ends[tp] - position))
                    current.add((tp.topic, str(tp.partition)))
                for topic, partition in reported - current:
                    # Revoked in a rebalance: another member reports it now.
                    CONSUMER_LAG.remove(self.name, topic, partition)
                reported = current
            except asyncio.CancelledError:
                raise
            except Exception:
                log.debug("could not read consumer lag", exc_info=True)
