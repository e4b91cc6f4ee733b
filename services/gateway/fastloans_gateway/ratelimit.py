"""Rate limits per tenant, shared by every gateway process and replica through PostgreSQL.

Each tenant's requests are counted over a sliding window of `burst / rate` seconds (at least
one second) that holds at most `limit` requests: the estimate is the previous fixed window's
count, weighted by how much of it still overlaps the sliding window, plus the current one's.

Each process counts what it accepts locally and, every sync interval, adds its counts to its
own rows of `rate_limit_counts` and reads the other processes' rows, in one statement. Until
the next sync it may accept its share of what remains: the remainder divided by the number of
processes serving the tenant. So the processes together stay within the limit while that
number is stable; a process that starts serving a tenant can add at most its first share
before the others learn of it. Counts use the machines' wall clocks (keep them in NTP sync).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from fastloans.background import cancel_all
from fastloans.db import Database
from fastloans.db.pool import PoolClosedError

log = logging.getLogger("fastloans.gateway.ratelimit")

MIN_WINDOW_SECONDS = 1.0
MAX_WINDOW_SECONDS = 3600.0
# A tenant unseen by a process for this long is forgotten there (and no longer synchronised).
IDLE_SECONDS = 10.0
CLEANUP_SECONDS = 30.0
# How long a request waits for a sync before it is counted locally (the database may be down).
SYNC_TIMEOUT = 1.0
# The tenant id of the presence rows, by which processes count each other (tenants' ids are random).
PRESENCE = uuid.UUID(int=0)

# One statement per process and sync interval: renew this process's presence row, add its new counts,
# read the other processes' counts of the tenants it serves and how many other processes are alive.
SYNC = """
WITH presence AS (
    INSERT INTO rate_limit_counts AS c (tenant_id, window_start, process, count, expires)
    VALUES ($8, 0, $1, 0, $9)
    ON CONFLICT (tenant_id, window_start, process) DO UPDATE SET expires = EXCLUDED.expires
), counted AS (
    INSERT INTO rate_limit_counts AS c (tenant_id, window_start, process, count, expires)
    SELECT d.tenant_id, d.window_start, $1, d.n, d.expires
    FROM unnest($2::uuid[], $3::bigint[], $4::bigint[], $5::bigint[]) AS d(tenant_id, window_start, n, expires)
    ON CONFLICT (tenant_id, window_start, process) DO UPDATE SET count = c.count + EXCLUDED.count
)
SELECT c.tenant_id, c.window_start, sum(c.count)::bigint AS total, count(*)::int AS processes
FROM unnest($6::uuid[], $7::bigint[]) AS q(tenant_id, window_start)
JOIN rate_limit_counts c ON c.tenant_id = q.tenant_id AND c.window_start = q.window_start
WHERE c.process <> $1
GROUP BY c.tenant_id, c.window_start
UNION ALL
SELECT $8, 0, 0, count(*)::int FROM rate_limit_counts WHERE tenant_id = $8 AND process <> $1 AND expires > $10
"""
CLEANUP = "DELETE FROM rate_limit_counts WHERE expires < $1"


@dataclass(frozen=True)
class Limit:
    """A tenant's limit as a sliding window: at most `limit` requests over `window_ms`."""

    window_ms: int
    limit: int

    @classmethod
    def of(cls, rate: float, burst: int) -> Limit:
        """The window for `rate` requests a second with bursts of `burst`: the time a burst takes to earn."""
        seconds = burst / rate
        if MIN_WINDOW_SECONDS <= seconds <= MAX_WINDOW_SECONDS:
            return cls(window_ms=round(seconds * 1000), limit=burst)
        seconds = min(MAX_WINDOW_SECONDS, max(MIN_WINDOW_SECONDS, seconds))
        return cls(window_ms=round(seconds * 1000), limit=max(1, round(rate * seconds)))


def estimate(previous: float, current: float, elapsed: float) -> float:
    """Requests in the sliding window, `elapsed` (0..1) of the way through the current fixed window."""
    return previous * (1.0 - elapsed) + current


def retry_after(previous: float, current: float, elapsed: float, window_seconds: float, limit: int) -> int:
    """Whole seconds (at least 1) until one more request fits, if nothing else is accepted meanwhile."""
    excess = estimate(previous, current, elapsed) + 1 - limit
    if excess <= 0:
        return 1
    rest = (1.0 - elapsed) * window_seconds
    if previous > 0 and previous * (1.0 - elapsed) >= excess:
        # The previous window's weight alone falls far enough before this window ends.
        wait = excess * window_seconds / previous
    elif current > 0 and limit > 1:
        # In the next window the current count becomes the previous one and fades in turn.
        wait = rest + window_seconds * max(0.0, 1.0 - (limit - 1) / current)
    else:
        wait = rest + window_seconds
    return max(1, math.ceil(wait))


def share(remaining: float, processes: int, rng: Callable[[], float] = random.random) -> int:
    """One process's part of `remaining` requests among `processes`, rounded at random so the parts add up."""
    if remaining <= 0:
        return 0
    part = remaining / max(1, processes)
    whole = math.floor(part)
    return whole + (1 if rng() < part - whole else 0)


@dataclass
class _Tenant:
    limit: Limit
    seen: float
    synced: bool = False
    syncs: int = 0
    allowance: int = 0
    others_active: int = 0
    mine: dict[int, int] = field(default_factory=dict)
    pending: dict[int, int] = field(default_factory=dict)
    others: dict[int, int] = field(default_factory=dict)

    def total(self, window_start: int) -> int:
        return self.mine.get(window_start, 0) + self.others.get(window_start, 0)


class TenantLimiter:
    """Per-tenant admission, synchronised with the other gateway processes every `interval` seconds."""

    def __init__(self, db: Database, *, interval: float, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.interval = interval
        self.clock = clock
        self.process = uuid.uuid4()
        self.syncs = 0
        self.processes = 1
        self._tenants: dict[uuid.UUID, _Tenant] = {}
        self._wake = asyncio.Event()
        self._synced: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._cleaned = 0.0

    async def admit(self, tenant_id: uuid.UUID, limit: Limit) -> int | None:
        """None if the tenant may make one more request now (and count it), else seconds to wait."""
        state = self._tenants.get(tenant_id)
        if state is None or state.limit != limit:
            state = self._tenants[tenant_id] = _Tenant(limit=limit, seen=self.clock())
        state.seen = self.clock()
        if not state.synced:
            await self._next_sync(wake=True)
        for attempt in range(2):
            state = self._tenants.setdefault(tenant_id, state)
            window = limit.window_ms
            now_ms = int(self.clock() * 1000)
            current = now_ms - now_ms % window
            elapsed = (now_ms - current) / window
            previous_count, current_count = state.total(current - window), state.total(current)
            if estimate(previous_count, current_count, elapsed) + 1 > limit.limit:
                return retry_after(previous_count, current_count, elapsed, window / 1000, limit.limit)
            if state.allowance >= 1:
                state.allowance -= 1
                state.mine[current] = state.mine.get(current, 0) + 1
                state.pending[current] = state.pending.get(current, 0) + 1
                return None
            if attempt == 0:
                # The window has room, but this process has used its share: the next sync may give it more.
                await self._next_sync(wake=False)
        return 1

    async def _next_sync(self, *, wake: bool) -> None:
        # Wait for the next sync (shared by every request waiting for it); `wake` makes it happen now.
        self.start()
        if self._synced is None:
            self._synced = asyncio.get_running_loop().create_future()
        waiting = self._synced
        if wake:
            self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiting), SYNC_TIMEOUT + self.interval)
        for state in self._tenants.values():
            if not state.synced:  # the database did not answer in time: count locally until it does
                state.synced = True
                state.allowance = share(state.limit.limit - self._estimate(state), self.processes)

    def start(self) -> None:
        """Synchronise in the background from now on (this process counts as present from its first sync)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop synchronising."""
        await cancel_all([self._task])

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            waiting, self._synced = self._synced, None
            try:
                await self.sync()
            except PoolClosedError:
                return  # the process is shutting down
            except Exception as error:
                if not self._failing:
                    log.warning(
                        "rate-limit counts not synchronised; counting locally",
                        extra={"error.type": type(error).__name__},
                    )
                self._failing = True
            else:
                self._failing = False
            finally:
                if waiting is not None and not waiting.done():
                    waiting.set_result(None)

    async def sync(self) -> None:
        """Add this process's new counts to the shared rows and learn the others' (one statement)."""
        now = self.clock()
        idle = [t for t, s in self._tenants.items() if now - s.seen > max(IDLE_SECONDS, 2 * s.limit.window_ms / 1000)]
        for tenant_id in idle:
            del self._tenants[tenant_id]
        now_ms = int(now * 1000)
        present_until = now_ms + max(1000, round(5 * self.interval * 1000))
        flush: list[tuple[uuid.UUID, int, int, int]] = []
        query: list[tuple[uuid.UUID, int]] = []
        taken: dict[uuid.UUID, dict[int, int]] = {}
        for tenant_id, state in self._tenants.items():
            window = state.limit.window_ms
            oldest = now_ms - now_ms % window - window
            taken[tenant_id], state.pending = state.pending, {}
            flush.extend(
                (tenant_id, start, n, start + 2 * window) for start, n in taken[tenant_id].items() if start >= oldest
            )
            query.extend(((tenant_id, oldest), (tenant_id, oldest + window)))
            state.mine = {start: n for start, n in state.mine.items() if start >= oldest}
        try:
            async with self.db.connection() as conn:
                rows = await conn.fetch(
                    SYNC,
                    self.process,
                    [f[0] for f in flush],
                    [f[1] for f in flush],
                    [f[2] for f in flush],
                    [f[3] for f in flush],
                    [q[0] for q in query],
                    [q[1] for q in query],
                    PRESENCE,
                    present_until,
                    now_ms,
                )
                if now - self._cleaned > CLEANUP_SECONDS:
                    self._cleaned = now
                    await conn.execute(CLEANUP, now_ms)
        except BaseException:
            for tenant_id, counts in taken.items():  # sent again with the next sync
                unsent = self._tenants.get(tenant_id)
                if unsent is not None:
                    for start, n in counts.items():
                        unsent.pending[start] = unsent.pending.get(start, 0) + n
            self._refresh()
            raise
        self.syncs += 1
        seen: dict[uuid.UUID, dict[int, tuple[int, int]]] = {tenant_id: {} for tenant_id in taken}
        for row in rows:
            if row["tenant_id"] == PRESENCE:
                self.processes = row["processes"] + 1
            else:
                seen[row["tenant_id"]][row["window_start"]] = (row["total"], row["processes"])
        for tenant_id, windows in seen.items():
            synced = self._tenants.get(tenant_id)
            if synced is not None:
                synced.others = {start: total for start, (total, _) in windows.items()}
                # Other processes may have started serving a new tenant at the same moment without
                # counting yet: its first share assumes every live process does.
                active = max((processes for _, processes in windows.values()), default=0)
                state.others_active = active if state.syncs else max(active, self.processes - 1)
                state.syncs += 1
                state.synced = True
        self._refresh()

    def _estimate(self, state: _Tenant) -> float:
        window = state.limit.window_ms
        now_ms = int(self.clock() * 1000)
        current = now_ms - now_ms % window
        return estimate(state.total(current - window), state.total(current), (now_ms - current) / window)

    def _refresh(self) -> None:
        # Until the next sync, each process may take its share of what remains in the window.
        for state in self._tenants.values():
            if state.synced:
                state.allowance = share(state.limit.limit - self._estimate(state), state.others_active + 1)
