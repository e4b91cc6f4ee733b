"""Loan applications: the transactions behind the API (application row + outbox row, atomically)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from fastloans.db import Database, json_value
from fastloans.events import ApplicationSubmitted, Facts, Topic
from fastloans.kafka import is_transient
from fastloans.settings import Settings
from fastloans_gateway.problems import Problem
from fastloans_gateway.schemas import CENT

log = logging.getLogger("fastloans.gateway")

OUTBOX_CHANNEL = "fastloans_outbox"
IDEMPOTENCY_TTL = "24 hours"
COLUMNS = (
    "id, tenant_id, revision, status, applicant_name, credit_score, loan_amount, loan_purpose, monthly_income, "
    "monthly_debt, employment_status, risk_score, is_approved, reasons, policy_version, submitted_at, decided_at, "
    "created_at"
)
FACT_FIELDS = ("credit_score", "loan_amount", "monthly_income", "monthly_debt", "employment_status", "loan_purpose")


def _canonical(value: object) -> str:
    # Decimals by value, not spelling: 2000, 2E+3 and 2000.00 are one amount, and -0 is 0. Amounts are written
    # with two places, as before, so the fingerprints of keys stored by an earlier release still match.
    if isinstance(value, Decimal):
        amount = value.copy_abs() if value == 0 else value
        cents = amount.quantize(CENT)
        return str(cents) if cents == amount else str(amount.normalize())
    return str(value)


def request_fingerprint(body: dict[str, Any]) -> str:
    """A hash of a validated request body, for Idempotency-Key comparisons: equal values, equal hashes."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS, default=_canonical)).hexdigest()


class OutboxNotifier:
    """Wakes the relay after commits, outside their transactions: at most one NOTIFY per `interval`.

    A NOTIFY inside the transaction would serialise every commit on PostgreSQL's notification-queue
    lock (held through the WAL flush), and cost a round trip per request. A NOTIFY is itself a small
    write transaction, so under load one is sent per `interval` (OUTBOX_LINGER_MS) for every commit
    since the last. A lost wake-up only delays publishing until the relay's next poll.
    """

    def __init__(self, db: Database, *, interval: float = 0.0) -> None:
        self.db = db
        self.interval = interval
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sending notifications in the background."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop the background task."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def poke(self) -> None:
        """Ask for a NOTIFY after what has been committed so far."""
        self._wanted.set()

    async def _run(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            try:
                async with self.db.connection() as conn:
                    await conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")
            except Exception as error:
                log.warning("could not wake the outbox relay", extra={"error.type": type(error).__name__})
                await asyncio.sleep(0.5)
            if self.interval:
                await asyncio.sleep(self.interval)


def _outbox_values(settings: Settings, application: Mapping[str, Any],
                   headers: dict[str, str]) -> tuple[str, str, bytes, str]:
    """(topic, key, payload, headers) of the outbox row announcing `application` (a row or its values)."""
    event = ApplicationSubmitted(
        application_id=application["id"],
        tenant_id=application["tenant_id"],
        revision=application["revision"],
        submitted_at=application["submitted_at"],
        facts=Facts(**{name: application[name] for name in FACT_FIELDS}),
    )
    return (settings.topic(Topic.SUBMITTED.value), str(application["id"]), event.encode(),
            orjson.dumps({**{k: v.decode() for k, v in event.headers()}, **headers}).decode())


# Applications and their outbox rows, any number in one statement: one round trip, atomic without
# BEGIN/COMMIT. The outbox ids follow the order of the arrays.
SUBMIT = """
WITH application AS (
    INSERT INTO loan_applications (id, tenant_id, revision, status, applicant_name, credit_score, loan_amount,
                                   loan_purpose, monthly_income, monthly_debt, employment_status, submitted_at,
                                   created_at, updated_at)
    SELECT id, tenant_id, 1, 'pending', applicant_name, credit_score, loan_amount, loan_purpose, monthly_income,
           monthly_debt, employment_status, submitted_at, submitted_at, submitted_at
      FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int[], $5::numeric[], $6::text[], $7::numeric[],
                  $8::numeric[], $9::text[], $10::timestamptz[])
           AS t(id, tenant_id, applicant_name, credit_score, loan_amount, loan_purpose, monthly_income,
                monthly_debt, employment_status, submitted_at)
)
INSERT INTO outbox (topic, key, payload, headers)
SELECT * FROM unnest($11::text[], $12::text[], $13::bytea[], $14::jsonb[])
"""
SUBMIT_COLUMNS = ("id", "tenant_id", "applicant_name", "credit_score", "loan_amount", "loan_purpose",
                  "monthly_income", "monthly_debt", "employment_status", "submitted_at")


def _new_application(tenant_id: uuid.UUID, body: dict[str, Any]) -> dict[str, Any]:
    """The row a new application will have (revision 1, pending, submitted now)."""
    now = datetime.now(UTC)
    return {
        "id": uuid.uuid4(), "tenant_id": tenant_id, "revision": 1, "status": "pending",
        **{name: body[name] for name in ("applicant_name", *FACT_FIELDS)},
        "risk_score": None, "is_approved": None, "reasons": None, "policy_version": None,
        "submitted_at": now, "decided_at": None, "created_at": now,
    }


Submission = tuple[dict[str, Any], tuple[str, str, bytes, str]]  # the application, its outbox row


async def _insert(conn: asyncpg.Connection, submissions: list[Submission]) -> None:
    columns = [[application[name] for application, _ in submissions] for name in SUBMIT_COLUMNS]
    outbox = [list(values) for values in zip(*(row for _, row in submissions), strict=True)]
    await conn.execute(SUBMIT, *columns, *outbox)


class SubmitBatcher:
    """Stores concurrent submissions together: the requests that arrive while one insert is in flight
    share the next statement (group commit, as PostgreSQL does for WAL flushes).

    Inserts start at most once per SUBMIT_LINGER_MS: a request arriving after a quiet spell goes
    at once, while under load the requests of that interval share one insert. Each batch saves
    round trips, statements and commits. Each request still gets its 202 only
    after its own rows are committed. If a batch fails for a reason other than an outage, its
    submissions are retried one by one, so one bad row fails only its own request.
    """

    def __init__(self, db: Database, *, max_batch: int = 200, linger: float = 0.0) -> None:
        self.db = db
        self.max_batch = max_batch
        self.linger = linger
        self._last_start = 0.0
        self._queue: list[tuple[Submission, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def store(self, submission: Submission) -> None:
        """Return once `submission` is committed (raise if it could not be)."""
        done = asyncio.get_running_loop().create_future()
        self._queue.append((submission, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await done  # a cancelled request cancels only its wait: the batch goes on without it

    async def _flush(self) -> None:
        while self._queue:
            wait = self._last_start + self.linger - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # the requests arriving meanwhile join this batch
            self._last_start = time.monotonic()
            batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
            try:
                async with self.db.connection() as conn:
                    await _insert(conn, [submission for submission, _ in batch])
            except Exception as error:
                if len(batch) == 1 or is_transient(error):
                    _settle(batch, error)
                    continue
                for item in batch:
                    try:
                        async with self.db.connection() as conn:
                            await _insert(conn, [item[0]])
                    except Exception as single:
                        _settle([item], single)
                    else:
                        _settle([item], None)
                continue
            _settle(batch, None)


def _settle(batch: list[tuple[Submission, asyncio.Future[None]]], error: BaseException | None) -> None:
    for _, done in batch:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)


async def submit(
    db: Database, settings: Settings, *, tenant_id: uuid.UUID, body: dict[str, Any],
    idempotency_key: str | None, trace: dict[str, str], render: Any, notify: Callable[[], None],
    batcher: SubmitBatcher,
) -> tuple[int, dict[str, Any], bool]:
    """Store a new application and its outbox row atomically, then `notify` (wake the relay).

    Returns (status, response body, replayed). Without an Idempotency-Key the rows go
    through `batcher` (shared statements); with one, in a transaction of their own with
    the key, and a retry with the same body returns the first response while a different
    body is refused.
    `submitted_at` is the gateway's clock at acceptance, so the outbox event can
    be encoded before the one statement that stores both rows.
    """
    application = _new_application(tenant_id, body)
    submission = (application, _outbox_values(settings, application, trace))
    response = render(application)
    if not idempotency_key:
        await batcher.store(submission)
        notify()
        return 202, response, False
    fingerprint = request_fingerprint(body)
    async with db.connection() as conn, conn.transaction():
        owned = await conn.fetchval(
            "INSERT INTO idempotency_keys (tenant_id, key, request_hash, status_code, response) "
            "VALUES ($1, $2, $3, 0, '{}') ON CONFLICT (tenant_id, key) DO UPDATE "
            "SET request_hash = EXCLUDED.request_hash, status_code = 0, response = '{}', created_at = now() "
            f"WHERE idempotency_keys.created_at < now() - interval '{IDEMPOTENCY_TTL}' RETURNING true",
            tenant_id, idempotency_key, fingerprint,
        )
        if not owned:
            first = await conn.fetchrow(
                "SELECT request_hash, status_code, response FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
                tenant_id, idempotency_key,
            )
            if first["request_hash"] != fingerprint:
                raise Problem(422, "this Idempotency-Key was already used with a different request body",
                              errors=[{"field": "Idempotency-Key", "message": "reused with a different body"}])
            return first["status_code"], json_value(first["response"]), True
        await _insert(conn, [submission])
        await conn.execute(
            "UPDATE idempotency_keys SET status_code = 202, response = $3::jsonb WHERE tenant_id = $1 AND key = $2",
            tenant_id, idempotency_key, orjson.dumps(response).decode(),
        )
    notify()
    return 202, response, False


async def fetch(db: Database, *, tenant_id: uuid.UUID, application_id: uuid.UUID,
                primary: bool = False) -> asyncpg.Record | None:
    """The live (not withdrawn) application, from the replica unless `primary`."""
    async with db.connection(read=not primary) as conn:
        return await conn.fetchrow(
            f"SELECT {COLUMNS} FROM loan_applications WHERE id = $1 AND tenant_id = $2 AND status <> 'withdrawn'",
            application_id, tenant_id,
        )


async def withdrawn_or_missing(db: Database, *, tenant_id: uuid.UUID, application_id: uuid.UUID) -> bool:
    """True when the application does not exist for this tenant or was withdrawn (read on the primary)."""
    async with db.connection() as conn:
        status = await conn.fetchval(
            "SELECT status FROM loan_applications WHERE id = $1 AND tenant_id = $2", application_id, tenant_id
        )
    return status is None or status == "withdrawn"


async def revise(db: Database, settings: Settings, *, tenant_id: uuid.UUID, application_id: uuid.UUID,
                 changes: dict[str, Any], trace: dict[str, str], notify: Callable[[], None]) -> asyncpg.Record | None:
    """Apply `changes` as a new revision, pending again, and queue it for a decision; then `notify`."""
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(changes, start=3))
    async with db.connection() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"UPDATE loan_applications SET {assignments}, revision = revision + 1, status = 'pending', "
            "risk_score = NULL, is_approved = NULL, reasons = NULL, policy_version = NULL, decided_at = NULL, "
            "submitted_at = clock_timestamp(), updated_at = clock_timestamp() "
            f"WHERE id = $1 AND tenant_id = $2 AND status <> 'withdrawn' RETURNING {COLUMNS}",
            application_id, tenant_id, *changes.values(),
        )
        if row is not None:
            await conn.execute(
                "INSERT INTO outbox (topic, key, payload, headers) VALUES ($1, $2, $3, $4::jsonb)",
                *_outbox_values(settings, row, trace),
            )
    if row is not None:
        notify()
    return row


async def withdraw(db: Database, *, tenant_id: uuid.UUID, application_id: uuid.UUID) -> bool:
    """Withdraw the application; False if it does not exist or is already withdrawn."""
    async with db.connection() as conn:
        result = await conn.execute(
            "UPDATE loan_applications SET status = 'withdrawn', withdrawn_at = clock_timestamp(), "
            "updated_at = clock_timestamp() WHERE id = $1 AND tenant_id = $2 AND status <> 'withdrawn'",
            application_id, tenant_id,
        )
    return result.endswith(" 1")


async def page(db: Database, *, tenant_id: uuid.UUID, status: str | None, limit: int,
               cursor: tuple[Any, uuid.UUID] | None) -> list[asyncpg.Record]:
    """A page of the tenant's live applications, newest first (keyset pagination), from the replica."""
    clauses = ["tenant_id = $1", "status <> 'withdrawn'"]
    args: list[Any] = [tenant_id]
    if status:
        args.append(status)
        clauses.append(f"status = ${len(args)}")
    if cursor:
        args.extend(cursor)
        clauses.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)
    async with db.connection(read=True) as conn:
        return await conn.fetch(
            f"SELECT {COLUMNS} FROM loan_applications WHERE {' AND '.join(clauses)} "
            f"ORDER BY created_at DESC, id DESC LIMIT ${len(args)}",
            *args,
        )
