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
async def ops_client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the ops port of a gateway app that is started (lifespan) against `database_url`."""
    settings = GatewaySettings(
        DATABASE_URL=database_url,  # type: ignore[call-arg]
        KAFKA_BOOTSTRAP_SERVERS=NOTHING_LISTENS,
        ENVIRONMENT="test",
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
    assert body["status"] == "ready"
    assert body["checks"]["primary"] is True
    assert "kafka" not in body["checks"]


async def test_not_ready_without_the_primary() -> None:
    async with ops_client(f"postgresql://fastloans@{NOTHING_LISTENS}/fastloans") as http:
        response = await http.get("/readyz")
    assert response.status_code == 503, response.text
    assert response.json()["checks"]["primary"] is False
