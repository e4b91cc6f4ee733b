"""Connection pools: one for the primary (writes), one for the replica (reads)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import orjson

from fastloans.db.outages import is_database_outage
from fastloans.db.pool import Checkout, ConnectionPool
from fastloans.settings import Settings

log = logging.getLogger("fastloans.db")


def json_value(value: Any) -> Any:
    """A json/jsonb column's value, whether the driver returned it as text or already decoded."""
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def sqlalchemy_url(dsn: str) -> str:
    """A plain `postgresql://` DSN in the form SQLAlchemy's asyncpg dialect takes.

    Several hosts (`h1:5432,h2:5433`, as libpq and asyncpg write them) become `host=` query
    parameters, the only multi-host form SQLAlchemy parses.
    """
    parts = urlsplit(dsn)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if "," not in hosts:
        return "postgresql+asyncpg://" + dsn.split("://", 1)[1]
    query = parse_qsl(parts.query) + [("host", host) for host in hosts.split(",") if host]
    return urlunsplit(("postgresql+asyncpg", userinfo + at, parts.path, urlencode(query), parts.fragment))


def _pool(dsn: str, settings: Settings, *, name: str, server_settings: dict[str, str]) -> ConnectionPool:
    return ConnectionPool(
        dsn,
        # Up to twice DATABASE_POOL_SIZE connections, opened as needed and then kept.
        size=settings.database_pool_size * 2,
        ssl=settings.database_ssl(),
        server_settings={"application_name": f"{settings.service_name}-{name}", **server_settings},
        timeout=10,
    )


async def _answers(pool: ConnectionPool, within: float = 5.0) -> bool:
    """Whether a connection of `pool` answers `SELECT 1` within `within` seconds (waiting for a free one included)."""
    try:
        async with asyncio.timeout(within), pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
    except Exception:
        return False
    return True


@dataclass
class Database:
    """The primary and replica connection pools of one process."""

    primary: ConnectionPool
    replica: ConnectionPool

    @classmethod
    def from_settings(cls, settings: Settings, **server_settings: str) -> Database:
        """Create both pools (nothing connects yet); reads use the primary if no replica is set.

        `server_settings` are PostgreSQL settings for every connection of this process.
        """
        primary = _pool(settings.primary_dsn(), settings, name="primary", server_settings=server_settings)
        replica = (
            _pool(settings.replica_dsn(), settings, name="replica", server_settings=server_settings)
            if settings.database_read_url
            else primary
        )
        return cls(primary=primary, replica=replica)

    async def ping(self) -> dict[str, bool]:
        """Whether the primary and the replica answer `SELECT 1` (within five seconds each)."""
        return {"primary": await _answers(self.primary), "replica": await _answers(self.replica)}

    async def ping_primary(self, within: float = 5.0) -> bool:
        """Whether the primary answers `SELECT 1` within `within` seconds: what readiness checks (no replica round
        trip, which decides nothing there and doubles the time a probe waits when the pools are busy)."""
        return await _answers(self.primary, within)

    @asynccontextmanager
    async def connection(self, *, read: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """A pooled asyncpg connection to the primary (or the replica when `read`).

        Statements run on asyncpg directly, with its prepared-statement cache.
        """
        held: Checkout | None = None
        pool = self.primary
        if read and self.replica is not self.primary:
            try:
                held = await self.replica.checkout()
                pool = self.replica
            except Exception as error:
                if not is_database_outage(error):
                    raise
                # A replica outage degrades reads to the primary instead of failing them.
                log.warning("replica unavailable; reading from the primary", extra={"error.type": type(error).__name__})
        if held is None:
            held = await pool.checkout()
        try:
            yield held.conn
        except BaseException as error:
            if is_database_outage(error):
                # The server went away or is no longer what this pool wants (a standby after a failover):
                # the next checkout opens a new connection, which finds the current primary.
                held.conn.terminate()
            pool.checkin(held, clean=False)
            raise
        pool.checkin(held, clean=True)

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.primary.close()
        if self.replica is not self.primary:
            await self.replica.close()


async def asyncpg_connect(dsn: str, settings: Settings | None = None, **kwargs: Any) -> asyncpg.Connection:
    """One raw asyncpg connection (for LISTEN/NOTIFY and bulk reads)."""
    ssl = settings.database_ssl() if settings is not None else None
    return await asyncpg.connect(dsn, ssl=ssl, timeout=10, **kwargs)


async def listen_forever(
    settings: Settings, channel: str, callback: Callable[..., None], *, on_connect: Callable[[], None] | None = None
) -> None:
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
            log.warning(
                "listener disconnected; reconnecting",
                extra={"error.type": type(error).__name__, "event.dataset": channel},
            )
        finally:
            if conn is not None and not conn.is_closed():
                await conn.close()
        await asyncio.sleep(1)
