"""Concurrent reads by id share statements, and each still gets only its own tenant's live application
(real PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from prometheus_client import REGISTRY

from fastloans.db import Database
from fastloans.settings import Settings
from fastloans_gateway.applications import ReadBatcher, SubmitBatcher, new_application
from fastloans_gateway.outbox import submitted_row
from tests.integration.test_submit_batches import BODY


@pytest.fixture
async def setup(migrated_db, pg) -> tuple[Database, list[uuid.UUID], list[uuid.UUID]]:
    """A database and two tenants' stored applications (ten of the first tenant's, one of the second's)."""
    settings = Settings(
        database_url=migrated_db.primary_url,
        database_read_url=migrated_db.replica_url,
        kafka_bootstrap_servers="127.0.0.1:9",
        database_pool_size=2,
    )
    tenants = [
        await pg.fetchval(
            "INSERT INTO tenants (id, name) VALUES (gen_random_uuid(), $1) RETURNING id",
            f"reads-{uuid.uuid4().hex[:8]}",
        )
        for _ in range(2)
    ]
    db = Database.from_settings(settings)
    owners = [tenants[0]] * 10 + [tenants[1]]
    applications = [new_application(tenant, {**BODY, "credit_score": 600 + i}) for i, tenant in enumerate(owners)]
    batcher = SubmitBatcher(db)
    await asyncio.gather(*(batcher.store((a, submitted_row(settings, a, {}))) for a in applications))
    yield db, tenants, [a["id"] for a in applications]
    await db.dispose()


def batches() -> tuple[float, float]:
    """Statements the read batchers of this process sent, and the reads they carried."""
    count = REGISTRY.get_sample_value("fastloans_read_batch_size_count") or 0.0
    total = REGISTRY.get_sample_value("fastloans_read_batch_size_sum") or 0.0
    return count, total


@pytest.mark.parametrize("primary", [True, False], ids=["primary", "replica"])
async def test_a_burst_of_reads_shares_statements_and_each_gets_its_own_row(setup, pg, primary) -> None:
    db, (tenant, other), ids = setup
    await pg.execute("UPDATE loan_applications SET status = 'withdrawn' WHERE id = $1", ids[9])
    if not primary:
        await wait_replicated(db, ids[9])
    reads = ReadBatcher(db, max_batch=50)
    # Every kind of answer, many times over: own rows (some twice), a withdrawn one, another tenant's, an unknown id.
    wanted = [(tenant, ids[i % 9]) for i in range(100)] + [
        (tenant, ids[9]),
        (tenant, ids[10]),
        (other, ids[10]),
        (other, ids[0]),
        (tenant, uuid.uuid4()),
    ]
    before = batches()
    rows = await asyncio.gather(*(reads.fetch(t, a, primary=primary) for t, a in wanted))
    after = batches()
    for (t, a), row in zip(wanted[:100], rows[:100], strict=True):
        assert row is not None and (row["id"], row["tenant_id"]) == (a, t)
    assert [row["credit_score"] for row in rows[:9]] == [600 + i for i in range(9)]
    assert rows[100] is None  # withdrawn
    assert rows[101] is None  # another tenant's application
    assert rows[102] is not None and rows[102]["id"] == ids[10]  # ... which its own tenant reads
    assert rows[103] is None  # and that tenant cannot read the first one's
    assert rows[104] is None  # unknown
    # 105 reads queued together, at most 50 to a statement: three statements.
    assert (after[0] - before[0], after[1] - before[1]) == (3, 105)


async def wait_replicated(db: Database, application_id: uuid.UUID) -> None:
    """Until the replica shows the application withdrawn."""
    for _ in range(200):
        async with db.connection(read=True) as conn:
            if await conn.fetchval("SELECT status FROM loan_applications WHERE id = $1", application_id) == "withdrawn":
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the replica never showed the withdrawal")


async def test_a_read_after_a_quiet_spell_goes_alone(setup) -> None:
    db, (tenant, _), ids = setup
    reads = ReadBatcher(db)
    before = batches()
    for application_id in ids[:3]:
        row = await reads.fetch(tenant, application_id, primary=True)
        assert row is not None and row["id"] == application_id
    after = batches()
    assert (after[0] - before[0], after[1] - before[1]) == (3, 3)


async def test_a_cancelled_read_leaves_the_rest_of_its_batch_answered(setup) -> None:
    db, (tenant, _), ids = setup
    reads = ReadBatcher(db)
    tasks = [asyncio.create_task(reads.fetch(tenant, application_id, primary=True)) for application_id in ids[:5]]
    await asyncio.sleep(0)  # every read is queued
    tasks[2].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    assert [row["id"] for i, row in enumerate(results) if i != 2] == [ids[i] for i in (0, 1, 3, 4)]


async def test_an_outage_fails_every_read_of_the_batch(setup) -> None:
    db, (tenant, _), ids = setup
    await db.dispose()  # every checkout now fails, as during a database outage
    reads = ReadBatcher(db)
    results = await asyncio.gather(
        *(reads.fetch(tenant, application_id, primary=True) for application_id in ids[:4]), return_exceptions=True
    )
    assert all(isinstance(r, Exception) for r in results)
    # The batcher is not left stuck: later reads are tried again (and fail the same way) rather than waiting.
    later = asyncio.gather(*(reads.fetch(tenant, a, primary=True) for a in ids[:2]), return_exceptions=True)
    assert all(isinstance(r, Exception) for r in await asyncio.wait_for(later, 10))
