"""Admission control: what a gateway process takes on before it answers 503 with Retry-After instead.

Three bounds, each checked when a submission or revision arrives and before it costs a database round trip:

- **in flight**: the submissions and revisions this process is storing right now (waiting for the group
  commit included). By Little's law this bounds the latency of the ones it accepts: with at most N in flight
  and a store rate of R per second, none waits much longer than N / R. Past the bound the process is slower
  than its arrivals, and queueing more would only turn every answer into a timeout.
- **outbox backlog**: the rows not yet published to Kafka, sampled from the database every
  `ADMISSION_SAMPLE_MS` by each process (an estimate from the ids at both ends of the table: the relay deletes
  in id order, so the span between them counts the rows left, plus any gap). Past the bound Kafka or the
  relay is not keeping up, and accepting more would only grow the delay before decisions.
- **standing event-loop lag**: the least lag of this process's event loop over its last three timer samples
  (`fastloans.looplag.STANDING`). A process with more work than CPU makes every request wait its turn before
  any of its code runs, so the in-flight count stays low while answers take seconds; a lag that has stood for
  a whole window (not one slow callback or one collection) says so. Refusing is far cheaper than storing, so
  the process sheds the excess and keeps answering quickly instead of timing out on everyone.

Refusing is cheap and honest: a client that gets 503 knows its application was not stored and retries after
`Retry-After` seconds (with its Idempotency-Key, the retry cannot create a second application). Every 202
is still an application that will be decided. A bound of 0 turns that check off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum

from fastloans.background import cancel_all
from fastloans.contracts import APPLICATIONS_PATH
from fastloans.db import Database
from fastloans.looplag import STANDING, StandingLag
from fastloans_gateway.applications import ApplicationError
from fastloans_gateway.metrics import ADMISSION_REFUSED, SUBMISSIONS_IN_FLIGHT

log = logging.getLogger("fastloans.gateway")

# Rows between the oldest and the newest outbox id: both ends come from the primary key's index.
BACKLOG_ESTIMATE = "SELECT COALESCE(max(id) - min(id) + 1, 0) FROM outbox"


class Refusal(StrEnum):
    """Why a submission was refused (the metric's label values)."""

    IN_FLIGHT = "in_flight"
    OUTBOX_BACKLOG = "outbox_backlog"
    LOOP_LAG = "loop_lag"


DETAILS = {
    Refusal.IN_FLIGHT: "the gateway is at capacity; nothing was stored, retry after the given seconds",
    Refusal.OUTBOX_BACKLOG: "decisions are behind (the event backlog is over its bound); nothing was stored, "
    "retry after the given seconds",
    Refusal.LOOP_LAG: "the gateway is busier than its CPU allows; nothing was stored, retry after the given seconds",
}


class Overloaded(ApplicationError):
    """A submission refused by admission control: nothing was stored."""

    def __init__(self, reason: Refusal, retry_after: int) -> None:
        super().__init__(DETAILS[reason])
        self.reason = reason
        self.retry_after = retry_after


def is_submission(method: str, path: str) -> bool:
    """Whether a request creates an application (POST) or revises one (PATCH of one application)."""
    if method == "POST":
        return path == APPLICATIONS_PATH
    if method == "PATCH" and path.startswith(APPLICATIONS_PATH + "/"):
        return "/" not in path[len(APPLICATIONS_PATH) + 1 :]
    return False


class AdmissionControl:
    """The bounds of one gateway process; `admitted()` wraps each submission or revision."""

    def __init__(
        self,
        db: Database | None,
        *,
        max_in_flight: int,
        max_outbox_backlog: int,
        max_loop_lag: float = 0.0,
        retry_after: int = 1,
        sample_interval: float = 0.5,
        lag: StandingLag = STANDING,
    ) -> None:
        self.db = db
        self.max_in_flight = max_in_flight
        self.max_outbox_backlog = max_outbox_backlog
        self.max_loop_lag = max_loop_lag
        self.lag = lag
        self.retry_after = retry_after
        self.sample_interval = sample_interval
        self.in_flight = 0
        self.backlog = 0
        self._sampler: asyncio.Task[None] | None = None
        for reason in Refusal:
            ADMISSION_REFUSED.labels(reason.value)  # present from the start: zero is not "no data"

    def shed_early(self, method: str, path: str) -> Overloaded | None:
        """The refusal of a submission or revision that can be answered before any other work, or None.

        Only the loop-lag bound: with more work than CPU, even authenticating and validating what will be refused
        takes the time the process lacks, so the edge answers 503 at once. The other bounds are checked where the
        request is stored, after it has been authenticated and validated (a bad request still gets its 4xx).
        """
        if not self.max_loop_lag or not is_submission(method, path):
            return None
        if self.lag.value() < self.max_loop_lag:
            return None
        ADMISSION_REFUSED.labels(Refusal.LOOP_LAG.value).inc()
        return Overloaded(Refusal.LOOP_LAG, self.retry_after)

    def refusal(self) -> Refusal | None:
        """Why a submission arriving now would be refused, or None."""
        if self.max_in_flight and self.in_flight >= self.max_in_flight:
            return Refusal.IN_FLIGHT
        if self.max_outbox_backlog and self.backlog >= self.max_outbox_backlog:
            return Refusal.OUTBOX_BACKLOG
        if self.max_loop_lag and self.lag.value() >= self.max_loop_lag:
            return Refusal.LOOP_LAG
        return None

    @contextmanager
    def admitted(self) -> Iterator[None]:
        """Hold an in-flight slot for the duration of the block; raise `Overloaded` when refused."""
        reason = self.refusal()
        if reason is not None:
            ADMISSION_REFUSED.labels(reason.value).inc()
            raise Overloaded(reason, self.retry_after)
        self.in_flight += 1
        SUBMISSIONS_IN_FLIGHT.inc()
        try:
            yield
        finally:
            self.in_flight -= 1
            SUBMISSIONS_IN_FLIGHT.dec()

    def start(self) -> None:
        """Start sampling the outbox backlog (only when that bound is on)."""
        if self.max_outbox_backlog and self.db is not None:
            self._sampler = asyncio.create_task(self._sample())

    async def stop(self) -> None:
        """Stop sampling."""
        await cancel_all([self._sampler])

    async def _sample(self) -> None:
        assert self.db is not None
        while True:
            try:
                async with self.db.connection() as conn:
                    self.backlog = int(await conn.fetchval(BACKLOG_ESTIMATE))
            except asyncio.CancelledError:
                raise
            except Exception:
                # Without a reading the last one stands: an outage of the database answers 503 on its own.
                log.debug("outbox backlog unavailable", exc_info=True)
            await asyncio.sleep(self.sample_interval)
