"""Long-poll support: wake `GET ?wait=N` requests when the recorder stores a decision.

One LISTEN connection per process receives the recorder's NOTIFY with the
application id; waiters also re-check on their own every second, so a lost
connection only slows them down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict

import asyncpg

from fastloans.db import asyncpg_connect
from fastloans.settings import Settings

log = logging.getLogger("fastloans.gateway.waiting")

DECIDED_CHANNEL = "fastloans_decided"


class DecisionWaiters:
    """Events keyed by application id, set when a decision for it is recorded."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._waiters: dict[uuid.UUID, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None

    def start(self) -> None:
        """Keep a LISTEN connection open in the background."""
        self._task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        """Close the LISTEN connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()

    async def wait(self, application_id: uuid.UUID, seconds: float) -> None:
        """Return when a decision for the application is announced, or after `seconds`."""
        event = asyncio.Event()
        self._waiters[application_id].add(event)
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), seconds)
        finally:
            waiters = self._waiters.get(application_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[application_id]

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            application_id = uuid.UUID(payload)
        except ValueError:
            return
        for event in self._waiters.get(application_id, ()):
            event.set()

    async def _listen(self) -> None:
        while True:
            try:
                self._conn = await asyncpg_connect(self.settings.primary_dsn(), self.settings)
                await self._conn.add_listener(DECIDED_CHANNEL, self._notified)
                while not self._conn.is_closed():  # noqa: ASYNC110 - asyncpg exposes no awaitable close
                    await asyncio.sleep(1)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("decision listener disconnected; reconnecting", extra={"error.type": type(error).__name__})
            await asyncio.sleep(1)
