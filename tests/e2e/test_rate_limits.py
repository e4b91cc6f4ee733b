"""Throttled authentication failures, per-tenant rate limits across gateway processes, and long polls that
wait on notifications instead of querying the primary.

Database work is counted by the gateway under test itself (`fastloans_auth_lookups_total`,
`fastloans_long_poll_reads_total` on its ops port), at the call that queries: PostgreSQL's table statistics
are shared by every process of the run and published late (up to PGSTAT_IDLE_INTERVAL), so the work of
earlier tests would show up in them.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import NamedTuple

import asyncpg
import httpx
import pytest

from fastloans.contracts import APPLICATIONS_PATH, DECIDED_CHANNEL
from fastloans.tenants import hash_key, set_rate_limit
from tests.conftest import MigratedDb, extra_instances, issue_test_key

URL = APPLICATIONS_PATH
# The same values as the gateways below: 20 requests over a 1 s sliding window per tenant.
RATE, BURST = 20, 20
FAILURE_BURST = 5
SYNC_MS = 100
LOOKUPS, READS = "fastloans_auth_lookups", "fastloans_long_poll_reads"


class LimitedGateway(NamedTuple):
    """One of the gateways below: its API and its ops port."""

    url: str
    ops_url: str


@pytest.fixture(scope="module")
def limited_gateways(infra: object, services: object) -> Iterator[list[LimitedGateway]]:
    """Two gateway processes on the same database with a low per-tenant limit and cached key lookups.

    Started after the shared services, which hold their ports by then (free ports are picked unbound).
    """
    limits = {
        "AUTH_CACHE_SECONDS": "30",
        "RATE_LIMIT_PER_SECOND": str(RATE),
        "RATE_LIMIT_BURST": str(BURST),
        "RATE_LIMIT_SYNC_MS": str(SYNC_MS),
        "AUTH_FAILURE_RATE_PER_SECOND": "0.001",  # no refill within a test, however slow the machine
        "AUTH_FAILURE_BURST": str(FAILURE_BURST),
    }
    with extra_instances(infra, "gateway", [f"gateway-limited-{i}" for i in range(2)], **limits) as children:
        yield [LimitedGateway(f"http://127.0.0.1:{c.port}", f"http://127.0.0.1:{c.ops_port}") for c in children]


async def counted(ops_url: str, family: str, labels: str = "") -> float:
    """The value of a counter (with `labels`, as written in the exposition) on a gateway's /metrics."""
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"{ops_url}/metrics")).text
    total = 0.0
    for line in text.splitlines():
        name, _, rest = line.partition("{") if "{" in line.split(" ", 1)[0] else (line.split(" ", 1)[0], "", "")
        if name == f"{family}_total" and (not labels or labels in rest):
            total += float(line.rsplit(" ", 1)[1])
    return total


def bearer(key: str, client: str) -> dict[str, str]:
    """Headers of a request with `key` from `client` (the gateway trusts X-Forwarded-For from loopback)."""
    return {"Authorization": f"Bearer {key}", "X-Forwarded-For": client}


async def test_unknown_keys_are_throttled_per_address_without_queries(
    limited_gateways: list[LimitedGateway], migrated_db: MigratedDb
) -> None:
    valid = await issue_test_key(migrated_db.primary_url, f"guessed-{uuid.uuid4().hex[:8]}", ("read",))
    attacker, neighbour = "198.51.100.7", "198.51.100.8"
    async with httpx.AsyncClient(base_url=limited_gateways[0].url, timeout=30) as http:
        assert (await http.get(f"{URL}/{uuid.uuid4()}", headers=bearer(valid, attacker))).status_code == 404
        ops = limited_gateways[0].ops_url
        unknown = await counted(ops, LOOKUPS, 'result="unknown"')
        valid_lookups = await counted(ops, LOOKUPS, 'result="valid"')
        guesses = [f"fl_{secrets.token_urlsafe(32)}" for _ in range(300)]
        answers = []
        for start in range(0, len(guesses), 20):
            answers += await asyncio.gather(
                *(
                    http.get(f"{URL}/{uuid.uuid4()}", headers=bearer(key, attacker))
                    for key in guesses[start : start + 20]
                )
            )
        statuses = Counter(r.status_code for r in answers)
        assert statuses == {401: FAILURE_BURST, 429: len(guesses) - FAILURE_BURST}, statuses
        refused = next(r for r in answers if r.status_code == 429)
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1 and refused.json()["status"] == 429
        # Only the guesses within the burst reached the database.
        assert await counted(ops, LOOKUPS, 'result="unknown"') - unknown == FAILURE_BURST
        # A key this gateway knows still works from the throttled address; other addresses are not throttled.
        assert (await http.get(f"{URL}/{uuid.uuid4()}", headers=bearer(valid, attacker))).status_code == 404
        other = await http.get(f"{URL}/{uuid.uuid4()}", headers=bearer(guesses[0], neighbour))
        assert other.status_code == 401 and other.headers["www-authenticate"].startswith("Bearer")
        # The known key came from the cache, and the neighbour's guess was the first one, already remembered.
        assert await counted(ops, LOOKUPS, 'result="valid"') == valid_lookups
        assert await counted(ops, LOOKUPS, 'result="unknown"') - unknown == FAILURE_BURST


async def test_a_new_valid_key_on_many_concurrent_requests_spends_one_attempt(
    limited_gateways: list[LimitedGateway], migrated_db: MigratedDb
) -> None:
    # Every request of the burst misses the cache while the first one's lookup is in flight; each used to
    # spend one of the address's attempts, so a valid key got 429 after FAILURE_BURST of them.
    fresh = await issue_test_key(migrated_db.primary_url, f"burst-{uuid.uuid4().hex[:8]}", ("read",))
    async with httpx.AsyncClient(base_url=limited_gateways[1].url, timeout=30) as http:
        answers = await asyncio.gather(
            *(
                http.get(f"{URL}/{uuid.uuid4()}", headers=bearer(fresh, "198.51.100.20"))
                for _ in range(3 * FAILURE_BURST)
            )
        )
    assert Counter(r.status_code for r in answers) == {404: 3 * FAILURE_BURST}


async def test_many_new_valid_keys_from_one_address_at_once_are_not_throttled(
    limited_gateways: list[LimitedGateway], migrated_db: MigratedDb
) -> None:
    # More distinct new keys than the address has attempts, all at once: each lookup holds an attempt until
    # it finds the key valid; the others wait for one instead of being answered 429.
    keys = [
        await issue_test_key(migrated_db.primary_url, f"many-{uuid.uuid4().hex[:8]}", ("read",))
        for _ in range(3 * FAILURE_BURST)
    ]
    async with httpx.AsyncClient(base_url=limited_gateways[0].url, timeout=30) as http:
        answers = await asyncio.gather(
            *(http.get(f"{URL}/{uuid.uuid4()}", headers=bearer(key, "198.51.100.21")) for key in keys)
        )
    assert Counter(r.status_code for r in answers) == {404: 3 * FAILURE_BURST}


async def test_an_unknown_key_is_remembered_as_unknown(limited_gateways: list[LimitedGateway]) -> None:
    guess = f"fl_{secrets.token_urlsafe(32)}"
    ops = limited_gateways[1].ops_url
    before = await counted(ops, LOOKUPS, 'result="unknown"')
    async with httpx.AsyncClient(base_url=limited_gateways[1].url, timeout=30) as http:
        # From six addresses, so that no address runs out of attempts.
        answers = [
            await http.get(f"{URL}/{uuid.uuid4()}", headers=bearer(guess, f"203.0.113.{i + 1}")) for i in range(6)
        ]
    assert {r.status_code for r in answers} == {401}
    assert await counted(ops, LOOKUPS, 'result="unknown"') - before == 1


async def test_a_tenant_cannot_multiply_its_limit_with_keys_or_gateways(
    limited_gateways: list[LimitedGateway], migrated_db: MigratedDb
) -> None:
    tenant = f"busy-{uuid.uuid4().hex[:8]}"
    keys = [await issue_test_key(migrated_db.primary_url, tenant, ("read",)) for _ in range(2)]
    outcomes: dict[tuple[int, int], Counter[int]] = {(g, k): Counter() for g in range(2) for k in range(2)}
    started = time.monotonic()
    duration = 3.0

    async def hammer(gateway: int, key: int) -> None:
        seen = outcomes[(gateway, key)]
        async with httpx.AsyncClient(
            base_url=limited_gateways[gateway].url, timeout=30, headers={"Authorization": f"Bearer {keys[key]}"}
        ) as http:
            # For the duration, and on a slow machine until every stream has been refused at least once.
            while (
                time.monotonic() - started < duration or not all(counts[429] for counts in outcomes.values())
            ) and time.monotonic() - started < 30:
                seen[(await http.get(f"{URL}/not-an-id")).status_code] += 1

    await asyncio.gather(*(hammer(g, k) for g in range(2) for k in range(2) for _ in range(3)))
    elapsed = time.monotonic() - started
    accepted = sum(seen[404] for seen in outcomes.values())
    refused = sum(seen[429] for seen in outcomes.values())
    # One window's burst, then the rate; the documented bound adds a share of one sync interval per process.
    ceiling = BURST + RATE * elapsed + 2 * RATE * SYNC_MS / 1000 + 2
    print(f"accepted {accepted} of {accepted + refused} in {elapsed:.1f} s (ceiling {ceiling:.0f})")
    assert accepted <= ceiling, (accepted, ceiling, outcomes)
    assert accepted >= BURST, (accepted, outcomes)
    # (How many were refused depends on how fast the machine sends: every stream was, at least once.)
    assert all(seen[429] and seen[404] for seen in outcomes.values()), outcomes


async def undecided_application(pg: asyncpg.Pool, infra: object, tenant_key: str) -> uuid.UUID:
    """A pending application of the key's tenant that nothing will decide (no outbox row), on the replica too."""
    tenant_id = await pg.fetchval("SELECT tenant_id FROM api_keys WHERE key_hash = $1", hash_key(tenant_key))
    ident = uuid.uuid4()
    now = datetime.now(UTC)
    # Inserted without an outbox row: nothing will ever decide it.
    await pg.execute(
        "INSERT INTO loan_applications (id, tenant_id, applicant_name, credit_score, loan_amount, loan_purpose, "
        "monthly_income, monthly_debt, employment_status, submitted_at, created_at, updated_at) "
        "VALUES ($1, $2, 'Never Decided', 700, 1000, 'auto', 5000, 100, 'employed', $3, $3, $3)",
        ident,
        tenant_id,
        now,
    )
    replica = await asyncpg.connect(infra.postgres.replica_url)  # type: ignore[attr-defined]
    try:
        deadline = time.monotonic() + 10
        while not await replica.fetchval("SELECT count(*) FROM loan_applications WHERE id = $1", ident):
            assert time.monotonic() < deadline, "the replica never received the application"
            await asyncio.sleep(0.05)
    finally:
        await replica.close()
    return ident


async def test_waiting_requests_read_the_primary_once_until_notified(
    api_url: str, ops_url: str, infra: object, pg: asyncpg.Pool, tenant_key: str
) -> None:
    ident = await undecided_application(pg, infra, tenant_key)
    waiters = 20
    before = await counted(ops_url, READS)
    async with httpx.AsyncClient(
        base_url=api_url, headers={"Authorization": f"Bearer {tenant_key}"}, timeout=40
    ) as http:
        started = time.monotonic()
        task = asyncio.gather(*(http.get(f"{URL}/{ident}", params={"wait": 10}) for _ in range(waiters)))
        during = []
        while time.monotonic() - started < 9 and not task.done():
            # A poll every half second would show here at once: 40 reads a second.
            during.append(await counted(ops_url, READS) - before)
            await asyncio.sleep(0.5)
        answers = await task
        elapsed = time.monotonic() - started
    assert elapsed >= 9.5
    assert [r.status_code for r in answers] == [200] * waiters
    assert {r.json()["status"] for r in answers} == {"pending"}
    # One read each on the primary after the replica's, and no other (the application is never announced).
    assert max(during) <= waiters, during
    assert await counted(ops_url, READS) - before == waiters


async def test_a_waiting_request_answers_as_soon_as_the_decision_is_announced(client: httpx.AsyncClient) -> None:
    created = await client.post(
        URL,
        json={
            "applicant_name": "Quick Answer",
            "credit_score": 760,
            "loan_amount": "1500.00",
            "loan_purpose": "auto",
            "monthly_income": "6000.00",
            "monthly_debt": "500.00",
            "employment_status": "employed",
        },
    )
    assert created.status_code == 202
    started = time.monotonic()
    answer = await client.get(f"{URL}/{created.json()['id']}", params={"wait": 20})
    # Well before the safety re-read (10 s): the recorder's notification woke it.
    assert answer.status_code == 200 and answer.json()["status"] == "approved"
    assert time.monotonic() - started < 8


async def test_a_tenants_own_limit_replaces_the_default(
    limited_gateways: list[LimitedGateway], migrated_db: MigratedDb
) -> None:
    strict, free = f"strict-{uuid.uuid4().hex[:8]}", f"free-{uuid.uuid4().hex[:8]}"
    strict_key = await issue_test_key(migrated_db.primary_url, strict, ("read",))
    free_key = await issue_test_key(migrated_db.primary_url, free, ("read",))
    conn = await asyncpg.connect(migrated_db.primary_url)
    try:
        await set_rate_limit(conn, strict, per_second=0.1, burst=2)
        await set_rate_limit(conn, free, per_second=0, burst=None)  # unlimited
    finally:
        await conn.close()
    async with httpx.AsyncClient(base_url=limited_gateways[0].url, timeout=30) as http:
        strict_answers = [
            (await http.get(f"{URL}/not-an-id", headers={"Authorization": f"Bearer {strict_key}"})).status_code
            for _ in range(5)
        ]
        free_answers = await asyncio.gather(
            *(http.get(f"{URL}/not-an-id", headers={"Authorization": f"Bearer {free_key}"}) for _ in range(3 * BURST))
        )
    assert strict_answers == [404, 404, 429, 429, 429]
    assert {r.status_code for r in free_answers} == {404}


async def test_a_waiting_request_reads_again_when_the_listener_reconnects(
    api_url: str, infra: object, pg: asyncpg.Pool, tenant_key: str
) -> None:
    ident = await undecided_application(pg, infra, tenant_key)
    async with httpx.AsyncClient(
        base_url=api_url, headers={"Authorization": f"Bearer {tenant_key}"}, timeout=40
    ) as http:
        started = time.monotonic()
        task = asyncio.gather(http.get(f"{URL}/{ident}", params={"wait": 25}))
        await asyncio.sleep(0.5)
        assert not task.done()
        # The listeners go away, and a decision is stored without a notification: only a re-read finds it.
        listeners = await pg.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query ILIKE $1", f"LISTEN%{DECIDED_CHANNEL}%"
        )
        assert listeners
        await pg.execute(
            "UPDATE loan_applications SET status = 'approved', is_approved = true, risk_score = 10, "
            "policy_version = 'seed-1', decided_at = now() WHERE id = $1",
            ident,
        )
        (answer,) = await task
        elapsed = time.monotonic() - started
    assert answer.json()["status"] == "approved"
    # After the reconnection (about two seconds), not at the safety re-read ten seconds in.
    assert elapsed < 8, elapsed
