"""Long-poll support: wake `GET ?wait=N` requests when the recorder stores a decision.

One LISTEN connection per process receives the recorder's NOTIFY with the
ids of the applications it decided; waiters also re-check on their own every second, so a lost
connection only slows them down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict

from fastloans.db import listen_forever
from fastloans.settings import Settings

log = logging.getLogger("fastloans.gateway.waiting")

DECIDED_CHANNEL = "fastloans_decided"


class DecisionWaiters:
    """Events keyed by application id, set when a decision for it is recorded."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._waiters: dict[uuid.UUID, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Keep a LISTEN connection open in the background."""
        self._task = asyncio.create_task(listen_forever(self.settings, DECIDED_CHANNEL, self._notified))

    async def stop(self) -> None:
        """Close the LISTEN connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

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
        # The recorder announces a batch at once: comma-separated application ids.
        if not self._waiters:
            return
        for text in payload.split(","):
            try:
                application_id = uuid.UUID(text)
            except ValueError:
                continue
            for event in self._waiters.get(application_id, ()):
                event.set()
