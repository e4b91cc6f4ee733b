"""The sending side of the dispatcher: claim due deliveries, sign, send, and record the outcome.

Deliveries are claimed with FOR UPDATE SKIP LOCKED and held by a lease, so any number of dispatcher processes
share the queue and a delivery whose process died is taken again once its lease ends. A delivery waits while an
earlier one for the same application and endpoint is pending (revision order, unless the endpoint opted out with
`ordered: false`), and an endpoint never has more than WEBHOOK_ENDPOINT_CONCURRENCY attempts in flight, so a slow
endpoint holds up only itself.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import socket
import ssl
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import orjson

from fastloans import webhooks
from fastloans.background import cancel_all
from fastloans.db import Database
from fastloans_webhooks.metrics import ATTEMPT_SECONDS, ATTEMPTS, DISABLED_ENDPOINTS, DUE, OLDEST_PENDING, PENDING
from fastloans_webhooks.settings import WebhooksSettings

log = logging.getLogger("fastloans.webhooks")

CLAIM = """
WITH ready AS (
    SELECT e.id, e.ordered,
           $2 - (SELECT count(*) FROM webhook_deliveries f
                  WHERE f.endpoint_id = e.id AND f.status = 'pending' AND f.lease_until > now()
                    AND f.id <> ALL($4::bigint[])) AS room
      FROM webhook_endpoints e
     WHERE e.enabled
       AND EXISTS (SELECT x.id FROM webhook_deliveries x
                    WHERE x.endpoint_id = e.id AND x.status = 'pending' AND x.next_attempt_at <= now())
), claimed AS (
    SELECT c.id
      FROM ready r, LATERAL (
        SELECT d.id FROM webhook_deliveries d
         WHERE d.endpoint_id = r.id AND d.status = 'pending' AND d.next_attempt_at <= now()
           AND (d.lease_until IS NULL OR d.lease_until < now())
           AND (NOT r.ordered OR NOT EXISTS (
               SELECT p.id FROM webhook_deliveries p
                WHERE p.endpoint_id = d.endpoint_id AND p.application_id = d.application_id
                  AND p.status = 'pending' AND (p.revision, p.id) < (d.revision, d.id)))
         ORDER BY d.next_attempt_at, d.id
         LIMIT greatest(r.room, 0)
         FOR UPDATE OF d SKIP LOCKED
      ) c
     LIMIT $1
)
UPDATE webhook_deliveries d
   SET lease_until = now() + make_interval(secs => $3), attempts = d.attempts + 1
  FROM claimed, webhook_endpoints e
 WHERE d.id = claimed.id AND e.id = d.endpoint_id
RETURNING d.id, d.endpoint_id, d.message_id, d.body, d.attempts, e.url, e.secret, e.previous_secret,
          (e.previous_secret_expires_at > now()) AS previous_in_use
"""
# Outcomes are recorded in batches: every attempt that ended while the previous batch was being written goes into
# the next one, in one transaction (a group commit), so recording costs a few statements per batch, not per attempt.
RECORD_ATTEMPTS = """
INSERT INTO webhook_attempts (delivery_id, status_code, latency_ms, error)
SELECT * FROM unnest($1::bigint[], $2::int[], $3::float8[], $4::text[])
"""
DELIVERED = """
UPDATE webhook_deliveries d SET status = 'delivered', delivered_at = now(), lease_until = NULL,
       last_status_code = t.status_code, last_error = NULL
  FROM unnest($1::bigint[], $2::int[]) AS t(id, status_code)
 WHERE d.id = t.id
"""
RESCHEDULE = """
UPDATE webhook_deliveries d SET status = t.status, next_attempt_at = now() + make_interval(secs => t.delay),
       lease_until = NULL, last_status_code = t.status_code, last_error = t.error
  FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::int[], $5::text[]) AS t(id, status, delay, status_code, error)
 WHERE d.id = t.id
"""
ENDPOINT_OK = """
UPDATE webhook_endpoints SET failing_since = NULL WHERE id = ANY($1::uuid[]) AND failing_since IS NOT NULL
"""
# The failure clock starts at the first failure since the last success; once it has run WEBHOOK_DISABLE_AFTER_HOURS
# the endpoint is disabled, saying why.
ENDPOINT_FAILED = """
UPDATE webhook_endpoints
   SET failing_since = coalesce(failing_since, now()),
       enabled = enabled AND coalesce(failing_since, now()) > now() - make_interval(secs => $2),
       disabled_reason = CASE WHEN enabled AND coalesce(failing_since, now()) <= now() - make_interval(secs => $2)
                              THEN 'every delivery failed since ' || to_char(failing_since AT TIME ZONE 'UTC',
                                   'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                              ELSE disabled_reason END,
       updated_at = now()
 WHERE id = ANY($1::uuid[])
"""
ENDPOINT_GONE = """
UPDATE webhook_endpoints SET enabled = false, disabled_reason = 'the endpoint answered 410 Gone', updated_at = now()
 WHERE id = ANY($1::uuid[])
"""
QUEUE_STATS = """
SELECT (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending') AS pending,
       (SELECT coalesce(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8
          FROM webhook_deliveries WHERE status = 'pending') AS oldest,
       (SELECT count(*) FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
         WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND e.enabled) AS due,
       (SELECT count(*) FROM webhook_endpoints WHERE NOT enabled) AS disabled
"""
TAKE_VERIFICATION = """
UPDATE webhook_endpoints SET verification_requested_at = NULL
 WHERE id = (SELECT id FROM webhook_endpoints WHERE verification_requested_at IS NOT NULL
              ORDER BY verification_requested_at LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id, url, secret
"""
STORE_VERIFICATION = """
UPDATE webhook_endpoints SET verification = $2::jsonb, verified_at = CASE WHEN $3 THEN now() END WHERE id = $1
"""
# Delivered and given-up deliveries (and their attempts) are kept this long for GET …/deliveries and recovery.
PRUNE = """
DELETE FROM webhook_deliveries
 WHERE id IN (SELECT id FROM webhook_deliveries
               WHERE status <> 'pending' AND created_at < now() - make_interval(secs => $1) LIMIT 10000)
"""
ERROR_MAX = 300
# Bytes of a receiver's answer that are read (and ignored) before its connection is given up.
RESPONSE_BODY_MAX = 64 * 1024
# The receiver check's old timestamp: well past the five minutes the Standard Webhooks libraries tolerate.
STALE_SECONDS = 3600


class Refused(Exception):
    """The endpoint's URL resolves to an address that may not be called."""


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: a status code (None without an answer), a Retry-After, an error."""

    status: int | None
    retry_after: float | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        """2xx; a redirect is a failure (its Location is not followed)."""
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class Attempt:
    """One ended attempt of a delivery (`attempts` counts it), waiting to be recorded."""

    delivery_id: int
    endpoint_id: uuid.UUID
    attempts: int
    outcome: Outcome
    elapsed: float


@dataclass
class OutcomePlan:
    """What a batch of attempts changes: the rows of each statement, and attempts by outcome (for the metric)."""

    delivered: list[tuple[int, int | None]] = field(default_factory=list)
    rescheduled: list[tuple[int, str, float, int | None, str]] = field(default_factory=list)
    succeeded: set[uuid.UUID] = field(default_factory=set)
    failing: set[uuid.UUID] = field(default_factory=set)
    gone: set[uuid.UUID] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)


def plan_outcomes(attempts: list[Attempt], settings: WebhooksSettings) -> OutcomePlan:
    """Sort ended attempts into delivered, retried later, given up and gone (410); no I/O."""
    plan = OutcomePlan()
    for attempt in attempts:
        outcome = attempt.outcome
        if outcome.delivered:
            plan.delivered.append((attempt.delivery_id, outcome.status))
            plan.succeeded.add(attempt.endpoint_id)
            kind = "delivered"
        elif outcome.status == 410:
            error = outcome.error or f"answered {outcome.status}"
            plan.rescheduled.append((attempt.delivery_id, "failed", 0.0, outcome.status, error))
            plan.gone.add(attempt.endpoint_id)
            kind = "gone"
        else:
            error = outcome.error or f"answered {outcome.status}"
            delay = next_delay(
                attempt.attempts,
                settings.webhook_retry_schedule,
                jitter=settings.webhook_retry_jitter,
                asked=outcome.retry_after,
                cap=settings.webhook_max_retry_after_seconds,
            )
            status = "failed" if delay is None else "pending"
            plan.rescheduled.append((attempt.delivery_id, status, delay or 0.0, outcome.status, error))
            plan.failing.add(attempt.endpoint_id)
            kind = "failed" if delay is None else "retrying"
        plan.counts[kind] = plan.counts.get(kind, 0) + 1
    # An endpoint that both succeeded and failed in one batch is not failing (its failure clock is reset).
    plan.failing -= plan.succeeded
    return plan


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)


def next_delay(
    attempts: int, schedule: tuple[float, ...], *, jitter: float, asked: float | None, cap: float
) -> float | None:
    """Seconds until the next attempt after `attempts` failed ones, or None when the schedule is spent."""
    if attempts >= len(schedule):
        return None
    delay = schedule[attempts] * random.uniform(1 - jitter, 1 + jitter)  # noqa: S311  (jitter, not secrecy)
    if asked is not None:
        delay = max(delay, min(asked, cap))
    return delay


async def resolve(host: str, port: int, *, environment: str) -> str:
    """The address to call for `host`: every address it resolves to must be allowed (no DNS rebinding)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise Refused(f"cannot resolve {host}: {error}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    refused = [a for a in addresses if not webhooks.address_allowed(a, environment=environment)]
    if not addresses or refused:
        raise Refused(f"{host} resolves to an address that may not be called ({', '.join(refused)})")
    return addresses[0]


class Dispatcher:
    """Claims due deliveries and sends each in its own task, at most WEBHOOK_CONCURRENCY at a time."""

    def __init__(self, db: Database, settings: WebhooksSettings) -> None:
        self.db = db
        self.settings = settings
        key = settings.webhook_secret_key.get_secret_value() if settings.webhook_secret_key else None
        self.box = webhooks.secret_box(key, settings.environment)
        # Created on first use, inside the event loop (aiohttp's sessions belong to one loop).
        self._session: aiohttp.ClientSession | None = None
        self.slots = asyncio.Semaphore(settings.webhook_concurrency)
        self._stopping = asyncio.Event()
        # Set when an attempt ends: its endpoint may have room again, so the claim loop looks at once.
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        # Outcomes waiting to be recorded, each with the future its attempt awaits; set when one is added.
        self._outcomes: list[tuple[Attempt, asyncio.Future[None]]] = []
        # Deliveries whose attempt has ended here but is not recorded yet: still leased in the database, but no
        # longer in flight at their endpoint, so they do not count against its WEBHOOK_ENDPOINT_CONCURRENCY.
        self._unrecorded: set[int] = set()
        self._outcome_added = asyncio.Event()
        self._recorder: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the claim loop and the queue sampler."""
        self._tasks = [asyncio.create_task(self._claim_loop()), asyncio.create_task(self._sample())]
        self._recorder = asyncio.create_task(self._record_loop())

    async def stop(self) -> None:
        """Stop claiming, let the attempts in flight finish and be recorded (bounded), close the client."""
        self._stopping.set()
        await cancel_all(self._tasks)
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=self.settings.webhook_timeout_seconds + 5)
        await cancel_all([*self._in_flight, self._recorder])
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP client of every attempt: pooled keep-alive connections, no proxy from the environment."""
        if self._session is None:
            ca_file = self.settings.webhook_ca_file
            tls: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.settings.webhook_concurrency, use_dns_cache=False, ssl=tls),
                headers={"User-Agent": "fastloans-webhooks/1", "Content-Type": "application/json"},
                auto_decompress=False,
                trust_env=False,
            )
        return self._session

    async def _claim_loop(self) -> None:
        interval = self.settings.webhook_poll_ms / 1000
        while not self._stopping.is_set():
            claimed = 0
            self._wake.clear()
            try:
                claimed = await self.claim_once() + await self.verify_once()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("could not claim deliveries", extra={"error.type": type(error).__name__})
            if not claimed:
                await self._idle(interval)

    async def _idle(self, interval: float) -> None:
        """Wait until an attempt ends, the dispatcher stops, or `interval` seconds have passed."""
        waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(self._stopping.wait())]
        try:
            await asyncio.wait(waits, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    async def verify_once(self) -> int:
        """Start one requested receiver check, if any (in a task of its own); how many were started."""
        async with self.db.connection() as conn:
            row = await conn.fetchrow(TAKE_VERIFICATION)
        if row is None:
            return 0
        self._track(asyncio.create_task(self._verify(row)))
        return 1

    def _track(self, task: asyncio.Task[None]) -> None:
        self._in_flight.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wake.set()

    async def _verify(self, row: asyncpg.Record) -> None:
        async with self.slots:
            report = await self.check_receiver(row["url"], self.box.open(row["secret"]))
            try:
                async with self.db.connection() as conn:
                    await conn.execute(STORE_VERIFICATION, row["id"], orjson.dumps(report).decode(), report["passed"])
            except Exception as error:
                log.warning("could not store a receiver check", extra={"error.type": type(error).__name__})

    async def check_receiver(self, url: str, secret: str) -> dict[str, Any]:
        """A signed ping (accept), a badly signed one and one too old (refuse), the first again (acknowledge)."""
        now = int(time.time())
        message_id = webhooks.message_id(f"verify:{uuid.uuid4()}")
        body = webhooks.body(webhooks.PING, datetime.now(UTC), {"verification": True})
        forged = webhooks.new_secret()
        sends = (
            ("signed", "2xx", message_id, now, [secret]),
            ("bad_signature", "refusal", webhooks.message_id(f"verify:{uuid.uuid4()}"), now, [forged]),
            ("old_timestamp", "refusal", webhooks.message_id(f"verify:{uuid.uuid4()}"), now - STALE_SECONDS, [secret]),
            ("repeat", "2xx", message_id, now, [secret]),
        )
        checks = []
        for name, expected, ident, timestamp, secrets in sends:
            try:
                outcome = await self.send(url, ident, body, secrets, timestamp=timestamp)
            except Refused as error:
                outcome = Outcome(None, error=str(error))
            answered = outcome.status is not None
            passed = outcome.delivered if expected == "2xx" else answered and 400 <= (outcome.status or 0) < 500
            checks.append(
                {
                    "name": name,
                    "expected": expected,
                    "status_code": outcome.status,
                    "error": outcome.error,
                    "passed": passed,
                }
            )
        return {
            "checked_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "passed": all(c["passed"] for c in checks),
            "checks": checks,
        }

    async def claim_once(self) -> int:
        """Claim as many due deliveries as there are free slots and start sending them; how many."""
        free = self.settings.webhook_concurrency - len(self._in_flight)
        if free <= 0:
            return 0
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                CLAIM,
                free,
                self.settings.webhook_endpoint_concurrency,
                self.settings.lease_seconds,
                list(self._unrecorded),
            )
        for row in rows:
            self._track(asyncio.create_task(self._deliver(row)))
        return len(rows)

    async def _deliver(self, row: asyncpg.Record) -> None:
        async with self.slots:
            secrets = [self.box.open(row["secret"])]
            if row["previous_in_use"] and row["previous_secret"] is not None:
                secrets.append(self.box.open(row["previous_secret"]))
            started = time.perf_counter()
            try:
                outcome = await self.send(row["url"], row["message_id"], bytes(row["body"]), secrets)
            except Refused as error:
                outcome = Outcome(None, error=str(error))
            elapsed = time.perf_counter() - started
            ATTEMPT_SECONDS.observe(elapsed)
        # Outside the slot: the next attempt may start while this one waits for its batch to be written.
        recorded = asyncio.get_running_loop().create_future()
        self._outcomes.append((Attempt(row["id"], row["endpoint_id"], row["attempts"], outcome, elapsed), recorded))
        self._unrecorded.add(row["id"])
        self._outcome_added.set()
        self._wake.set()
        try:
            await recorded
        except Exception as error:  # the lease runs out and the delivery is attempted again
            log.warning("could not record an attempt", extra={"error.type": type(error).__name__})

    async def send(
        self, url: str, message_id: str, body: bytes, secrets: list[str], *, timestamp: int | None = None
    ) -> Outcome:
        """One signed POST to the address `url` resolves to, checked first; never follows a redirect."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = await self.resolve(host, port)
        netloc = f"[{address}]" if ":" in address else address
        if parts.port:
            netloc += f":{parts.port}"
        pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        timestamp = int(time.time()) if timestamp is None else timestamp
        headers = {
            "Host": parts.netloc.rsplit("@", 1)[-1],
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": webhooks.signature_header(secrets, message_id, timestamp, body),
        }
        # Connected to the checked address; TLS still verifies the certificate against the URL's host name.
        server_hostname = host if parts.scheme == "https" else None
        try:
            async with (
                asyncio.timeout(self.settings.webhook_timeout_seconds),
                self.session.post(
                    pinned, data=body, headers=headers, allow_redirects=False, server_hostname=server_hostname
                ) as response,
            ):
                # The body is read (and dropped) so that the connection can be kept alive for the next attempt;
                # one longer than RESPONSE_BODY_MAX is cut off, and its connection is closed.
                read = 0
                while read <= RESPONSE_BODY_MAX and (chunk := await response.content.readany()):
                    read += len(chunk)
                status = response.status
                asked = response.headers.get("Retry-After")
        except TimeoutError:
            return Outcome(None, error=f"no answer within {self.settings.webhook_timeout_seconds:g} s")
        except (aiohttp.ClientError, OSError, ValueError) as error:
            return Outcome(None, error=f"{type(error).__name__}: {str(error)[:ERROR_MAX]}")
        if 300 <= status < 400:
            return Outcome(status, error="redirects are not followed")
        if 200 <= status < 300:
            return Outcome(status)
        return Outcome(status, retry_after=retry_after(asked, time.time()))

    async def resolve(self, host: str, port: int) -> str:
        """The address to call for `host` (see `resolve`)."""
        return await resolve(host, port, environment=self.settings.environment)

    async def _record_loop(self) -> None:
        """Write the outcomes that have ended, a batch at a time, and tell each attempt when its batch is in."""
        while True:
            await self._outcome_added.wait()
            self._outcome_added.clear()
            batch, self._outcomes = self._outcomes, []
            if not batch:
                continue
            try:
                counts = await self.record([attempt for attempt, _ in batch])
            except asyncio.CancelledError:
                for _, recorded in batch:
                    recorded.cancel()
                raise
            except Exception as error:
                for attempt, recorded in batch:
                    self._unrecorded.discard(attempt.delivery_id)
                    if not recorded.done():
                        recorded.set_exception(error)
                continue
            finally:
                self._wake.set()
            self._unrecorded.difference_update(attempt.delivery_id for attempt, _ in batch)
            for outcome, count in counts.items():
                ATTEMPTS.labels(outcome).inc(count)
            for _, recorded in batch:
                if not recorded.done():
                    recorded.set_result(None)

    async def record(self, attempts: list[Attempt]) -> dict[str, int]:
        """Record a batch of attempts and what follows from each, in one transaction; attempts by outcome."""
        plan = plan_outcomes(attempts, self.settings)
        async with self.db.connection() as conn, conn.transaction():
            await conn.execute(
                RECORD_ATTEMPTS,
                [a.delivery_id for a in attempts],
                [a.outcome.status for a in attempts],
                [a.elapsed * 1000 for a in attempts],
                [a.outcome.error for a in attempts],
            )
            if plan.delivered:
                await conn.execute(DELIVERED, *zip(*plan.delivered, strict=True))
                await conn.execute(ENDPOINT_OK, sorted(plan.succeeded))
            if plan.rescheduled:
                await conn.execute(RESCHEDULE, *zip(*plan.rescheduled, strict=True))
            if plan.gone:
                await conn.execute(ENDPOINT_GONE, sorted(plan.gone))
            if plan.failing:
                hours = self.settings.webhook_disable_after_hours
                await conn.execute(ENDPOINT_FAILED, sorted(plan.failing), hours * 3600)
        return plan.counts

    async def _sample(self) -> None:
        while True:
            try:
                async with self.db.connection() as conn:
                    stats = await conn.fetchrow(QUEUE_STATS)
                    await conn.execute(PRUNE, self.settings.webhook_retention_days * 86_400)
                PENDING.set(stats["pending"])
                DUE.set(stats["due"])
                OLDEST_PENDING.set(stats["oldest"])
                DISABLED_ENDPOINTS.set(stats["disabled"])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.debug("could not sample the webhook queue", exc_info=True)
            await asyncio.sleep(5)
