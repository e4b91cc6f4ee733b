"""Async engines: one for the primary (writes), one for the replica (reads)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from fastloans.settings import Settings

log = logging.getLogger("fastloans.db")


def json_value(value: Any) -> Any:
    """A json/jsonb column's value, whether the driver returned it as text or already decoded."""
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def sqlalchemy_url(dsn: str) -> str:
    """A plain `postgresql://` DSN in the form SQLAlchemy's asyncpg dialect takes."""
    return "postgresql+asyncpg://" + dsn.split("://", 1)[1]


def _engine(dsn: str, settings: Settings, *, name: str) -> AsyncEngine:
    return create_async_engine(
        sqlalchemy_url(dsn),
        # Up to twice DATABASE_POOL_SIZE connections, all kept: overflow connections would be closed on
        # return and reopened in the next burst (a new server process each time).
        pool_size=settings.database_pool_size * 2,
        max_overflow=0,
        # No pre-ping (three round trips per checkout with asyncpg): `Database.connection` checks the
        # socket locally and replaces connections the server has closed.
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={
            "ssl": settings.database_ssl(),
            "server_settings": {"application_name": f"{settings.service_name}-{name}"},
            "timeout": 10,
        },
    )


async def _checkout(stack: contextlib.AsyncExitStack, engine: AsyncEngine) -> asyncpg.Connection:
    """A pooled connection whose socket is open; ones the server closed (a restart) are discarded."""
    for _ in range(engine.pool.size() * 2 + 1):
        conn = await engine.connect()
        raw = await conn.get_raw_connection()
        if not raw.driver_connection.is_closed():  # type: ignore[union-attr]
            stack.push_async_callback(conn.close)
            return raw.driver_connection  # type: ignore[return-value]
        await conn.invalidate()
        await conn.close()
    raise DBAPIError("checkout", None, ConnectionError("every pooled connection was closed"))


@dataclass
class Database:
    """The primary and replica engines of one process."""

    primary: AsyncEngine
    replica: AsyncEngine

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        """Create both engines; the replica engine targets the primary if no replica is set."""
        primary = _engine(settings.primary_dsn(), settings, name="primary")
        replica = _engine(settings.replica_dsn(), settings, name="replica") if settings.database_read_url else primary
        return cls(primary=primary, replica=replica)

    async def ping(self) -> dict[str, bool]:
        """Whether the primary and the replica answer `SELECT 1`."""
        result = {}
        for name, engine in (("primary", self.primary), ("replica", self.replica)):
            try:
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
                result[name] = True
            except Exception:
                result[name] = False
        return result

    @asynccontextmanager
    async def connection(self, *, read: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """A pooled asyncpg connection from the primary (or the replica when `read`).

        The pool, its size and its health checks are SQLAlchemy's; statements run
        on asyncpg directly, with its prepared-statement cache.
        """
        async with contextlib.AsyncExitStack() as stack:
            if read and self.replica is not self.primary:
                try:
                    driver = await _checkout(stack, self.replica)
                except (TimeoutError, OSError, DBAPIError) as error:
                    # A replica outage degrades reads to the primary instead of failing them.
                    log.warning("replica unavailable; reading from the primary",
                                extra={"error.type": type(error).__name__})
                    driver = await _checkout(stack, self.primary)
            else:
                driver = await _checkout(stack, self.primary)
            yield driver

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.primary.dispose()
        if self.replica is not self.primary:
            await self.replica.dispose()


async def asyncpg_connect(dsn: str, settings: Settings | None = None, **kwargs: Any) -> asyncpg.Connection:
    """One raw asyncpg connection (for LISTEN/NOTIFY and bulk reads)."""
    ssl = settings.database_ssl() if settings is not None else None
    return await asyncpg.connect(dsn, ssl=ssl, timeout=10, **kwargs)


async def listen_forever(settings: Settings, channel: str, callback: Callable[..., None],
                         *, on_connect: Callable[[], None] | None = None) -> None:
    """LISTEN on `channel` of the primary until cancelled, reconnecting after any failure.

    `on_connect` runs after each (re)connection, so a caller can catch up with
    notifications it missed while disconnected.
    """
    while True:
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg_connect(settings.primary_dsn(), settings)
            await conn.add_listener(channel, callback)
            if on_connect is not None:
                on_connect()
            while not conn.is_closed():  # noqa: ASYNC110 - asyncpg exposes no awaitable close
                await asyncio.sleep(1)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("listener disconnected; reconnecting", extra={"error.type": type(error).__name__,
                                                                      "event.dataset": channel})
        finally:
            if conn is not None and not conn.is_closed():
                await conn.close()
        await asyncio.sleep(1)
