"""The dispatcher's queue on the real PostgreSQL: one delivery per (event, endpoint) however often a decision is
redelivered, and claims that respect revision order and the leases.

Everything happens in one transaction that is rolled back, so a dispatcher running beside the test (the services
of the end-to-end tests) never sees these rows.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
from aiokafka.structs import ConsumerRecord

from fastloans import webhooks
from fastloans.events import ApplicationDecided, PolicyRef, Topic
from fastloans_webhooks.sender import CLAIM, ENDPOINT_FAILED, ENDPOINT_OK, PRUNE
from fastloans_webhooks.service import QUEUE_DECISIONS, queue_arguments

BOX = webhooks.SecretBox(bytes(32))


def _decision(tenant: uuid.UUID, application: uuid.UUID, revision: int) -> ApplicationDecided:
    return ApplicationDecided(
        application_id=application,
        tenant_id=tenant,
        revision=revision,
        submitted_at=datetime.now(UTC),
        outcome="approved",
        risk_score=20,
        contributions=[],
        principal_reasons=[{"reason_code": "CREDIT_SCORE_BELOW_PRIME"}],
        policy=PolicyRef(name="seed", version="seed-1", hash="h"),
        decided_at=datetime.now(UTC),
    )


def _record(event: ApplicationDecided, offset: int) -> ConsumerRecord:
    return ConsumerRecord(
        topic=Topic.DECIDED.value,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=str(event.application_id).encode(),
        value=event.encode(),
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=event.headers(),
    )


async def _endpoint(conn: asyncpg.Connection, tenant: uuid.UUID) -> uuid.UUID:
    endpoint = uuid.uuid4()
    await conn.execute(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, event_types, secret) VALUES ($1, $2, $3, $4, $5)",
        endpoint,
        tenant,
        "http://127.0.0.1:9/hooks",
        ["application.decided"],
        BOX.seal(webhooks.new_secret()),
    )
    return endpoint


async def _ours(
    conn: asyncpg.Connection, endpoints: set[uuid.UUID], *, room: int = 4, unrecorded: list[int] | None = None
) -> list[asyncpg.Record]:
    return [r for r in await conn.fetch(CLAIM, 100, room, 60.0, unrecorded or []) if r["endpoint_id"] in endpoints]


async def test_redelivered_decisions_queue_once_and_go_out_in_revision_order(migrated_db) -> None:
    conn = await asyncpg.connect(migrated_db.primary_url)
    transaction = conn.transaction()
    await transaction.start()
    try:
        tenant = uuid.uuid4()
        await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, $2)", tenant, f"queue-{tenant.hex[:8]}")
        endpoints = {await _endpoint(conn, tenant), await _endpoint(conn, tenant)}
        application = uuid.uuid4()
        revision_1, revision_2 = _decision(tenant, application, 1), _decision(tenant, application, 2)
        # A redelivery, a re-decided copy under a new event id, then revision 2: two deliveries per endpoint.
        again = revision_1.model_copy(update={"event_id": uuid.uuid4()})
        assert await conn.execute(QUEUE_DECISIONS, *queue_arguments([_record(revision_1, 0), _record(revision_1, 1)]))
        await conn.execute(QUEUE_DECISIONS, *queue_arguments([_record(again, 2), _record(revision_2, 3)]))
        rows = await conn.fetch(
            "SELECT endpoint_id, revision, message_id FROM webhook_deliveries WHERE application_id = $1", application
        )
        assert sorted((r["endpoint_id"], r["revision"]) for r in rows) == sorted(
            (e, rev) for e in endpoints for rev in (1, 2)
        )
        # Due since before this transaction began: a claim compares with the time its transaction started.
        await conn.execute(
            "UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 second' WHERE application_id = $1",
            application,
        )
        first_id = webhooks.message_id(webhooks.decided_key(revision_1))
        assert {r["message_id"] for r in rows if r["revision"] == 1} == {first_id}
        # A claim takes revision 1 for each endpoint, and never revision 2 while revision 1 is pending.
        claimed = await _ours(conn, endpoints)
        assert sorted(r["endpoint_id"] for r in claimed) == sorted(endpoints)
        assert {r["message_id"] for r in claimed} == {first_id} and {r["attempts"] for r in claimed} == {1}
        assert not await _ours(conn, endpoints), "leased deliveries, or their successors, were claimed again"
        done = claimed[0]
        await conn.execute("UPDATE webhook_deliveries SET status = 'delivered' WHERE id = $1", done["id"])
        after = await _ours(conn, endpoints)
        assert [(r["endpoint_id"], r["message_id"]) for r in after] == [
            (done["endpoint_id"], webhooks.message_id(webhooks.decided_key(revision_2)))
        ]
        assert BOX.open(after[0]["secret"]).startswith("whsec_")
    finally:
        await transaction.rollback()
        await conn.close()


async def test_an_attempt_ended_but_not_yet_recorded_leaves_room_at_its_endpoint(migrated_db) -> None:
    """The concurrency bound counts attempts in flight: one whose answer came back no longer holds a slot."""
    conn = await asyncpg.connect(migrated_db.primary_url)
    transaction = conn.transaction()
    await transaction.start()
    try:
        tenant = uuid.uuid4()
        await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, $2)", tenant, f"room-{tenant.hex[:8]}")
        endpoint = await _endpoint(conn, tenant)
        for application in (uuid.uuid4(), uuid.uuid4()):
            await conn.execute(QUEUE_DECISIONS, *queue_arguments([_record(_decision(tenant, application, 1), 0)]))
        await conn.execute(
            "UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 second' WHERE endpoint_id = $1",
            endpoint,
        )
        first = await _ours(conn, {endpoint}, room=1)
        assert len(first) == 1
        assert not await _ours(conn, {endpoint}, room=1), "a second attempt started while the first is in flight"
        second = await _ours(conn, {endpoint}, room=1, unrecorded=[first[0]["id"]])
        assert len(second) == 1 and second[0]["id"] != first[0]["id"]
        assert not await _ours(conn, {endpoint}, room=1, unrecorded=[first[0]["id"]])
    finally:
        await transaction.rollback()
        await conn.close()


async def test_five_days_of_failures_disable_an_endpoint_and_a_success_resets_the_clock(migrated_db) -> None:
    conn = await asyncpg.connect(migrated_db.primary_url)
    transaction = conn.transaction()
    await transaction.start()
    five_days = 120 * 3600.0
    try:
        tenant = uuid.uuid4()
        await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, $2)", tenant, f"fail-{tenant.hex[:8]}")
        fresh, recovering, old = [await _endpoint(conn, tenant) for _ in range(3)]

        async def state(endpoint: uuid.UUID) -> asyncpg.Record:
            row = await conn.fetchrow(
                "SELECT enabled, disabled_reason, failing_since FROM webhook_endpoints WHERE id = $1", endpoint
            )
            assert row is not None
            return row

        await conn.execute(ENDPOINT_FAILED, [fresh], five_days)
        assert (await state(fresh))["enabled"] and (await state(fresh))["failing_since"] is not None
        await conn.execute(
            "UPDATE webhook_endpoints SET failing_since = now() - interval '6 days' WHERE id = ANY($1::uuid[])",
            [recovering, old],
        )
        await conn.execute(ENDPOINT_OK, [recovering])
        await conn.execute(ENDPOINT_FAILED, [recovering], five_days)
        assert (await state(recovering))["enabled"], "a success in between restarts the five days"
        await conn.execute(ENDPOINT_FAILED, [old], five_days)
        disabled = await state(old)
        assert not disabled["enabled"] and disabled["disabled_reason"].startswith("every delivery failed since ")
        # Old finished deliveries are pruned; pending ones stay however old.
        for status in ("delivered", "pending"):
            await conn.execute(
                "INSERT INTO webhook_deliveries (endpoint_id, event_key, message_id, event_type, body, status, "
                "created_at) VALUES ($1, $2, 'msg_x', 'ping', '\\x7b7d', $3, now() - interval '40 days')",
                fresh,
                f"ping:{status}",
                status,
            )
        await conn.execute(PRUNE, 30 * 86_400.0)
        left = await conn.fetch("SELECT status FROM webhook_deliveries WHERE endpoint_id = $1", fresh)
        assert [r["status"] for r in left] == ["pending"]
    finally:
        await transaction.rollback()
        await conn.close()
