"""What the pipeline still holds and what it stored: consumer lag, drain waits and the lost/duplicate audit.

One copy for the benchmark (`bench.probes`, `python -m bench`) and the chaos runs (`tests.chaos.invariants`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from fastloans import services

# consumer group -> the topic it reads (the services' default group names and topics, from the registry).
GROUPS = {s.group: s.consumes.value for s in services.CONSUMERS if s.group and s.consumes}
RECORDER_GROUP = services.RECORDER.group

Counts = Mapping[str, int]


# -- consumer lag -----------------------------------------------------------------------------------------------


def committed_offset(committed: Mapping[TopicPartition, OffsetAndMetadata], partition: TopicPartition) -> int:
    """The offset a group has committed on `partition`; 0 when it has committed none there (Kafka says -1)."""
    found = committed.get(partition)
    return found.offset if found is not None and found.offset >= 0 else 0


async def topic_partitions(admin: AIOKafkaAdminClient, topic: str, *, within: float = 10.0) -> list[TopicPartition]:
    """The partitions of `topic`, waiting up to `within` seconds for a topic just created to show them."""
    deadline = time.monotonic() + within
    while True:
        for described in await admin.describe_topics([topic]):
            found = sorted(p.get("partition", p.get("partition_index")) for p in described.get("partitions") or [])
            if found:
                return [TopicPartition(topic, p) for p in found]
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic} has no partitions")
        await asyncio.sleep(0.2)


@dataclass(frozen=True)
class GroupOffsets:
    """Where one consumer group stands on its topic, summed over the topic's partitions."""

    committed: int  # messages it has committed
    lag: int  # messages on the topic it has not committed yet


async def group_offsets(
    admin: AIOKafkaAdminClient,
    reader: AIOKafkaConsumer,
    partitions: Mapping[str, Sequence[TopicPartition]],
    groups: Mapping[str, str] = GROUPS,
) -> dict[str, GroupOffsets]:
    """Each group's committed total and lag; `partitions` maps each topic of `groups` to its partitions."""
    every = [tp for parts in partitions.values() for tp in parts]
    ends = await reader.end_offsets(every) if every else {}
    found = {}
    for group, topic in groups.items():
        parts = list(partitions.get(topic, ()))
        committed = await admin.list_consumer_group_offsets(group, partitions=parts or None)
        done = {tp: committed_offset(committed, tp) for tp in parts}
        found[group] = GroupOffsets(
            committed=sum(done.values()), lag=sum(max(0, ends.get(tp, 0) - done[tp]) for tp in parts)
        )
    return found


# -- waiting until drained --------------------------------------------------------------------------------------


def _quiet(_: str) -> None:
    pass


async def wait_drained(
    sample: Callable[[], Awaitable[Counts]],
    *,
    within: float,
    interval: float,
    settle: float = 0.0,
    progress: Callable[[str], None] = _quiet,
) -> bool:
    """Sample until every count is 0 (and still is `settle` seconds later), up to `within` seconds; True if so."""
    deadline = time.monotonic() + within
    while True:
        counts = await sample()
        if not any(counts.values()):
            if not settle:
                return True
            await asyncio.sleep(settle)
            counts = await sample()
            if not any(counts.values()):
                return True
        if time.monotonic() > deadline:
            return False
        progress("draining: " + " ".join(f"{name}={n}" for name, n in counts.items()))
        await asyncio.sleep(interval)


# -- the lost/duplicate audit -----------------------------------------------------------------------------------

APPLICATIONS = "SELECT id, status, revision, risk_score FROM loan_applications WHERE id = ANY($1::uuid[])"
DECISIONS = (
    "SELECT application_id, revision, outcome, risk_score FROM loan_decisions WHERE application_id = ANY($1::uuid[])"
)

Row = Mapping[str, Any]
History = dict[int, list[Row]]  # revision -> the decisions recorded for it


async def stored(
    db: asyncpg.Pool | asyncpg.Connection, ids: Sequence[uuid.UUID]
) -> tuple[dict[str, Row], dict[str, History]]:
    """The stored applications of `ids` by id, and the decisions of each by revision."""
    rows = {str(r["id"]): r for r in await db.fetch(APPLICATIONS, ids)}
    decisions: dict[str, History] = {}
    for d in await db.fetch(DECISIONS, ids):
        decisions.setdefault(str(d["application_id"]), {}).setdefault(d["revision"], []).append(d)
    return rows, decisions


@dataclass
class Finding:
    """What became of one acknowledged application.

    `outcome` is one of decided, withdrawn, lost, resurrected, mismatched (the application does not show
    the decision recorded for its revision); `surplus` counts decisions beyond one per revision, or for a
    revision the application never had.
    """

    outcome: str
    surplus: int = 0
    problems: list[str] = field(default_factory=list)


def check_application(
    app_id: str, row: Row | None, history: History, *, delete_sent: bool = False, withdrawn: bool = False
) -> Finding:
    """Classify one acknowledged application; `delete_sent`/`withdrawn`: the client sent a DELETE / got its 204."""
    if row is None:
        return Finding("lost", problems=[f"{app_id}: acknowledged but not in the database"])
    finding = Finding("decided")
    for revision, records in history.items():
        if len(records) > 1 or revision > row["revision"]:
            # Every decision for a revision the application never had is surplus; otherwise all but one.
            finding.surplus += len(records) if revision > row["revision"] else len(records) - 1
            finding.problems.append(
                f"{app_id}: {len(records)} decisions for revision {revision} (current {row['revision']})"
            )
    if row["status"] == "withdrawn":
        if delete_sent:
            finding.outcome = "withdrawn"
        else:
            finding.outcome = "lost"
            finding.problems.append(f"{app_id}: withdrawn without a DELETE")
        return finding
    if withdrawn:
        finding.outcome = "resurrected"
        finding.problems.append(f"{app_id}: withdrawn (204) but now {row['status']}")
        return finding
    current = history.get(row["revision"], [])
    if row["status"] == "pending" or not current:
        finding.outcome = "lost"
        finding.problems.append(
            f"{app_id}: revision {row['revision']} is {row['status']} with {len(current)} decisions"
        )
        return finding
    if (current[0]["outcome"], current[0]["risk_score"]) != (row["status"], row["risk_score"]):
        finding.outcome = "mismatched"
        finding.problems.append(
            f"{app_id}: applied {row['status']}/{row['risk_score']} but recorded "
            f"{current[0]['outcome']}/{current[0]['risk_score']}"
        )
    return finding


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

    Waits up to `wait_seconds` for stragglers before counting an application as lost. An id acknowledged
    twice, a surplus decision or an application showing another decision than the recorded one is a duplicate.
    """
    unique = list(dict.fromkeys(ids))
    duplicate_acks = len(ids) - len(unique)
    conn = await asyncpg.connect(primary_url)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            rows, decisions = await stored(conn, unique)
            findings = {i: check_application(i, rows.get(i), decisions.get(i, {})) for i in map(str, unique)}
            lost = [i for i, finding in findings.items() if finding.outcome == "lost"]
            if not lost or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
    finally:
        await conn.close()
    duplicates = sum(f.surplus + (f.outcome == "mismatched") for f in findings.values())
    decided = sum(f.outcome == "decided" for f in findings.values())
    return Audit(
        accepted=len(unique),
        decided=decided,
        lost=len(lost),
        duplicates=duplicates + duplicate_acks,
        lost_examples=lost[:5],
    )
