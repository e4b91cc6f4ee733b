"""The gateway's /readyz says whether it can accept an application: the primary decides, Kafka does not.

The app runs in process (with its lifespan) against the real primary; Kafka's address refuses connections.
An accepted application waits in the outbox until the relay publishes it, so a gateway that left its Service
whenever Kafka is down would turn a Kafka outage into refused connections for every client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from fastloans_gateway.app import create_app
from fastloans_gateway.settings import GatewaySettings

NOTHING_LISTENS = "127.0.0.1:9"  # the discard port: connections are refused


@asynccontextmanager
async def ops_client(database_url: str, **env: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the ops port of a gateway app that is started (lifespan) against `database_url`."""
    settings = GatewaySettings(
        DATABASE_URL=database_url,  # type: ignore[call-arg]
        KAFKA_BOOTSTRAP_SERVERS=NOTHING_LISTENS,
        ENVIRONMENT="test",
        **env,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://gw:{settings.ops_port}") as http:
            yield http


async def test_ready_with_the_primary_while_kafka_refuses_connections(migrated_db: Any) -> None:
    async with ops_client(migrated_db.primary_url) as http:
        response = await http.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {"status": "ready", "checks": {"primary": True}}


async def test_not_ready_without_the_primary() -> None:
    async with ops_client(f"postgresql://fastloans@{NOTHING_LISTENS}/fastloans") as http:
        response = await http.get("/readyz")
    assert response.status_code == 503, response.text
    assert response.json()["checks"]["primary"] is False


async def test_ready_with_the_primary_while_the_replica_is_unreachable(migrated_db: Any) -> None:
    """Reads fall back to the primary, so the replica decides nothing (and costs the probe no round trip)."""
    unreachable = f"postgresql://fastloans@{NOTHING_LISTENS}/fastloans"
    async with ops_client(migrated_db.primary_url, DATABASE_READ_URL=unreachable) as http:
        response = await http.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"primary": True}
