"""Concurrent submissions share statements, with or without Idempotency-Keys, and one bad row fails only its own
request (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import asyncpg
import orjson
import pytest
from prometheus_client import REGISTRY

from fastloans.db import Database
from fastloans.settings import Settings
from fastloans_gateway.applications import Held, Key, SubmitBatcher, new_application, request_fingerprint
from fastloans_gateway.outbox import submitted_row
from fastloans_gateway.schemas import render_application

BODY = {
    "applicant_name": "Batch Applicant",
    "credit_score": 700,
    "loan_amount": Decimal("1500.00"),
    "loan_purpose": "car",
    "monthly_income": Decimal("4000.00"),
    "monthly_debt": Decimal("250.50"),
    "employment_status": "employed",
}
TRACEPARENT = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"


@pytest.fixture
async def setup(migrated_db, pg) -> tuple[Database, Settings, uuid.UUID]:
    settings = Settings(
        database_url=migrated_db.primary_url, kafka_bootstrap_servers="127.0.0.1:9", database_pool_size=2
    )
    tenant = await pg.fetchval(
        "INSERT INTO tenants (id, name) VALUES (gen_random_uuid(), $1) RETURNING id", f"batch-{uuid.uuid4().hex[:8]}"
    )
    db = Database.from_settings(settings)
    yield db, settings, tenant
    await db.dispose()


def submission(settings: Settings, tenant: uuid.UUID, **changes: object):
    application = new_application(tenant, {**BODY, **changes})
    return application, submitted_row(settings, application, {"traceparent": TRACEPARENT})


def keyed(settings: Settings, tenant: uuid.UUID, key: str, **changes: object):
    """A submission with an Idempotency-Key, as the gateway makes it: the key carries the 202's body."""
    item = submission(settings, tenant, **changes)
    body = {**BODY, **changes}
    return item, Key(tenant, key, request_fingerprint(body), orjson.dumps(render_application(item[0])).decode())


def retried() -> float:
    """Batches this process sent again one submission at a time."""
    return REGISTRY.get_sample_value("fastloans_submit_batches_retried_total") or 0.0


async def statements(pg, tenant: uuid.UUID) -> int:
    """How many transactions stored the tenant's applications."""
    return await pg.fetchval("SELECT count(DISTINCT xmin::text) FROM loan_applications WHERE tenant_id = $1", tenant)


async def test_concurrent_submissions_are_stored_together_and_in_order(setup, pg) -> None:
    db, settings, tenant = setup
    batcher = SubmitBatcher(db, max_batch=50)
    items = [submission(settings, tenant, credit_score=600 + i) for i in range(120)]
    await asyncio.gather(*(batcher.store(item) for item in items))
    rows = await pg.fetch(
        "SELECT a.id, a.credit_score, a.loan_amount, a.monthly_debt, a.status, a.submitted_at, o.id AS outbox_id, "
        "o.headers->>'traceparent' AS traceparent FROM loan_applications a JOIN outbox o ON o.key = a.id::text "
        "WHERE a.tenant_id = $1 ORDER BY o.id",
        tenant,
    )
    assert [r["id"] for r in rows] == [application["id"] for application, _ in items]
    assert {(r["status"], r["loan_amount"], r["monthly_debt"]) for r in rows} == {
        ("pending", Decimal("1500.00"), Decimal("250.50"))
    }
    assert [r["submitted_at"] for r in rows] == [application["submitted_at"] for application, _ in items]
    assert all(r["traceparent"].startswith("00-111") for r in rows)
    # The first request went alone (nothing was in flight); the rest queued behind it and shared
    # statements of at most 50: far fewer statements than requests.
    assert 3 <= await statements(pg, tenant) <= 10


async def test_a_bad_row_fails_only_its_own_request(setup, pg) -> None:
    db, settings, tenant = setup
    batcher = SubmitBatcher(db)
    good = [submission(settings, tenant) for _ in range(5)]
    clash = (dict(good[2][0]), good[2][1])  # the same application id twice: the second insert must fail
    blocker = submission(settings, tenant)
    before = retried()
    results = await asyncio.gather(
        batcher.store(blocker), *(batcher.store(item) for item in [*good, clash]), return_exceptions=True
    )
    assert results[:6] == [None] * 6
    assert isinstance(results[6], asyncpg.UniqueViolationError)
    assert retried() == before + 1
    stored = await pg.fetchval("SELECT count(*) FROM loan_applications WHERE tenant_id = $1", tenant)
    assert stored == 6


async def test_an_outage_fails_the_whole_batch_and_stores_nothing(setup, pg) -> None:
    db, settings, tenant = setup
    await db.dispose()  # every checkout now fails, as during a database outage
    batcher = SubmitBatcher(db)
    results = await asyncio.gather(
        *(batcher.store(submission(settings, tenant)) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, Exception) for r in results)
    assert await pg.fetchval("SELECT count(*) FROM loan_applications WHERE tenant_id = $1", tenant) == 0


async def test_a_linger_gathers_a_burst_but_not_a_request_after_a_quiet_spell(setup, pg) -> None:
    db, settings, tenant = setup
    batcher = SubmitBatcher(db, linger=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await batcher.store(submission(settings, tenant))
    alone = loop.time() - started
    # Within the linger of that insert's start: these wait for it to pass, then share one statement.
    await asyncio.gather(*(batcher.store(submission(settings, tenant)) for _ in range(5)))
    burst = loop.time() - started
    assert alone < 0.25 <= burst
    assert await statements(pg, tenant) == 2


async def test_keyed_submissions_share_statements_and_record_the_answer_a_retry_gets(setup, pg) -> None:
    db, settings, tenant = setup
    batcher = SubmitBatcher(db, max_batch=50)
    items = [keyed(settings, tenant, f"key-{i}", credit_score=600 + i) for i in range(100)]
    plain = [submission(settings, tenant) for _ in range(20)]
    results = await asyncio.gather(
        *(batcher.store(item, key) for item, key in items), *(batcher.store(item) for item in plain)
    )
    assert results == [None] * 120
    assert await statements(pg, tenant) <= 10
    records = {
        r["key"]: r
        for r in await pg.fetch(
            "SELECT key, request_hash, status_code, response, xmin::text AS tx FROM idempotency_keys "
            "WHERE tenant_id = $1",
            tenant,
        )
    }
    assert len(records) == 100
    stored = {
        str(r["id"]): r["tx"]
        for r in await pg.fetch("SELECT id, xmin::text AS tx FROM loan_applications WHERE tenant_id = $1", tenant)
    }
    for (application, _), key in items:
        record = records[key.key]
        answer = orjson.loads(record["response"])
        assert (record["status_code"], answer["id"], record["request_hash"]) == (
            202,
            str(application["id"]),
            key.fingerprint,
        )
        assert record["tx"] == stored[answer["id"]]  # the key is claimed in the transaction that stores its rows


async def test_a_key_already_held_is_answered_with_its_record_and_stores_nothing(setup, pg) -> None:
    db, settings, tenant = setup
    batcher = SubmitBatcher(db)
    first, first_key = keyed(settings, tenant, "held")
    assert await batcher.store(first, first_key) is None
    retry, retry_key = keyed(settings, tenant, "held")
    other, other_key = keyed(settings, tenant, "held", loan_amount=Decimal("2500.00"))
    fresh, fresh_key = keyed(settings, tenant, "fresh")
    outcomes = await asyncio.gather(
        batcher.store(retry, retry_key), batcher.store(other, other_key), batcher.store(fresh, fresh_key)
    )
    answer = orjson.loads(first_key.response)
    assert outcomes[0] == Held(first_key.fingerprint, 202, answer)
    assert outcomes[1] == Held(first_key.fingerprint, 202, answer) and other_key.fingerprint != first_key.fingerprint
    assert outcomes[2] is None
    ids = {r["id"] for r in await pg.fetch("SELECT id FROM loan_applications WHERE tenant_id = $1", tenant)}
    assert ids == {first[0]["id"], fresh[0]["id"]}


async def test_one_key_twice_in_a_burst_is_stored_once_and_the_second_gets_the_first_answer(setup, pg) -> None:
    db, settings, tenant = setup
    batcher = SubmitBatcher(db)
    blocker = submission(settings, tenant)  # in flight while the burst queues, so the burst is one batch
    burst = [keyed(settings, tenant, "twice"), keyed(settings, tenant, "once"), keyed(settings, tenant, "twice")]
    outcomes = await asyncio.gather(batcher.store(blocker), *(batcher.store(item, key) for item, key in burst))
    assert outcomes[:3] == [None, None, None]
    assert outcomes[3] == Held(burst[0][1].fingerprint, 202, orjson.loads(burst[0][1].response))
    ids = {r["id"] for r in await pg.fetch("SELECT id FROM loan_applications WHERE tenant_id = $1", tenant)}
    assert ids == {blocker[0]["id"], burst[0][0][0]["id"], burst[1][0][0]["id"]}


async def test_a_bad_row_in_a_keyed_batch_leaves_its_key_unclaimed(setup, pg) -> None:
    db, settings, tenant = setup
    batcher = SubmitBatcher(db)
    good = [keyed(settings, tenant, f"good-{i}") for i in range(4)]
    (clash_application, clash_row), _ = good[1]
    clash = keyed(settings, tenant, "clash")[1]
    blocker = submission(settings, tenant)
    results = await asyncio.gather(
        batcher.store(blocker),
        *(batcher.store(item, key) for item, key in good),
        batcher.store((dict(clash_application), clash_row), clash),  # the same application id again
        return_exceptions=True,
    )
    assert results[:5] == [None] * 5
    assert isinstance(results[5], asyncpg.UniqueViolationError)
    keys = {r["key"] for r in await pg.fetch("SELECT key FROM idempotency_keys WHERE tenant_id = $1", tenant)}
    assert keys == {f"good-{i}" for i in range(4)}  # a retry of the failed request may claim its key afresh


async def test_two_processes_claiming_the_same_keys_in_opposite_orders_store_each_once(setup, pg) -> None:
    db, settings, tenant = setup
    other_db = Database.from_settings(settings)  # a second gateway process: its own pool and batcher
    names = [f"shared-{i:02}" for i in range(40)]
    ours = [keyed(settings, tenant, name) for name in names]
    theirs = [keyed(settings, tenant, name) for name in reversed(names)]
    mine, other = SubmitBatcher(db), SubmitBatcher(other_db)
    before = retried()
    # A third transaction holds the middle key, so that both batches are mid-claim when it lets go: claimed in
    # arrival order, each would then hold a key the other waits for (a deadlock, and a burst sent back one
    # submission at a time).
    async with pg.acquire() as holder:
        claim = holder.transaction()
        await claim.start()
        await holder.execute(
            "INSERT INTO idempotency_keys (tenant_id, key, request_hash, status_code, response) "
            "VALUES ($1, 'shared-20', '', 0, '{}')",
            tenant,
        )
        burst = asyncio.gather(
            *(mine.store(item, key) for item, key in ours), *(other.store(item, key) for item, key in theirs)
        )
        try:
            for _ in range(200):
                waiting = await pg.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
                if waiting >= 2 or burst.done():
                    break
                await asyncio.sleep(0.05)
        finally:
            await claim.rollback()
        try:
            outcomes = await asyncio.wait_for(burst, timeout=30)
            assert waiting >= 2, "the two batches never both waited for the held key: the interleaving was not forced"
        finally:
            await other_db.dispose()
    assert sum(outcome is None for outcome in outcomes) == 40  # each key stored by one of the two
    answers = {
        r["key"]: orjson.loads(r["response"])["id"]
        for r in await pg.fetch("SELECT key, response FROM idempotency_keys WHERE tenant_id = $1", tenant)
    }
    stored = {str(r["id"]) for r in await pg.fetch("SELECT id FROM loan_applications WHERE tenant_id = $1", tenant)}
    assert len(answers) == 40 and set(answers.values()) == stored
    for outcome in outcomes:
        assert outcome is None or outcome.response["id"] in stored
    assert retried() == before  # no deadlock sent a batch back one submission at a time
