"""The webhooks dispatcher: decided → one delivery per subscribed endpoint, then signed, sent and retried.

Queueing is idempotent: a redelivered decision hits the unique (endpoint, event) key and adds nothing. The
retry state lives in PostgreSQL (`fastloans_webhooks.sender`), so a failing endpoint never holds up a partition.
"""

from __future__ import annotations

from typing import Any

from aiokafka import ConsumerRecord

from fastloans import webhooks
from fastloans.events import ApplicationDecided, Topic
from fastloans.runtime import run_worker
from fastloans.settings import Settings, load_settings
from fastloans.worker import PipelineWorker
from fastloans_webhooks.metrics import QUEUED
from fastloans_webhooks.sender import Dispatcher
from fastloans_webhooks.settings import WebhooksSettings

QUEUE_DECISIONS = """
INSERT INTO webhook_deliveries (endpoint_id, event_key, message_id, event_type, application_id, revision, body)
SELECT e.id, t.event_key, t.message_id, 'application.decided', t.application_id, t.revision, t.body
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::int[], $6::bytea[])
       AS t(tenant_id, event_key, message_id, application_id, revision, body)
  JOIN webhook_endpoints e
    ON e.tenant_id = t.tenant_id AND e.enabled AND 'application.decided' = ANY(e.event_types)
ON CONFLICT (endpoint_id, event_key) DO NOTHING
"""


def queue_arguments(records: list[ConsumerRecord]) -> tuple[list[Any], ...]:
    """The arrays QUEUE_DECISIONS takes for a batch: one entry per decision (a repeat within it counted once)."""
    events: dict[str, ApplicationDecided] = {}
    for record in records:
        event = ApplicationDecided.decode(record.value)
        events[webhooks.decided_key(event)] = event
    keys = list(events)
    return (
        [e.tenant_id for e in events.values()],
        keys,
        [webhooks.message_id(k) for k in keys],
        [e.application_id for e in events.values()],
        [e.revision for e in events.values()],
        [webhooks.body("application.decided", e.decided_at, webhooks.decided_data(e)) for e in events.values()],
    )


class WebhooksWorker(PipelineWorker):
    """Queues a delivery per decision and subscribed endpoint; its dispatcher sends them."""

    input_topic = Topic.DECIDED

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        assert isinstance(settings, WebhooksSettings)
        self.dispatcher = Dispatcher(self.db, settings)

    async def handle(self, records: list[ConsumerRecord]) -> None:
        """Queue a batch of decisions in one statement; returns once it is committed."""
        async with self.db.connection() as conn:
            result = await conn.execute(QUEUE_DECISIONS, *queue_arguments(records))
        QUEUED.inc(int(result.rsplit(" ", 1)[-1]))

    async def start(self) -> None:
        """Join the consumer group, then start sending."""
        await super().start()
        self.dispatcher.start()

    async def stop(self) -> None:
        """Stop sending (attempts in flight finish), then leave the group."""
        await self.dispatcher.stop()
        await super().stop()


def main() -> None:
    """Console entry point: `fastloans-webhooks`."""
    run_worker(load_settings(WebhooksSettings), WebhooksWorker)
