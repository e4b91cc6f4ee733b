"""Health, readiness and metrics (served only on the ops port), and the benchmark's no-op floor."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response

from fastloans.metrics import render_metrics

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
    """Ready when the gateway can accept: the primary answers.

    Neither the replica (reads fall back to the primary) nor Kafka is checked: an accepted application waits in the
    outbox until the relay publishes it, so a Kafka outage must leave every gateway in its Service, answering 202
    (or 503 with Retry-After past the outbox bound), never taking them all out of it at once.
    """
    ok = await request.app.state.db.ping_primary()
    checks = {"primary": ok}
    return Response(
        orjson.dumps({"status": "ready" if ok else "not ready", "checks": checks}),
        status_code=200 if ok else 503,
        media_type="application/json",
    )


@router.get("/metrics")
async def metrics() -> Response:
    """Prometheus metrics."""
    return Response(render_metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")
