"""Loan applications: the service behind the API, and the transactions that store an application with its
outbox row atomically.

This layer speaks applications, not HTTP: it raises `NotFound` and `IdempotencyConflict`, and the API maps
them to problem+json in one place (`fastloans_gateway.api.errors`).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import orjson

from fastloans import webhooks
from fastloans.contracts import IDEMPOTENCY_TTL
from fastloans.db import Database, json_value
from fastloans.db.reviews import close_unfinished
from fastloans.kafka import is_transient
from fastloans.reviews import Action
from fastloans.settings import Settings
from fastloans_gateway import outbox, webhook_endpoints
from fastloans_gateway.metrics import LONG_POLL_READS, READ_BATCH_SIZE, SUBMIT_BATCHES_RETRIED
from fastloans_gateway.outbox import FACT_FIELDS, OutboxRow
from fastloans_gateway.schemas import CENT, render_application
from fastloans_gateway.waiting import RECHECK_SECONDS, DecisionWaiters

if TYPE_CHECKING:
    from fastloans_gateway.admission import AdmissionControl

COLUMNS = (
    "id, tenant_id, revision, status, applicant_name, credit_score, loan_amount, loan_purpose, monthly_income, "
    "monthly_debt, employment_status, risk_score, is_approved, reasons, counteroffer, what_would_change, "
    "policy_version, submitted_at, decided_at, created_at, decided_by, review_case_id, review_reasons"
)
# What an Idempotency-Key's record holds once its submission is stored: the status and body a retry gets back.
ACCEPTED = 202


T = TypeVar("T")


class ApplicationError(Exception):
    """A request the service cannot carry out, for a reason the caller can act on."""


class NotFound(ApplicationError):
    """No such application for this tenant, or it was withdrawn."""


class IdempotencyConflict(ApplicationError):
    """The Idempotency-Key was already used with a different request body."""


@dataclass(slots=True)
class Submitted:
    """The outcome of a submission: the application as the API shows it, and whether it is a retry's replay."""

    status: int
    application: dict[str, Any]
    replayed: bool


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
""" + outbox.insert_arrays(11)
SUBMIT_COLUMNS = (
    "id",
    "tenant_id",
    "applicant_name",
    "credit_score",
    "loan_amount",
    "loan_purpose",
    "monthly_income",
    "monthly_debt",
    "employment_status",
    "submitted_at",
)
# Claims a batch's keys, each with the answer a retry will get back, or takes over those that expired; returns
# the keys it claimed, and nothing for a key a live record holds (that row stays locked until the transaction
# ends, so the READ_KEYS after it sees the holder's committed answer). The arrays come sorted by (tenant, key):
# two gateway processes claiming overlapping keys lock them in one order and cannot deadlock.
CLAIM_KEYS = """
INSERT INTO idempotency_keys AS held (tenant_id, key, request_hash, status_code, response)
SELECT tenant_id, key, request_hash, $4::int, response
  FROM unnest($1::uuid[], $2::text[], $3::text[], $5::jsonb[]) AS t(tenant_id, key, request_hash, response)
    ON CONFLICT (tenant_id, key) DO UPDATE
   SET request_hash = EXCLUDED.request_hash, status_code = EXCLUDED.status_code, response = EXCLUDED.response,
       created_at = now()
 WHERE held.created_at < now() - $6::interval
RETURNING tenant_id, key
"""
READ_KEYS = (
    "SELECT tenant_id, key, request_hash, status_code, response FROM idempotency_keys "
    "WHERE (tenant_id, key) IN (SELECT * FROM unnest($1::uuid[], $2::text[]))"
)
# Expired keys, deleted now and then (by the relay, which runs one loop per deployment rather than per process).
DELETE_EXPIRED_KEYS = "DELETE FROM idempotency_keys WHERE created_at < now() - $1::interval"


def new_application(tenant_id: uuid.UUID, body: dict[str, Any]) -> dict[str, Any]:
    """The row a new application will have (revision 1, pending, submitted now)."""
    now = datetime.now(UTC)
    return {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "revision": 1,
        "status": "pending",
        **{name: body[name] for name in ("applicant_name", *FACT_FIELDS)},
        "risk_score": None,
        "is_approved": None,
        "reasons": None,
        "counteroffer": None,
        "what_would_change": None,
        "policy_version": None,
        "submitted_at": now,
        "decided_at": None,
        "created_at": now,
        "decided_by": None,
        "review_case_id": None,
        "review_reasons": None,
    }


Submission = tuple[dict[str, Any], OutboxRow]  # the application, its outbox row


@dataclass(frozen=True, slots=True)
class Key:
    """A submission's Idempotency-Key: whose it is, the request's fingerprint, and the answer a retry gets back."""

    tenant_id: uuid.UUID
    key: str
    fingerprint: str
    response: str  # the 202's body, JSON


@dataclass(frozen=True, slots=True)
class Held:
    """The record of an earlier submission holding a key: its request's fingerprint and its answer."""

    fingerprint: str
    status: int
    response: dict[str, Any]


@dataclass(slots=True)
class _Pending:
    submission: Submission
    key: Key | None
    done: asyncio.Future[Held | None]


async def _insert(conn: asyncpg.Connection, submissions: list[Submission]) -> None:
    columns = [[application[name] for application, _ in submissions] for name in SUBMIT_COLUMNS]
    rows = [list(values) for values in zip(*(row for _, row in submissions), strict=True)]
    await conn.execute(SUBMIT, *columns, *rows)


async def _store(conn: asyncpg.Connection, batch: list[_Pending]) -> list[Held | None]:
    """Store a batch; for each submission, None once it is stored, or the record holding its key."""
    keys = sorted((item.key for item in batch if item.key), key=lambda k: (k.tenant_id, k.key))
    if not keys:
        await _insert(conn, [item.submission for item in batch])  # one statement, atomic without a transaction
        return [None] * len(batch)
    async with conn.transaction():
        claimed = {
            (r["tenant_id"], r["key"])
            for r in await conn.fetch(
                CLAIM_KEYS,
                [k.tenant_id for k in keys],
                [k.key for k in keys],
                [k.fingerprint for k in keys],
                ACCEPTED,
                [k.response for k in keys],
                IDEMPOTENCY_TTL,
            )
        }
        taken = [k for k in keys if (k.tenant_id, k.key) not in claimed]
        held: dict[tuple[uuid.UUID, str], Held] = {}
        if taken:
            rows = await conn.fetch(READ_KEYS, [k.tenant_id for k in taken], [k.key for k in taken])
            held = {
                (r["tenant_id"], r["key"]): Held(r["request_hash"], r["status_code"], json_value(r["response"]))
                for r in rows
            }
        # A key this batch did not claim has a record (its row is locked): a missing one fails the batch.
        outcomes = [
            held[item.key.tenant_id, item.key.key]
            if item.key and (item.key.tenant_id, item.key.key) not in claimed
            else None
            for item in batch
        ]
        stored = [item.submission for item, outcome in zip(batch, outcomes, strict=True) if outcome is None]
        if stored:
            await _insert(conn, stored)
    return outcomes


class SubmitBatcher:
    """Stores concurrent submissions together: the requests that arrive while one insert is in flight
    share the next statement (group commit, as PostgreSQL does for WAL flushes).

    Inserts start at most once per SUBMIT_LINGER_MS: a request arriving after a quiet spell goes
    at once, while under load the requests of that interval share one insert. Each batch saves
    round trips, statements and commits. Each request still gets its 202 only
    after its own rows are committed. If a batch fails for a reason other than an outage, its
    submissions are retried one by one, so one bad row fails only its own request.

    Submissions with an Idempotency-Key join the same batches: the batch claims its keys, each with the
    answer a retry gets back, in the transaction that stores its rows. A submission whose key a live record
    holds stores nothing and is answered with that record. A key a batch already carries waits for the next
    batch, which finds it held: a quick retry of a request in flight gets the first request's answer.
    """

    def __init__(self, db: Database, *, max_batch: int = 200, linger: float = 0.0) -> None:
        self.db = db
        self.max_batch = max_batch
        self.linger = linger
        self._last_start = 0.0
        self._queue: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    async def store(self, submission: Submission, key: Key | None = None) -> Held | None:
        """Return None once `submission` is committed, or the record holding its key, which stored nothing
        (raise if it could not be stored)."""
        done: asyncio.Future[Held | None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(submission, key, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await done  # a cancelled request cancels only its wait: the batch goes on without it

    def _next_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        later: list[_Pending] = []
        keys: set[tuple[uuid.UUID, str]] = set()
        for position, item in enumerate(self._queue):
            if len(batch) == self.max_batch:
                later.extend(self._queue[position:])
                break
            if item.key:
                if (item.key.tenant_id, item.key.key) in keys:
                    later.append(item)  # one claim per key and statement; this one goes next time
                    continue
                keys.add((item.key.tenant_id, item.key.key))
            batch.append(item)
        self._queue = later
        return batch

    async def _flush(self) -> None:
        while self._queue:
            wait = self._last_start + self.linger - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # the requests arriving meanwhile join this batch
            self._last_start = time.monotonic()
            batch = self._next_batch()
            try:
                async with self.db.connection() as conn:
                    outcomes = await _store(conn, batch)
            except Exception as error:
                if len(batch) == 1 or is_transient(error):
                    _fail((item.done for item in batch), error)
                    continue
                SUBMIT_BATCHES_RETRIED.inc()
                for item in batch:
                    try:
                        async with self.db.connection() as conn:
                            (outcome,) = await _store(conn, [item])
                    except Exception as single:
                        _fail([item.done], single)
                    else:
                        _settle(item.done, outcome)
                continue
            for item, outcome in zip(batch, outcomes, strict=True):
                _settle(item.done, outcome)


# One statement for every read a batch carries; the tenant of each row is checked against the reader's below.
FETCH_BATCH = f"SELECT {COLUMNS} FROM loan_applications WHERE id = ANY($1::uuid[]) AND status <> 'withdrawn'"


@dataclass(frozen=True)
class _Read:
    tenant_id: uuid.UUID
    application_id: uuid.UUID
    done: asyncio.Future[asyncpg.Record | None]


def matching(reads: list[_Read], rows: list[asyncpg.Record]) -> list[asyncpg.Record | None]:
    """Each read's row: the one with its id, if that row belongs to the reader's tenant (else None)."""
    by_id = {row["id"]: row for row in rows}
    answers: list[asyncpg.Record | None] = []
    for read in reads:
        row = by_id.get(read.application_id)
        answers.append(row if row is not None and row["tenant_id"] == read.tenant_id else None)
    return answers


class ReadBatcher:
    """Reads concurrent GETs of single applications together: the reads that arrive while one statement is in
    flight share the next, on the replica or on the primary (a queue for each).

    A read after a quiet spell goes at once, alone; under load a statement carries many, which saves the gateway
    a round trip, a checkout and a statement per read (asyncpg's per-statement work was about a third of the
    gateway's CPU per GET, `docs/performance.md`), and the database a statement per read. A failed statement
    fails every read it carried with its error (an outage is answered 503 by the API).
    """

    def __init__(self, db: Database, *, max_batch: int = 200) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queues: dict[bool, list[_Read]] = {False: [], True: []}
        self._flushers: dict[bool, asyncio.Task[None]] = {}

    async def fetch(
        self, tenant_id: uuid.UUID, application_id: uuid.UUID, *, primary: bool = False
    ) -> asyncpg.Record | None:
        """The live application `application_id` of `tenant_id`, or None (withdrawn, absent or another's)."""
        done: asyncio.Future[asyncpg.Record | None] = asyncio.get_running_loop().create_future()
        self._queues[primary].append(_Read(tenant_id, application_id, done))
        flusher = self._flushers.get(primary)
        if flusher is None or flusher.done():
            self._flushers[primary] = asyncio.create_task(self._flush(primary))
        return await done  # a cancelled request cancels only its wait

    async def _flush(self, primary: bool) -> None:
        queue = self._queues[primary]
        while queue:
            batch = queue[: self.max_batch]
            del queue[: self.max_batch]
            try:
                async with self.db.connection(read=not primary) as conn:
                    rows = await conn.fetch(FETCH_BATCH, list({read.application_id for read in batch}))
            except BaseException as error:
                _fail((read.done for read in batch), error)
                if not isinstance(error, Exception):
                    raise
                continue
            READ_BATCH_SIZE.observe(len(batch))
            for read, row in zip(batch, matching(batch, rows), strict=True):
                _settle(read.done, row)


def _settle(done: asyncio.Future[T], value: T) -> None:
    """Answer a waiting request (unless it stopped waiting)."""
    if not done.done():
        done.set_result(value)


def _fail(waiting: Iterable[asyncio.Future[Any]], error: BaseException) -> None:
    """Fail every waiting request of a batch with its error."""
    for done in waiting:
        if not done.done():
            done.set_exception(error)


class Applications:
    """The loan applications of every tenant: submit, read (optionally waiting for the decision), list, revise,
    withdraw. Every call names its tenant; another tenant's application is `NotFound`."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        batcher: SubmitBatcher,
        waiters: DecisionWaiters,
        notify: Callable[[], None],
        admission: AdmissionControl,
    ) -> None:
        self.db = db
        self.settings = settings
        self.batcher = batcher
        self.reads = ReadBatcher(db)
        self.waiters = waiters
        # Past its bounds a submission or revision raises `Overloaded` before anything is stored.
        self.admission = admission
        # Wakes the relay after a commit (`outbox.OutboxNotifier.poke`).
        self.notify = notify

    async def submit(
        self, *, tenant_id: uuid.UUID, body: dict[str, Any], idempotency_key: str | None, trace: dict[str, str]
    ) -> Submitted:
        """Store a new application and its outbox row atomically, then wake the relay (`Overloaded` past the bounds).

        The rows go through the batcher, which shares statements between concurrent submissions. With an
        Idempotency-Key the batch also claims the key in the transaction that stores the rows: a retry with the
        same body gets the first outcome back, while a different body raises `IdempotencyConflict`.
        `submitted_at` is the gateway's clock at acceptance, so the outbox event is encoded before the statement
        that stores both rows.
        """
        with self.admission.admitted():
            return await self._submit(tenant_id, body, idempotency_key, trace)

    async def _submit(
        self, tenant_id: uuid.UUID, body: dict[str, Any], idempotency_key: str | None, trace: dict[str, str]
    ) -> Submitted:
        application = new_application(tenant_id, body)
        submission = (application, outbox.submitted_row(self.settings, application, trace))
        shown = render_application(application)
        key = None
        if idempotency_key:
            key = Key(tenant_id, idempotency_key, request_fingerprint(body), orjson.dumps(shown).decode())
        first = await self.batcher.store(submission, key)
        if first is None:
            self.notify()
            return Submitted(ACCEPTED, shown, replayed=False)
        assert key is not None  # only a submission with a key finds it held
        if first.fingerprint != key.fingerprint:
            raise IdempotencyConflict
        return Submitted(first.status, first.response, replayed=True)

    async def get(
        self, *, tenant_id: uuid.UUID, application_id: uuid.UUID, wait: float = 0.0
    ) -> tuple[asyncpg.Record, str]:
        """The live application and where it was read ("replica" or "primary"); `NotFound` otherwise.

        Read from the replica, or from the primary when the row has not replicated yet. With `wait`, a
        pending application is read again (on the primary) as soon as its decision is announced, for up
        to `wait` seconds.
        """
        source = "replica"
        row = await self._fetch(tenant_id, application_id)
        if row is None:
            source = "primary"
            row = await self._fetch(tenant_id, application_id, primary=True)
        if row is None:
            raise NotFound
        if not wait or row["status"] != "pending":
            return row, source
        deadline = time.monotonic() + wait
        # Watching before reading the primary: a decision recorded after that read is announced to this watch.
        with self.waiters.watch(application_id) as watch:
            while True:
                row = await self._fetch(tenant_id, application_id, primary=True)
                LONG_POLL_READS.inc()
                if row is None:
                    raise NotFound
                remaining = deadline - time.monotonic()
                if row["status"] != "pending" or remaining <= 0:
                    return row, "primary"
                # Read again only when woken, or after RECHECK_SECONDS in case a notification was lost.
                if not await watch.wait(min(remaining, RECHECK_SECONDS)) and remaining <= RECHECK_SECONDS:
                    return row, "primary"

    async def _fetch(
        self, tenant_id: uuid.UUID, application_id: uuid.UUID, *, primary: bool = False
    ) -> asyncpg.Record | None:
        return await self.reads.fetch(tenant_id, application_id, primary=primary)

    async def revise(
        self, *, tenant_id: uuid.UUID, application_id: uuid.UUID, changes: dict[str, Any], trace: dict[str, str]
    ) -> asyncpg.Record:
        """Apply `changes` as a new revision, pending again, queue it for a decision and wake the relay."""
        with self.admission.admitted():
            return await self._revise(tenant_id, application_id, changes, trace)

    async def _revise(
        self, tenant_id: uuid.UUID, application_id: uuid.UUID, changes: dict[str, Any], trace: dict[str, str]
    ) -> asyncpg.Record:
        assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(changes, start=3))
        async with self.db.connection() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"UPDATE loan_applications SET {assignments}, revision = revision + 1, status = 'pending', "
                "risk_score = NULL, is_approved = NULL, reasons = NULL, counteroffer = NULL, what_would_change = NULL, "
                "policy_version = NULL, decided_at = NULL, decided_by = NULL, review_case_id = NULL, "
                "review_reasons = NULL, "
                "submitted_at = clock_timestamp(), updated_at = clock_timestamp() "
                f"WHERE id = $1 AND tenant_id = $2 AND status <> 'withdrawn' RETURNING {COLUMNS}",
                application_id,
                tenant_id,
                *changes.values(),
            )
            if row is not None:
                await conn.execute(outbox.INSERT, *outbox.submitted_row(self.settings, row, trace))
                # The new revision is decided again: the review case of the one it replaces is closed.
                await close_unfinished(
                    conn,
                    application_id=application_id,
                    tenant_id=tenant_id,
                    action=Action.SUPERSEDE,
                    details={"by_revision": row["revision"]},
                )
        if row is None:
            raise NotFound
        self.notify()
        return row

    async def withdraw(self, *, tenant_id: uuid.UUID, application_id: uuid.UUID) -> None:
        """Withdraw the application; `NotFound` if it does not exist or is already withdrawn."""
        async with self.db.connection() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE loan_applications SET status = 'withdrawn', withdrawn_at = clock_timestamp(), "
                "updated_at = clock_timestamp() WHERE id = $1 AND tenant_id = $2 AND status <> 'withdrawn' "
                "RETURNING revision, withdrawn_at",
                application_id,
                tenant_id,
            )
            if row is None:
                raise NotFound
            await close_unfinished(conn, application_id=application_id, tenant_id=tenant_id, action=Action.WITHDRAW)
            # The tenant's endpoints hear of it in the same transaction (nothing is queued without endpoints).
            event = webhooks.withdrawn_event(application_id, row["revision"], row["withdrawn_at"])
            await webhook_endpoints.enqueue(conn, tenant_id=tenant_id, **event)

    async def page(
        self, *, tenant_id: uuid.UUID, status: str | None, limit: int, after: tuple[datetime, uuid.UUID] | None
    ) -> tuple[list[asyncpg.Record], bool]:
        """Up to `limit` of the tenant's live applications, newest first, from the replica, and whether more
        follow; `after` is the (created_at, id) of the last one of the previous page (keyset pagination)."""
        clauses = ["tenant_id = $1", "status <> 'withdrawn'"]
        args: list[Any] = [tenant_id]
        if status:
            args.append(status)
            clauses.append(f"status = ${len(args)}")
        if after:
            args.extend(after)
            clauses.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
        args.append(limit + 1)
        async with self.db.connection(read=True) as conn:
            rows = await conn.fetch(
                f"SELECT {COLUMNS} FROM loan_applications WHERE {' AND '.join(clauses)} "
                f"ORDER BY created_at DESC, id DESC LIMIT ${len(args)}",
                *args,
            )
        return rows[:limit], len(rows) > limit
