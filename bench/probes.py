"""What the pipeline holds and what it stored: outbox backlog, consumer lag, decision latencies, losses."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from fastloans import services

# consumer group -> the topic it reads (the services' default group names and topics, from the registry).
GROUPS = {s.group: s.consumes.value for s in services.CONSUMERS if s.group and s.consumes}
RECORDER = services.RECORDER.name


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
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.kafka, client_id="fastloans-bench",
                                         enable_auto_commit=False)
        await self.consumer.start()
        for topic in set(GROUPS.values()):
            parts = self.consumer.partitions_for_topic(topic) or set()
            if not parts:
                await self.consumer._client.force_metadata_update()
                parts = self.consumer.partitions_for_topic(topic) or set()
            self.partitions[topic] = [TopicPartition(topic, p) for p in sorted(parts)]

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
        every = [tp for parts in self.partitions.values() for tp in parts]
        ends = await self.consumer.end_offsets(every) if every else {}
        lag, recorded = {}, 0
        for group, topic in GROUPS.items():
            committed = await self.admin.list_consumer_group_offsets(group)
            behind = 0
            for tp in self.partitions.get(topic, []):
                done = committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0
                behind += max(0, ends.get(tp, 0) - done)
                if group == RECORDER:
                    recorded += done
            lag[group] = behind
        return Backlog(at=time.time(), outbox=int(outbox), lag=lag, recorded=recorded)


async def wait_drained(probe: Probe, *, within: float, settle: float = 1.0) -> bool:
    """Wait until nothing is queued anywhere (outbox and every group), up to `within` seconds."""
    import asyncio

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if (await probe.sample()).total == 0:
            await asyncio.sleep(settle)
            if (await probe.sample()).total == 0:
                return True
        await asyncio.sleep(0.5)
    return False


async def decision_seconds(primary_url: str, ids: list[uuid.UUID]) -> list[float]:
    """`decided_at - submitted_at` of each given application that has been decided, in seconds."""
    if not ids:
        return []
    conn = await asyncpg.connect(primary_url)
    try:
        rows = await conn.fetch(
            "SELECT EXTRACT(EPOCH FROM decided_at - submitted_at)::float8 AS s FROM loan_applications "
            "WHERE id = ANY($1::uuid[]) AND decided_at IS NOT NULL", ids,
        )
    finally:
        await conn.close()
    return [row["s"] for row in rows]


@dataclass
class Audit:
    """Every accepted application checked against what was stored."""

    accepted: int
    decided: int
    lost: int
    duplicates: int
    lost_examples: list[str]


async def audit(primary_url: str, ids: list[uuid.UUID], *, wait_seconds: float) -> Audit:
    """Each accepted id must have exactly one decision for its latest revision, and not be pending.

    Waits up to `wait_seconds` for stragglers before counting an application as lost.
    """
    import asyncio

    unique = list(dict.fromkeys(ids))
    duplicate_acks = len(ids) - len(unique)
    conn = await asyncpg.connect(primary_url)
    query = """
        SELECT i.id, a.status,
               (SELECT count(*) FROM loan_decisions d WHERE d.application_id = a.id AND d.revision = a.revision) AS n
          FROM unnest($1::uuid[]) AS i(id) LEFT JOIN loan_applications a ON a.id = i.id
    """
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            rows = await conn.fetch(query, unique)
            missing = [r for r in rows if r["status"] in (None, "pending") or not r["n"]]
            if not missing or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        duplicates = sum(int(r["n"]) - 1 for r in rows if r["n"] and r["n"] > 1)
        examples = [str(r["id"]) for r in missing[:5]]
    finally:
        await conn.close()
    return Audit(accepted=len(unique), decided=len(unique) - len(missing), lost=len(missing),
                 duplicates=duplicates + duplicate_acks, lost_examples=examples)
