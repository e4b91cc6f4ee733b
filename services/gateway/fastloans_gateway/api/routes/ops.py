"""Health, readiness and metrics (served only on the ops port), and the benchmark's no-op floor."""

from __future__ import annotations

import asyncio

import orjson
from fastapi import APIRouter, Request, Response

from fastloans.metrics import render_metrics
from fastloans_gateway.settings import GatewaySettings

# The paths OpsPortMiddleware keeps to the ops port; requests for them are not logged.
OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
async def healthz() -> Response:
    """Alive."""
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get("/noop")
async def noop() -> Response:
    """The same server doing no work: the benchmark's floor for the cost of a request."""
    return Response(b"{}", media_type="application/json")


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """Ready when the databases answer and a Kafka broker accepts connections."""
    checks = await request.app.state.db.ping()
    checks["kafka"] = await kafka_reachable(request.app.state.settings)
    ok = all(checks.values())
    return Response(
        orjson.dumps({"status": "ready" if ok else "not ready", "checks": checks}),
        status_code=200 if ok else 503,
        media_type="application/json",
    )


@router.get("/metrics")
async def metrics() -> Response:
    """Prometheus metrics."""
    return Response(render_metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def kafka_reachable(settings: GatewaySettings) -> bool:
    """Whether a Kafka bootstrap server accepts a TCP connection (the relay does the producing)."""
    for server in settings.kafka_bootstrap_servers.split(","):
        host, _, port = server.rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout=1)
            writer.close()
            return True
        except (TimeoutError, OSError):
            continue
    return False
