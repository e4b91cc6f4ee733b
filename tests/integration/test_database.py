"""The real PostgreSQL pair: migrations up and down, and the streaming replica."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from fastloans.db.migrate import downgrade, upgrade
from fastloans.db.schema import metadata

# Every table the models declare, so a new migration is checked without touching this test.
TABLES = set(metadata.tables)


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {row["tablename"] for row in rows} - {"alembic_version"}


async def test_migrations_up_down_up_on_a_fresh_database(infra) -> None:
    name = f"migrations_{uuid.uuid4().hex[:8]}"
    infra.postgres.primary.psql(f"CREATE DATABASE {name}")
    url = infra.postgres.primary.url(name)
    try:
        await asyncio.to_thread(upgrade, url)
        assert await _tables(url) == TABLES
        conn = await asyncpg.connect(url)
        try:
            money = await conn.fetch(
                "SELECT column_name, data_type, numeric_scale FROM information_schema.columns "
                "WHERE table_name = 'loan_applications' AND column_name IN ('loan_amount', 'monthly_income', "
                "'monthly_debt')"
            )
        finally:
            await conn.close()
        assert {(r["data_type"], r["numeric_scale"]) for r in money} == {("numeric", 2)}
        await asyncio.to_thread(downgrade, url)
        assert await _tables(url) == set()
        await asyncio.to_thread(upgrade, url)
        assert await _tables(url) == TABLES
    finally:
        infra.postgres.primary.psql(f"DROP DATABASE {name} WITH (FORCE)")


async def test_replica_streams_from_the_primary(infra, pg) -> None:
    states = await pg.fetch("SELECT application_name, state FROM pg_stat_replication")
    assert [(r["application_name"], r["state"]) for r in states] == [("fastloans_replica", "streaming")]
    replica = await asyncpg.connect(infra.postgres.replica_url)
    try:
        assert await replica.fetchval("SELECT pg_is_in_recovery()") is True
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await replica.execute("INSERT INTO tenants (id, name) VALUES (gen_random_uuid(), 'nope')")
        name = f"replicated-{uuid.uuid4().hex[:8]}"
        await pg.execute("INSERT INTO tenants (id, name) VALUES ($1, $2)", uuid.uuid4(), name)
        for _ in range(100):
            if await replica.fetchval("SELECT count(*) FROM tenants WHERE name = $1", name):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the row never reached the replica")
    finally:
        await replica.close()
