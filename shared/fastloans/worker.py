"""The common shape of the pipeline's consumer services (risk, approval, recorder)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import ClassVar

from aiokafka import ConsumerRecord

from fastloans.db import Database
from fastloans.events import Topic
from fastloans.kafka import BatchConsumer, make_producer
from fastloans.metrics import CONSUMER_LAG, MESSAGE_FAILURES, MESSAGE_LATENCY, MESSAGES_PROCESSED
from fastloans.settings import Settings

log = logging.getLogger("fastloans.worker")


class PipelineWorker:
    """Consumes one topic in batches; subclasses implement `handle`.

    Readiness means: the consumer holds partitions, and (when the worker uses
    the database) the primary answers.
    """

    input_topic: ClassVar[Topic]
    uses_database: ClassVar[bool] = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.service_name
        self.producer = make_producer(settings)
        self.db = Database.from_settings(settings) if self.uses_database else None
        self.consumer = BatchConsumer(
            settings,
            topic=self.input_topic,
            group=settings.kafka_consumer_group or self.name,
            handler=self._timed_handle,
            producer=self.producer,
        )
        self._lag_task: asyncio.Task[None] | None = None

    async def handle(self, records: list[ConsumerRecord]) -> None:
        """Process one batch; raise to have it retried (or dead-lettered if it keeps failing)."""
        raise NotImplementedError

    async def _timed_handle(self, records: list[ConsumerRecord]) -> None:
        started = time.perf_counter()
        try:
            await self.handle(records)
        except Exception as error:
            MESSAGE_FAILURES.labels(self.name, type(error).__name__).inc()
            raise
        MESSAGE_LATENCY.labels(self.name).observe(time.perf_counter() - started)
        MESSAGES_PROCESSED.labels(self.name, records[0].topic).inc(len(records))

    async def start(self) -> None:
        """Start the producer, then join the consumer group."""
        await self.producer.start()
        try:
            await self.consumer.start()
        except Exception:
            await self.producer.stop()
            raise
        self._lag_task = asyncio.create_task(self._watch_lag())

    async def run(self) -> None:
        """Consume until asked to stop."""
        await self.consumer.run()

    def request_stop(self) -> None:
        """Stop after the batch in hand."""
        self.consumer.request_stop()

    async def stop(self) -> None:
        """Leave the group, flush the producer, close the database pools."""
        if self._lag_task is not None:
            self._lag_task.cancel()
        await self.consumer.stop()
        await self.producer.stop()
        if self.db is not None:
            await self.db.dispose()

    async def readiness(self) -> dict[str, bool]:
        """Partitions assigned, and the database reachable when used."""
        checks = {"kafka_partitions": self.consumer.ready}
        if self.db is not None:
            checks["database"] = (await self.db.ping())["primary"]
        return checks

    async def _watch_lag(self) -> None:
        consumer = self.consumer.consumer
        while True:
            await asyncio.sleep(5)
            try:
                partitions = list(consumer.assignment())
                if not partitions:
                    continue
                ends = await consumer.end_offsets(partitions)
                for tp in partitions:
                    position = await consumer.position(tp)
                    CONSUMER_LAG.labels(self.name, tp.topic, str(tp.partition)).set(max(0, ends[tp] - position))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.debug("could not read consumer lag", exc_info=True)
