"""Concurrent submissions share statements, and one bad row fails only its own request (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import asyncpg
import pytest

from fastloans.db import Database
from fastloans.settings import Settings
from fastloans_gateway.applications import SubmitBatcher, new_application
from fastloans_gateway.outbox import submitted_row

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
    statements = await pg.fetchval(
        "SELECT count(DISTINCT xmin::text) FROM loan_applications WHERE tenant_id = $1", tenant
    )
    assert 3 <= statements <= 10


async def test_a_bad_row_fails_only_its_own_request(setup, pg) -> None:
    db, settings, tenant = setup
    batcher = SubmitBatcher(db)
    good = [submission(settings, tenant) for _ in range(5)]
    clash = (dict(good[2][0]), good[2][1])  # the same application id twice: the second insert must fail
    blocker = submission(settings, tenant)
    results = await asyncio.gather(
        batcher.store(blocker), *(batcher.store(item) for item in [*good, clash]), return_exceptions=True
    )
    assert results[:6] == [None] * 6
    assert isinstance(results[6], asyncpg.UniqueViolationError)
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
    statements = await pg.fetchval(
        "SELECT count(DISTINCT xmin::text) FROM loan_applications WHERE tenant_id = $1", tenant
    )
    assert alone < 0.25 <= burst
    assert statements == 2
