"""A lean pool of asyncpg connections for the request and message paths.

Checking a connection out of SQLAlchemy's pool costs about 95 µs of CPU, and
asyncpg's own pool runs a reset query (a round trip) on every release; one
`SELECT 1` on a held connection costs about 20 µs. This pool hands out idle
connections from a stack, checks them locally (a socket the server closed is
discarded, not handed out), and opens new ones lazily up to `size`.

A connection goes back to the pool only in a clean state: if the block using it
raised while a transaction was still open, or the connection is older than
`max_lifetime`, it is closed instead.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg


class PoolClosedError(RuntimeError):
    """The pool was closed while a caller waited for a connection."""


@dataclass
class Checkout:
    """A connection handed out by the pool, and when it was opened."""

    conn: asyncpg.Connection
    opened: float


class ConnectionPool:
    """Up to `size` asyncpg connections to one server, opened on demand."""

    def __init__(
        self,
        dsn: str,
        *,
        size: int,
        acquire_timeout: float = 30.0,
        max_lifetime: float = 1800.0,
        **connect_options: Any,
    ) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one connection")
        self.dsn = dsn
        self.size = size
        self.acquire_timeout = acquire_timeout
        self.max_lifetime = max_lifetime
        self.connect_options = connect_options
        self._idle: list[Checkout] = []
        self._waiters: collections.deque[asyncio.Future[Checkout | None]] = collections.deque()
        self._open = 0  # connections open or being opened
        self._in_use = 0
        self._closed = False

    @property
    def in_use(self) -> int:
        """Connections handed out right now."""
        return self._in_use

    @property
    def opened(self) -> int:
        """Connections open (idle or in use) or being opened."""
        return self._open

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection for the duration of the block."""
        held = await self.checkout()
        clean = False
        try:
            yield held.conn
            clean = True
        finally:
            self.checkin(held, clean=clean)

    async def checkout(self) -> Checkout:
        """A connection, to be given back with `checkin` (prefer `acquire`)."""
        held = await self._take()
        self._in_use += 1
        return held

    def checkin(self, held: Checkout, *, clean: bool) -> None:
        """Give a connection back; `clean` is False when the code using it raised."""
        self._in_use -= 1
        self._give_back(held, clean)

    async def _take(self) -> Checkout:
        deadline = time.monotonic() + self.acquire_timeout
        while True:
            if self._closed:
                raise PoolClosedError("the connection pool is closed")
            while self._idle:
                held = self._idle.pop()  # the most recently used: warm, and lets the others age out
                if not held.conn.is_closed():
                    return held
                self._open -= 1  # the server closed it (a restart, a failover): forget it
            if self._open < self.size:
                self._open += 1
                try:
                    conn = await asyncpg.connect(self.dsn, **self.connect_options)
                except BaseException:
                    self._open -= 1
                    self._hand_over(None)
                    raise
                return Checkout(conn, time.monotonic())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no database connection free within {self.acquire_timeout:g} s")
            # Wait for a connection handed over on release (first come, first served), or for None:
            # a connection was closed, so there is room to open one.
            waiter: asyncio.Future[Checkout | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                handed = await asyncio.wait_for(waiter, remaining)
            except BaseException as error:
                late = waiter.result() if waiter.done() and not waiter.cancelled() else None
                if late is not None:
                    self._give_back(late, True)  # handed over just as we gave up
                else:
                    waiter.cancel()
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                if isinstance(error, TimeoutError):
                    continue  # the deadline check above raises
                raise
            if handed is not None:
                return handed

    def _give_back(self, held: Checkout, clean: bool) -> None:
        conn = held.conn
        if conn.is_closed():
            self._open -= 1
            self._hand_over(None)
        elif (
            self._closed
            or (not clean and conn.is_in_transaction())
            or time.monotonic() - held.opened > self.max_lifetime
        ):
            self._open -= 1
            conn.terminate()
            self._hand_over(None)
        elif not self._hand_over(held):
            self._idle.append(held)

    def _hand_over(self, held: Checkout | None) -> bool:
        """Give `held` (or None: room to open one) to the longest waiter; False if nobody waits."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(held)
                return True
        return False

    async def close(self) -> None:
        """Close the idle connections now and the others as they come back; wake every waiter."""
        self._closed = True
        idle, self._idle = self._idle, []
        for held in idle:
            self._open -= 1
            with contextlib.suppress(Exception):
                await asyncio.wait_for(held.conn.close(), 5)
            if not held.conn.is_closed():
                held.conn.terminate()
        while self._hand_over(None):
            pass
