"""What the pipeline holds: outbox backlog, consumer lag and decision latencies, sampled while the benchmark runs."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench import checks
from bench.checks import GROUPS, RECORDER_GROUP

__all__ = ["GROUPS", "Backlog", "Probe", "decision_seconds", "wait_drained"]


@dataclass
class Backlog:
    """One sample of the work queued in the pipeline."""

    at: float
    outbox: int
    lag: dict[str, int]
    recorded: int

    @property
    def total(self) -> int:
        """Outbox rows plus every consumer group's lag."""
        return self.outbox + sum(self.lag.values())


class Probe:
    """Connections to the primary and to Kafka, for sampling the backlog."""

    def __init__(self, primary_url: str, kafka: str) -> None:
        self.primary_url, self.kafka = primary_url, kafka
        self.db: asyncpg.Connection | None = None
        self.admin: AIOKafkaAdminClient | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.partitions: dict[str, list[TopicPartition]] = {}

    async def start(self) -> None:
        """Connect."""
        self.db = await asyncpg.connect(self.primary_url)
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka, client_id="fastloans-bench")
        await self.admin.start()
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.kafka, client_id="fastloans-bench", enable_auto_commit=False
        )
        await self.consumer.start()
        for topic in set(GROUPS.values()):
            self.partitions[topic] = await checks.topic_partitions(self.admin, topic)

    async def stop(self) -> None:
        """Disconnect."""
        if self.consumer is not None:
            await self.consumer.stop()
        if self.admin is not None:
            await self.admin.close()
        if self.db is not None:
            await self.db.close()

    async def sample(self) -> Backlog:
        """Outbox rows, each group's lag, and the recorder's committed total."""
        assert self.db is not None and self.admin is not None and self.consumer is not None
        outbox = await self.db.fetchval("SELECT count(*) FROM outbox")
        offsets = await checks.group_offsets(self.admin, self.consumer, self.partitions)
        recorded = offsets[RECORDER_GROUP].committed if RECORDER_GROUP in offsets else 0
        return Backlog(
            at=time.time(), outbox=int(outbox), lag={g: o.lag for g, o in offsets.items()}, recorded=recorded
        )


async def wait_drained(probe: Probe, *, within: float, settle: float = 1.0) -> bool:
    """Wait until nothing is queued anywhere (outbox and every group), up to `within` seconds."""

    async def total() -> dict[str, int]:
        return {"total": (await probe.sample()).total}

    return await checks.wait_drained(total, within=within, interval=0.5, settle=settle)


async def decision_seconds(primary_url: str, ids: list[uuid.UUID]) -> list[float]:
    """`decided_at - submitted_at` of each given application that has been decided, in seconds."""
    if not ids:
        return []
    conn = await asyncpg.connect(primary_url)
    try:
        rows = await conn.fetch(
            "SELECT EXTRACT(EPOCH FROM decided_at - submitted_at)::float8 AS s FROM loan_applications "
            "WHERE id = ANY($1::uuid[]) AND decided_at IS NOT NULL",
            ids,
        )
    finally:
        await conn.close()
    return [row["s"] for row in rows]
