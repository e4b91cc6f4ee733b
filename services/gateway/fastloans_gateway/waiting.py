"""Long-poll support: wake `GET ?wait=N` requests when the recorder stores a decision.

One LISTEN connection per process receives the recorder's NOTIFY with the
ids of the applications it decided. A waiting request reads its application again only
when its id is announced, when the LISTEN connection is made again (notifications may
have been missed meanwhile), and every RECHECK_SECONDS in case one was lost anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import Iterator

from fastloans.background import cancel_all
from fastloans.contracts import DECIDED_CHANNEL
from fastloans.db import listen_forever
from fastloans.settings import Settings

RECHECK_SECONDS = 10.0


class Watch:
    """One request's interest in an application's decision, registered before it reads the row."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def wake(self) -> None:
        """Make the next (or current) wait return."""
        self._event.set()

    async def wait(self, seconds: float) -> bool:
        """True when woken within `seconds` (by a notification or a reconnection), else False."""
        try:
            await asyncio.wait_for(self._event.wait(), seconds)
        except TimeoutError:
            return False
        self._event.clear()
        return True


class DecisionWaiters:
    """Events keyed by application id, set when a decision for it is recorded."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._watches: dict[uuid.UUID, set[Watch]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Keep a LISTEN connection open in the background."""
        self._task = asyncio.create_task(
            listen_forever(self.settings, DECIDED_CHANNEL, self._notified, on_connect=self._wake_all)
        )

    async def stop(self) -> None:
        """Close the LISTEN connection."""
        await cancel_all([self._task])

    @contextlib.contextmanager
    def watch(self, application_id: uuid.UUID) -> Iterator[Watch]:
        """Be woken when a decision for the application is announced, while inside the block."""
        watch = Watch()
        self._watches[application_id].add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(application_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[application_id]

    def _wake_all(self) -> None:
        # After a reconnection every waiter reads once more: its decision may have been announced meanwhile.
        for watches in self._watches.values():
            for watch in watches:
                watch.wake()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        # The recorder announces a batch at once: comma-separated application ids.
        if not self._watches:
            return
        for text in payload.split(","):
            try:
                application_id = uuid.UUID(text)
            except ValueError:
                continue
            for watch in self._watches.get(application_id, ()):
                watch.wake()
