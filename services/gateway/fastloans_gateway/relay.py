"""`fastloans-relay`: publishes outbox rows to Kafka, promptly after they commit.

Each round locks a batch of rows (`FOR UPDATE SKIP LOCKED`, so several relays
share the work without publishing the same row at the same time), sends them
with an idempotent producer, waits for every acknowledgement, and only then
deletes them in the same transaction. When Kafka is down the transaction rolls
back and the rows wait. A relay killed between the acknowledgement and the
commit republishes its batch; consumers absorb that (decisions are keyed on
application and revision). A row Kafka refuses for good (too large, invalid)
is sent on its own once more, then to the dead-letter topic, and deleted with
the rest of its batch: one bad row never holds up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from fastloans import services
from fastloans.background import cancel_all
from fastloans.contracts import IDEMPOTENCY_TTL
from fastloans.db import Database, listen_forever
from fastloans.db.reviews import UNFINISHED
from fastloans.events import Topic
from fastloans.kafka import Message, dead_letter, deliver, is_transient, make_producer
from fastloans.metrics import DEAD_LETTERS, declare_dead_letters, sample_database
from fastloans.runtime import run_worker
from fastloans.settings import Settings, load_settings
from fastloans.tracecontext import TRACE_HEADERS
from fastloans.tracing import message_transactions, outgoing_headers
from fastloans_gateway import outbox
from fastloans_gateway.applications import DELETE_EXPIRED_KEYS
from fastloans_gateway.metrics import (
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    OUTBOX_PUBLISHED,
    REVIEW_CASES,
    REVIEW_ESCALATED,
    REVIEW_LEAST_TIME_LEFT,
    REVIEW_OLDEST_AGE,
)
from fastloans_gateway.reviews import QUEUE_GAUGES

log = logging.getLogger("fastloans.relay")
trail = logging.getLogger("fastloans.pipeline")

BATCH = 500
IDLE_POLL_SECONDS = 1.0


class RelaySettings(Settings):
    """Relay settings (name, port and dependencies from the registry)."""

    service = services.RELAY


class OutboxRelay:
    """Moves outbox rows to Kafka."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database.from_settings(settings)
        self.producer = make_producer(settings)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._kafka_ok = False
        self._tasks: list[asyncio.Task[None]] = []
        # Every topic the outbox feeds (what the registry says the relay produces, bar the dead-letter topic).
        sources = [settings.topic(t.value) for t in services.RELAY.produces if t is not Topic.DLQ]
        declare_dead_letters(settings.service_name, sources)

    async def start(self) -> None:
        """Start the producer and the LISTEN connection."""
        await self.producer.start()
        self._kafka_ok = True
        # After a reconnection, `on_connect` wakes the loop to catch up with rows committed meanwhile.
        listener = listen_forever(self.settings, outbox.CHANNEL, lambda *_: self._wake.set(), on_connect=self._wake.set)
        self._tasks = [
            asyncio.create_task(listener),
            asyncio.create_task(self._gauges()),
            asyncio.create_task(sample_database(self.db)),
        ]

    def request_stop(self) -> None:
        """Stop after the batch in hand."""
        self._stopping.set()
        self._wake.set()

    async def stop(self) -> None:
        """Flush the producer and close connections."""
        await cancel_all(self._tasks)
        await self.producer.stop()
        await self.db.dispose()

    async def readiness(self) -> dict[str, bool]:
        """Kafka producer usable and the primary reachable."""
        return {"kafka": self._kafka_ok, "database": await self.db.ping_primary()}

    async def run(self) -> None:
        """Publish until asked to stop; sleep until notified when the outbox is empty.

        Batches start at most once per OUTBOX_LINGER_MS unless the last one was full, so that
        under load rows share transactions and produce requests instead of going one or two
        at a time.
        """
        backoff = 0.2
        linger = self.settings.outbox_linger_ms / 1000
        while not self._stopping.is_set():
            started = time.monotonic()
            self._wake.clear()
            try:
                published = await self.publish_batch()
                backoff = 0.2
                self._kafka_ok = True
            except Exception as error:
                if not is_transient(error):
                    log.exception("outbox publish failed")
                else:
                    log.warning(
                        "outbox publish failed; rows kept for retry", extra={"error.type": type(error).__name__}
                    )
                self._kafka_ok = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if published == 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_POLL_SECONDS)
            elif published < BATCH and (wait := started + linger - time.monotonic()) > 0:
                await asyncio.sleep(wait)

    async def publish_batch(self) -> int:
        """Publish up to BATCH rows; returns how many were published or dead-lettered."""
        async with self.db.connection() as conn, conn.transaction():
            rows = await conn.fetch(outbox.LOCK_BATCH, BATCH)
            if not rows:
                return 0
            messages = [
                ((row["topic"], 0, row["id"]), row["key"].encode(), outbox.kafka_headers(row["headers"]))
                for row in rows
            ]
            with message_transactions("Outbox PUBLISH", messages) as traces:
                outgoing: list[Message] = [
                    (row["topic"], kafka_key, row["payload"], _with_trace(headers, outgoing_headers(key)))
                    for row, (key, kafka_key, headers) in zip(rows, messages, strict=True)
                ]
                errors = await deliver(self.producer, outgoing)
                if any(errors):
                    await self._settle(rows, outgoing, errors)
                await conn.execute(outbox.DELETE, [row["id"] for row in rows])
        OUTBOX_PUBLISHED.inc(len(rows))
        if trail.isEnabledFor(logging.INFO):
            for trace, row in zip(traces, rows, strict=True):
                trail.info("outbox row published", extra={**trace.log_fields(), "event.dataset": row["topic"]})
        return len(rows)

    async def _settle(
        self, rows: list[asyncpg.Record], outgoing: list[Message], errors: list[BaseException | None]
    ) -> None:
        """Deal with the rows of a batch that failed: raise on an outage, else dead-letter each row Kafka refuses.

        A refused batch fails every message in it, so each failed row is sent once
        more on its own: only a row refused alone is a bad one.
        """
        outage = next((error for error in errors if error is not None and is_transient(error)), None)
        if outage is not None:
            raise outage
        for row, message, error in zip(rows, outgoing, errors, strict=True):
            if error is None:
                continue
            (error,) = await deliver(self.producer, [message])
            if error is None:
                continue
            if is_transient(error):
                raise error
            await dead_letter(
                self.producer,
                self.settings,
                key=message[1],
                value=message[2],
                headers=message[3],
                error=error,
                details={"source-topic": row["topic"], "outbox-id": str(row["id"])},
            )
            DEAD_LETTERS.labels(self.settings.service_name, row["topic"]).inc()
            log.error(
                "outbox row sent to the dead-letter topic",
                exc_info=error,
                extra={
                    "event.dataset": row["topic"],
                    "labels.outbox_id": row["id"],
                    "labels.application_id": row["key"][:64],
                },
            )

    async def _gauges(self) -> None:
        last_cleanup = 0.0
        while True:
            await asyncio.sleep(5)
            try:
                async with self.db.connection() as conn:
                    row = await conn.fetchrow(outbox.BACKLOG)
                    OUTBOX_BACKLOG.set(row["backlog"])
                    OUTBOX_OLDEST_AGE.set(row["age"])
                    sample_review_queue(await conn.fetch(QUEUE_GAUGES, list(UNFINISHED)))
                    if time.monotonic() - last_cleanup > 600:
                        await conn.execute(DELETE_EXPIRED_KEYS, IDEMPOTENCY_TTL)
                        last_cleanup = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.debug("outbox gauges unavailable", exc_info=True)


def _with_trace(headers: list[tuple[str, bytes]], traced: list[tuple[str, bytes]] | None) -> list[tuple[str, bytes]]:
    """The row's headers, with the relay's transaction as the trace context when traced."""
    if traced is None:
        return headers
    return [(name, value) for name, value in headers if name not in TRACE_HEADERS] + traced


def main() -> None:
    """Console entry point: `fastloans-relay`."""
    run_worker(load_settings(RelaySettings), OutboxRelay)


def sample_review_queue(rows: Sequence[Mapping[str, Any]]) -> None:
    """Set the review queue gauges from QUEUE_GAUGES' rows (one per unfinished state that has cases)."""
    by_state = {row["state"]: row for row in rows}
    for state in UNFINISHED:
        REVIEW_CASES.labels(state).set(by_state[state]["cases"] if state in by_state else 0)
    REVIEW_OLDEST_AGE.set(max((row["oldest"] for row in rows), default=0.0))
    REVIEW_ESCALATED.set(sum(row["escalated"] for row in rows))
    left = [row["least_left"] for row in rows if row["least_left"] is not None]
    REVIEW_LEAST_TIME_LEFT.set(min(left, default=math.inf))
