"""Webhook endpoints: the service behind /api/v1/webhook_endpoints, and the queueing of deliveries.

This layer speaks endpoints and deliveries, not HTTP: it answers None for an endpoint the tenant does not
have, and the routes turn that into a 404. Secrets leave it in clear text only when made (create, rotate).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from fastloans import webhooks
from fastloans.db import Database, json_value

ENDPOINT_COLUMNS = (
    "id, url, description, event_types, enabled, ordered, disabled_reason, failing_since, previous_secret_expires_at, "
    "created_at, updated_at, verification_requested_at, verification, verified_at"
)
DELIVERY_COLUMNS = (
    "id, message_id, event_type, application_id, revision, status, attempts, next_attempt_at, last_status_code, "
    "last_error, created_at, delivered_at"
)
# One delivery per subscribed, enabled endpoint of the tenant; a key queued before is left as it is.
ENQUEUE = """
INSERT INTO webhook_deliveries (endpoint_id, event_key, message_id, event_type, application_id, revision, body)
SELECT e.id, $3, $4, $2, $5, $6, $7
  FROM webhook_endpoints e
 WHERE e.tenant_id = $1 AND e.enabled AND $2 = ANY(e.event_types)
ON CONFLICT (endpoint_id, event_key) DO NOTHING
"""
DELIVERIES_PAGE = 100


@dataclass(frozen=True)
class Created:
    """An endpoint as the API shows it, with its new secret (shown this once)."""

    endpoint: dict[str, Any]
    secret: str


def render_endpoint(row: asyncpg.Record) -> dict[str, Any]:
    """An endpoint as the API shows it (never its secret)."""
    rotation = row["previous_secret_expires_at"]
    return {
        "id": str(row["id"]),
        "url": row["url"],
        "description": row["description"],
        "event_types": list(row["event_types"]),
        "enabled": row["enabled"],
        "ordered": row["ordered"],
        "disabled_reason": row["disabled_reason"],
        "failing_since": row["failing_since"],
        "previous_secret_expires_at": rotation if rotation and rotation > datetime.now(UTC) else None,
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "verified": row["verified_at"] is not None,
        "verified_at": row["verified_at"],
        "verification_pending": row["verification_requested_at"] is not None,
        "verification": json_value(row["verification"]),
    }


def render_delivery(row: asyncpg.Record, attempts: list[asyncpg.Record]) -> dict[str, Any]:
    """A delivery with its attempts, oldest first."""
    return {
        "id": row["id"],
        "webhook_id": row["message_id"],
        "event_type": row["event_type"],
        "application_id": str(row["application_id"]) if row["application_id"] else None,
        "revision": row["revision"],
        "status": row["status"],
        "attempt_count": row["attempts"],
        "next_attempt_at": row["next_attempt_at"] if row["status"] == "pending" else None,
        "last_status_code": row["last_status_code"],
        "last_error": row["last_error"],
        "created_at": row["created_at"],
        "delivered_at": row["delivered_at"],
        "attempts": [
            {
                "attempted_at": a["attempted_at"],
                "status_code": a["status_code"],
                "latency_ms": round(a["latency_ms"], 1),
                "error": a["error"],
            }
            for a in attempts
        ],
    }


async def enqueue(
    conn: asyncpg.Connection,
    *,
    tenant_id: uuid.UUID,
    event_type: str,
    key: str,
    body: bytes,
    application_id: uuid.UUID | None = None,
    revision: int = 0,
) -> None:
    """Queue one event for every endpoint of the tenant subscribed to it (in the caller's transaction)."""
    await conn.execute(ENQUEUE, tenant_id, event_type, key, webhooks.message_id(key), application_id, revision, body)


class WebhookEndpoints:
    """Endpoints of a tenant: create, read, change, delete, rotate, test, and their deliveries."""

    def __init__(self, db: Database, *, box: webhooks.SecretBox | None, rotation_overlap: timedelta) -> None:
        self.db = db
        self.box = box
        self.rotation_overlap = rotation_overlap

    def _seal(self, secret: str) -> bytes:
        if self.box is None:
            raise webhooks.WebhookKeyMissing("WEBHOOK_SECRET_KEY is required in production")
        return self.box.seal(secret)

    async def create(
        self, *, tenant_id: uuid.UUID, url: str, event_types: list[str], description: str, ordered: bool = True
    ) -> Created:
        """A new endpoint with a new secret."""
        secret = webhooks.new_secret()
        async with self.db.connection() as conn:
            row = await conn.fetchrow(
                f"INSERT INTO webhook_endpoints (id, tenant_id, url, description, event_types, secret, ordered) "
                f"VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {ENDPOINT_COLUMNS}",
                uuid.uuid4(),
                tenant_id,
                url,
                description,
                event_types,
                self._seal(secret),
                ordered,
            )
        return Created(render_endpoint(row), secret)

    async def listing(self, *, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
        """Every endpoint of the tenant, oldest first."""
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY created_at, id",
                tenant_id,
            )
        return [render_endpoint(r) for r in rows]

    async def get(self, *, tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> dict[str, Any] | None:
        """One endpoint, or None."""
        async with self.db.connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2",
                endpoint_id,
                tenant_id,
            )
        return render_endpoint(row) if row else None

    async def update(
        self, *, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, changes: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Change url, event types, description, enabled or ordered; enabling clears the reason and failure clock."""
        sets, args = ["updated_at = now()"], []
        for column in ("url", "description", "event_types", "enabled", "ordered"):
            if column in changes:
                args.append(changes[column])
                sets.append(f"{column} = ${len(args) + 2}")
        if changes.get("enabled") is True:
            sets += ["disabled_reason = NULL", "failing_since = NULL"]
        row = await self._change(tenant_id, endpoint_id, ", ".join(sets), *args)
        return render_endpoint(row) if row else None

    async def delete(self, *, tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> bool:
        """Delete an endpoint and its deliveries; False if there was none."""
        async with self.db.connection() as conn:
            result = await conn.execute(
                "DELETE FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2", endpoint_id, tenant_id
            )
        return bool(result.endswith(" 1"))

    async def rotate(self, *, tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> Created | None:
        """A new secret; the current one keeps signing beside it for the overlap."""
        secret = webhooks.new_secret()
        row = await self._change(
            tenant_id,
            endpoint_id,
            "previous_secret = secret, secret = $3, previous_secret_expires_at = now() + $4::interval, "
            "updated_at = now()",
            self._seal(secret),
            self.rotation_overlap,
        )
        return Created(render_endpoint(row), secret) if row else None

    async def ping(self, *, tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> dict[str, Any] | None:
        """Queue a `ping` to the endpoint (even a disabled one is not pinged: None when it has none)."""
        key = f"{webhooks.PING}:{uuid.uuid4()}"
        now = datetime.now(UTC)
        body = webhooks.body(webhooks.PING, now, {"endpoint_id": str(endpoint_id)})
        async with self.db.connection() as conn:
            row = await conn.fetchrow(
                f"INSERT INTO webhook_deliveries (endpoint_id, event_key, message_id, event_type, body) "
                f"SELECT id, $3, $4, $5, $6 FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2 "
                f"RETURNING {DELIVERY_COLUMNS}",
                endpoint_id,
                tenant_id,
                key,
                webhooks.message_id(key),
                webhooks.PING,
                body,
            )
        return render_delivery(row, []) if row else None

    async def verify(self, *, tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> dict[str, Any] | None:
        """Ask a dispatcher to check the receiver (its report replaces the last one); None without the endpoint."""
        row = await self._change(tenant_id, endpoint_id, "verification_requested_at = now(), verification = NULL")
        return render_endpoint(row) if row else None

    async def _change(
        self, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, assignments: str, *args: Any
    ) -> asyncpg.Record | None:
        """Update one endpoint of the tenant (`assignments` take `args` as $3 onwards); its new row, or None."""
        async with self.db.connection() as conn:
            row: asyncpg.Record | None = await conn.fetchrow(
                f"UPDATE webhook_endpoints SET {assignments} WHERE id = $1 AND tenant_id = $2 "
                f"RETURNING {ENDPOINT_COLUMNS}",
                endpoint_id,
                tenant_id,
                *args,
            )
        return row

    async def deliveries(
        self, *, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, status: str | None
    ) -> list[dict[str, Any]] | None:
        """The endpoint's latest deliveries, newest first, each with its attempts; None without the endpoint."""
        async with self.db.connection() as conn:
            if not await self._owns(conn, tenant_id, endpoint_id):
                return None
            rows = await conn.fetch(
                f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE endpoint_id = $1 "
                f"AND ($2::text IS NULL OR status = $2) ORDER BY created_at DESC, id DESC LIMIT {DELIVERIES_PAGE}",
                endpoint_id,
                status,
            )
            attempts = await conn.fetch(
                "SELECT delivery_id, attempted_at, status_code, latency_ms, error FROM webhook_attempts "
                "WHERE delivery_id = ANY($1::bigint[]) ORDER BY attempted_at, id",
                [r["id"] for r in rows],
            )
        by_delivery: dict[int, list[asyncpg.Record]] = {}
        for attempt in attempts:
            by_delivery.setdefault(attempt["delivery_id"], []).append(attempt)
        return [render_delivery(r, by_delivery.get(r["id"], [])) for r in rows]

    async def retry(self, *, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, delivery_id: int) -> dict[str, Any] | None:
        """Send a delivery again now, under the same webhook-id, with a fresh retry schedule."""
        async with self.db.connection() as conn:
            row = await conn.fetchrow(
                f"UPDATE webhook_deliveries d SET status = 'pending', attempts = 0, next_attempt_at = now(), "
                f"lease_until = NULL FROM webhook_endpoints e "
                f"WHERE d.id = $3 AND d.endpoint_id = $1 AND e.id = d.endpoint_id AND e.tenant_id = $2 "
                f"RETURNING {', '.join('d.' + c.strip() for c in DELIVERY_COLUMNS.split(','))}",
                endpoint_id,
                tenant_id,
                delivery_id,
            )
        return render_delivery(row, []) if row else None

    async def recover(self, *, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, since: datetime) -> int | None:
        """Queue again every delivery that failed since `since`; how many (None without the endpoint)."""
        async with self.db.connection() as conn:
            if not await self._owns(conn, tenant_id, endpoint_id):
                return None
            result = await conn.execute(
                "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = now(), "
                "lease_until = NULL WHERE endpoint_id = $1 AND status = 'failed' AND created_at >= $2",
                endpoint_id,
                since,
            )
        return int(result.rsplit(" ", 1)[-1])

    @staticmethod
    async def _owns(conn: asyncpg.Connection, tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> bool:
        found = await conn.fetchval(
            "SELECT true FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2", endpoint_id, tenant_id
        )
        return bool(found)
