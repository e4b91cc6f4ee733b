"""The guarantees, checked against the database, the API and the topics after a run under faults."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from bench import checks
from bench.checks import GROUPS
from fastloans.events import ApplicationDecided, Topic
from fastloans.kafka import connection_options
from fastloans.settings import Settings
from tests.chaos.load import URL, LoadStats, Tracked


@dataclass
class Verdict:
    """What the checks found; `ok` when nothing was lost, duplicated or resurrected."""

    accepted: int = 0
    decided: int = 0
    withdrawn: int = 0
    lost: int = 0
    duplicates: int = 0
    resurrected: int = 0
    api_mismatches: int = 0
    dead_lettered: int = 0
    redelivered: int = 0
    outbox: int = 0
    lag: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    dead_letter_keys: set[bytes] = field(default_factory=set)  # every key in the dead-letter topic

    @property
    def ok(self) -> bool:
        """No loss, no duplicate, nothing resurrected, every read agrees, everything drained."""
        return not (
            self.lost
            or self.duplicates
            or self.resurrected
            or self.api_mismatches
            or self.dead_lettered
            or self.outbox
            or any(self.lag.values())
        )

    def summary(self) -> str:
        """The counts, as one `key=value` line."""
        return (
            f"accepted={self.accepted} decided={self.decided} lost={self.lost} duplicates={self.duplicates} "
            f"resurrected={self.resurrected} withdrawn={self.withdrawn} api_mismatches={self.api_mismatches} "
            f"dead_lettered={self.dead_lettered} redelivered_absorbed={self.redelivered} outbox={self.outbox} "
            f"lag={sum(self.lag.values())}"
        )

    def note(self, problem: str) -> None:
        """Keep a few examples of what went wrong, for the report."""
        if len(self.examples) < 10:
            self.examples.append(problem)


async def consumer_lag(settings: Settings) -> dict[str, int]:
    """Messages not yet committed by each pipeline consumer group."""
    admin = AIOKafkaAdminClient(**connection_options(settings))
    reader = AIOKafkaConsumer(**connection_options(settings))
    await admin.start()
    await reader.start()
    try:
        partitions = {
            topic: await checks.topic_partitions(admin, settings.topic(topic)) for topic in set(GROUPS.values())
        }
        offsets = await checks.group_offsets(admin, reader, partitions)
        return {group: found.lag for group, found in offsets.items()}
    finally:
        await reader.stop()
        await admin.close()


async def read_topic(settings: Settings, topic: str) -> list[tuple[bytes, bytes]]:
    """(key, value) of every message now on `topic` (read without a consumer group)."""
    name = settings.topic(topic)
    admin = AIOKafkaAdminClient(**connection_options(settings))
    reader = AIOKafkaConsumer(
        **connection_options(settings), enable_auto_commit=False, isolation_level="read_committed"
    )
    await admin.start()
    await reader.start()
    seen: list[tuple[bytes, bytes]] = []
    try:
        partitions = await checks.topic_partitions(admin, name)
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        ends = await reader.end_offsets(partitions)
        while [tp for tp in partitions if await reader.position(tp) < ends[tp]]:
            for records in (await reader.getmany(timeout_ms=1000, max_records=5000)).values():
                for record in records:
                    seen.append((record.key or b"", record.value or b""))
    finally:
        await reader.stop()
        await admin.close()
    return seen


async def pending_work(pool: asyncpg.Pool, settings: Settings, ids: list[uuid.UUID]) -> tuple[int, int, int]:
    """(outbox rows, consumer lag, tracked applications still pending)."""
    outbox = await pool.fetchval("SELECT count(*) FROM outbox")
    pending = await pool.fetchval(
        "SELECT count(*) FROM loan_applications WHERE id = ANY($1::uuid[]) AND status = 'pending'", ids
    )
    lag = sum((await consumer_lag(settings)).values())
    return outbox, lag, pending


async def wait_drained(
    pool: asyncpg.Pool,
    settings: Settings,
    tracked: list[Tracked],
    *,
    within: float,
    progress: Callable[[str], None] = lambda _: None,
) -> None:
    """Wait (bounded) until the outbox is empty, every group has caught up and no tracked application is pending."""
    ids = [uuid.UUID(t.id) for t in tracked]

    async def counts() -> dict[str, int]:
        try:
            outbox, lag, pending = await pending_work(pool, settings, ids)
        except Exception as error:  # a broker or the database may still be recovering
            progress(f"drain check failed ({type(error).__name__}); retrying")
            outbox = lag = pending = -1
        return {"outbox": outbox, "lag": lag, "pending": pending}

    await checks.wait_drained(counts, within=within, interval=2, progress=progress)


# Every recorded decision with who made it: a revision referred by the policy may have one more, the reviewer's.
DECISIONS = (
    "SELECT application_id, revision, outcome, risk_score, decided_by FROM loan_decisions "
    "WHERE application_id = ANY($1::uuid[])"
)


async def stored(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> tuple[dict[str, checks.Row], dict[str, checks.History]]:
    """`checks.stored`, keyed on the decider: per revision, the decision the application must show first.

    A revision's decisions are its policy's and, for a referred one, its reviewer's. The one the application
    shows is the reviewer's when there is one; what is beyond one decision per (revision, decider) stays in the
    list, so `checks.check_application` counts it as surplus, as it counts a second policy decision.
    """
    rows, _ = await checks.stored(pool, ids)
    return rows, histories(await pool.fetch(DECISIONS, ids))


def histories(recorded: Iterable[checks.Row]) -> dict[str, checks.History]:
    """Per application and revision, its recorded decisions, the one the application must show first."""
    by_decider: dict[str, dict[int, dict[str, list[checks.Row]]]] = {}
    for d in recorded:
        revisions = by_decider.setdefault(str(d["application_id"]), {})
        revisions.setdefault(d["revision"], {}).setdefault(d["decided_by"], []).append(d)
    decisions: dict[str, checks.History] = {}
    for app_id, revisions in by_decider.items():
        for revision, deciders in revisions.items():
            policy, review = deciders.get("policy", []), deciders.get("review", [])
            first = review[:1] or policy[:1]
            decisions.setdefault(app_id, {})[revision] = first + policy[1:] + review[1:]
    return decisions


async def verify(pool: asyncpg.Pool, settings: Settings, api_url: str, api_key: str, stats: LoadStats) -> Verdict:
    """Check every accepted application against the database, the API and the decided topic."""
    tracked = list(stats.accepted.values())
    verdict = Verdict(accepted=len(tracked))
    rows, decisions = await stored(pool, [uuid.UUID(t.id) for t in tracked])
    for t in tracked:
        _count(
            verdict,
            checks.check_application(
                t.id, rows.get(t.id), decisions.get(t.id, {}), delete_sent=t.delete_sent, withdrawn=t.withdrawn
            ),
        )
    verdict.outbox = await pool.fetchval("SELECT count(*) FROM outbox")
    verdict.lag = await consumer_lag(settings)
    await _check_api(verdict, api_url, api_key, tracked, rows)
    await _check_topics(verdict, settings, {t.id.encode() for t in tracked})
    return verdict


def _count(verdict: Verdict, finding: checks.Finding) -> None:
    verdict.duplicates += finding.surplus
    if finding.outcome == "mismatched":
        verdict.duplicates += 1
    else:
        setattr(verdict, finding.outcome, getattr(verdict, finding.outcome) + 1)
    for problem in finding.problems:
        verdict.note(problem)


async def _check_api(
    verdict: Verdict, api_url: str, api_key: str, tracked: list[Tracked], rows: dict[str, checks.Row]
) -> None:
    """Each application reads back over the API as the database has it (withdrawn ones answer 404)."""
    gate = asyncio.Semaphore(16)

    async def one(http: httpx.AsyncClient, t: Tracked) -> None:
        row = rows.get(t.id)
        if row is None:
            return
        async with gate:
            for _ in range(20):
                response = await http.get(f"{URL}/{t.id}")
                if row["status"] == "withdrawn":
                    if response.status_code == 404:
                        return
                elif response.status_code == 200 and (response.json()["status"], response.json()["revision"]) == (
                    row["status"],
                    row["revision"],
                ):
                    return
                await asyncio.sleep(0.5)  # the replica may not have replayed the last change yet
        if row["status"] == "withdrawn":
            verdict.resurrected += 1
            verdict.note(f"{t.id}: withdrawn but GET answers {response.status_code}")
        else:
            verdict.api_mismatches += 1
            verdict.note(f"{t.id}: GET answers {response.status_code} {response.text[:120]}")

    async with httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30) as http:
        await asyncio.gather(*(one(http, t) for t in tracked))


async def _check_topics(verdict: Verdict, settings: Settings, keys: set[bytes]) -> None:
    """Redelivered decisions (absorbed by the recorder) and dead letters among the tracked applications.

    A reviewer's decision is a second message for its application and revision (`decided_by: review`), not a
    redelivery of the policy's: the count is per (application, revision, decider).
    """
    decisions = (
        ApplicationDecided.decode(value)
        for key, value in await read_topic(settings, Topic.DECIDED.value)
        if key in keys
    )
    revisions = Counter((d.application_id, d.revision, d.decided_by) for d in decisions)
    verdict.redelivered = sum(n - 1 for n in revisions.values())
    verdict.dead_letter_keys = {key for key, _ in await read_topic(settings, Topic.DLQ.value)}
    verdict.dead_lettered = len(keys & verdict.dead_letter_keys)
    if verdict.dead_lettered:
        verdict.note(f"{verdict.dead_lettered} messages of accepted applications were dead-lettered")
