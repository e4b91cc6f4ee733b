"""The services' connection pool against the real primary: reuse, limits, hand-over, broken connections."""

from __future__ import annotations

import asyncio

import pytest

from fastloans.db.pool import ConnectionPool, PoolClosedError


@pytest.fixture
async def pool(migrated_db) -> ConnectionPool:
    pool = ConnectionPool(migrated_db.primary_url, size=2, acquire_timeout=2)
    yield pool
    await pool.close()


async def _pid(pool: ConnectionPool) -> int:
    async with pool.acquire() as conn:
        return await conn.fetchval("SELECT pg_backend_pid()")


async def test_connections_are_opened_lazily_and_reused(pool: ConnectionPool) -> None:
    assert pool.opened == 0
    first = await _pid(pool)
    assert await _pid(pool) == first
    assert (pool.opened, pool.in_use) == (1, 0)


async def test_at_most_size_connections_and_waiters_are_served_in_order(pool: ConnectionPool) -> None:
    release = asyncio.Event()
    served: list[int] = []

    async def hold() -> None:
        async with pool.acquire():
            await release.wait()

    async def wait_turn(n: int) -> None:
        async with pool.acquire() as conn:
            served.append(n)
            await conn.fetchval("SELECT 1")

    holders = [asyncio.create_task(hold()) for _ in range(2)]
    await asyncio.sleep(0.2)
    assert (pool.opened, pool.in_use) == (2, 2)
    waiters = []
    for n in range(4):
        waiters.append(asyncio.create_task(wait_turn(n)))
        await asyncio.sleep(0.01)
    assert served == []
    release.set()
    await asyncio.gather(*holders, *waiters)
    assert served == [0, 1, 2, 3]
    assert pool.opened == 2 and pool.in_use == 0


async def test_a_full_pool_times_out_with_a_clear_error(pool: ConnectionPool) -> None:
    async with pool.acquire(), pool.acquire():
        with pytest.raises(TimeoutError, match="no database connection free within 2 s"):
            async with pool.acquire():
                pass
    assert await _pid(pool) > 0  # nothing leaked: the pool still serves


async def test_a_connection_the_server_closed_is_replaced(pool: ConnectionPool, pg) -> None:
    first = await _pid(pool)
    await pg.execute("SELECT pg_terminate_backend($1)", first)
    await asyncio.sleep(0.2)
    second = await _pid(pool)
    assert second != first
    assert pool.opened == 1


async def test_a_connection_left_in_a_transaction_is_not_reused(pool: ConnectionPool) -> None:
    first = await _pid(pool)
    with pytest.raises(RuntimeError, match="boom"):
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            raise RuntimeError("boom")
    assert pool.opened == 0
    assert await _pid(pool) != first


async def test_a_failed_statement_keeps_the_connection(pool: ConnectionPool) -> None:
    first = await _pid(pool)
    with pytest.raises(Exception, match="division by zero"):
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1 / 0")
    assert await _pid(pool) == first


async def test_closing_wakes_waiters_and_refuses_new_checkouts(pool: ConnectionPool) -> None:
    async with pool.acquire(), pool.acquire():
        waiter = asyncio.create_task(_pid(pool))
        await asyncio.sleep(0.05)
        await pool.close()
        with pytest.raises(PoolClosedError):
            await waiter
    assert pool.opened == 0
    with pytest.raises(PoolClosedError):
        await _pid(pool)
