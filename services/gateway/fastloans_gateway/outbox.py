"""The transactional outbox: the row that announces an application, how it is written and read back, and the
NOTIFY that wakes the relay.

The gateway writes an outbox row in the same statement or transaction as the application it announces; the
relay (`fastloans_gateway.relay`) reads the rows in order, publishes them and deletes them. Both sides use
this module, so the row's format is declared once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

from fastloans.background import cancel_all
from fastloans.db import Database, json_value
from fastloans.events import ApplicationSubmitted, Event, Facts, Topic
from fastloans.settings import Settings
from fastloans.tracecontext import TRACE_HEADERS, trace_context

log = logging.getLogger("fastloans.gateway")

# LISTEN/NOTIFY channel: the gateway notifies after committing rows, the relay listens.
CHANNEL = "fastloans_outbox"
FACT_FIELDS = ("credit_score", "loan_amount", "monthly_income", "monthly_debt", "employment_status", "loan_purpose")

COLUMNS = "topic, key, payload, headers"
INSERT = f"INSERT INTO outbox ({COLUMNS}) VALUES ($1, $2, $3, $4::jsonb)"
LOCK_BATCH = "SELECT id, topic, key, payload, headers FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
DELETE = "DELETE FROM outbox WHERE id = ANY($1::bigint[])"
BACKLOG = (
    "SELECT count(*) AS backlog, "
    "COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)), 0)::float8 AS age FROM outbox"
)


def insert_arrays(first: int) -> str:
    """An INSERT of any number of rows, given as one array per column in parameters $first to $first+3."""
    return (
        f"INSERT INTO outbox ({COLUMNS}) SELECT * FROM unnest(${first}::text[], ${first + 1}::text[], "
        f"${first + 2}::bytea[], ${first + 3}::jsonb[])"
    )


class OutboxRow(NamedTuple):
    """The values of one outbox row, in the order of its columns (topic, key, payload, headers)."""

    topic: str
    key: str
    payload: bytes
    headers: str


def submitted_row(settings: Settings, application: Mapping[str, Any], trace: Mapping[str, str]) -> OutboxRow:
    """The row announcing `application` (a stored row or the values of a new one) to the submitted topic."""
    event = ApplicationSubmitted(
        application_id=application["id"],
        tenant_id=application["tenant_id"],
        revision=application["revision"],
        submitted_at=application["submitted_at"],
        facts=Facts(**{name: application[name] for name in FACT_FIELDS}),
    )
    return OutboxRow(
        settings.topic(Topic.SUBMITTED.value),
        str(application["id"]),
        event.encode(),
        orjson.dumps({**{k: v.decode() for k, v in event.headers()}, **trace}).decode(),
    )


def event_row(settings: Settings, topic: Topic, event: Event, trace: Mapping[str, str]) -> OutboxRow:
    """The row publishing any pipeline event (keyed by its application) to `topic`, e.g. a reviewer's decision."""
    return OutboxRow(
        settings.topic(topic.value),
        str(event.application_id),
        event.encode(),
        orjson.dumps({**{k: v.decode() for k, v in event.headers()}, **trace}).decode(),
    )


def kafka_headers(stored: object) -> list[tuple[str, bytes]]:
    """A stored row's headers as Kafka headers; trace context only when valid (`fastloans.tracecontext`)."""
    headers = json_value(stored)
    if not isinstance(headers, dict):
        return []
    context = trace_context((name, str(value)) for name, value in headers.items() if name in TRACE_HEADERS)
    return [(name, str(value).encode()) for name, value in headers.items() if name not in TRACE_HEADERS] + [
        (name, value.encode()) for name, value in context.items()
    ]


class OutboxNotifier:
    """Wakes the relay after commits, outside their transactions: at most one NOTIFY per `interval`.

    A NOTIFY inside the transaction would serialise every commit on PostgreSQL's notification-queue
    lock (held through the WAL flush), and cost a round trip per request. A NOTIFY is itself a small
    write transaction, so under load one is sent per `interval` (OUTBOX_LINGER_MS) for every commit
    since the last. A lost wake-up only delays publishing until the relay's next poll.
    """

    def __init__(self, db: Database, *, interval: float = 0.0) -> None:
        self.db = db
        self.interval = interval
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sending notifications in the background."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop the background task."""
        await cancel_all([self._task])

    def poke(self) -> None:
        """Ask for a NOTIFY after what has been committed so far."""
        self._wanted.set()

    async def _run(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            try:
                async with self.db.connection() as conn:
                    await conn.execute(f"NOTIFY {CHANNEL}")
            except Exception as error:
                log.warning("could not wake the outbox relay", extra={"error.type": type(error).__name__})
                await asyncio.sleep(0.5)
            if self.interval:
                await asyncio.sleep(self.interval)
