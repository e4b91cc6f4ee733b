"""The gateway's /readyz: not ready until the primary has answered once, then ready whatever fails.

The app runs in process (with its lifespan) against the real primary; Kafka's address refuses connections.
An accepted application waits in the outbox until the relay publishes it, so a gateway that left its Service
whenever Kafka is down would turn a Kafka outage into refused connections for every client; the same holds for a
primary outage after start (every gateway shares the primary), where the gateway answers 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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


class Partition:
    """A TCP relay on loopback to a real server, which `cut()` closes (listener and every relayed connection)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()


async def test_stays_ready_degraded_when_the_primary_goes_away_after_answering(migrated_db: Any) -> None:
    url = urlsplit(migrated_db.primary_url)
    partition = Partition(url.hostname or "127.0.0.1", url.port or 5432)
    port = await partition.start()
    credentials = url.netloc.rpartition("@")[0]
    relayed = urlunsplit(url._replace(netloc=f"{credentials}@127.0.0.1:{port}"))
    async with ops_client(relayed) as http:
        first = await http.get("/readyz")
        assert first.status_code == 200, first.text
        assert first.json() == {"status": "ready", "checks": {"primary": True}}
        await partition.cut()
        started = time.monotonic()
        after = await http.get("/readyz")
        took = time.monotonic() - started
    assert after.status_code == 200, after.text
    assert after.json() == {"status": "degraded", "checks": {"primary": False}}
    assert took < 2.0, f"/readyz took {took:.2f} s, longer than the chart's probe timeout"


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
