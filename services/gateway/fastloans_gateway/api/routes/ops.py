"""Health, readiness and metrics (served only on the ops port), and the benchmark's no-op floor."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response

from fastloans.metrics import render_metrics_off_loop

# The paths OpsPortMiddleware keeps to the ops port; requests for them are not logged.
OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

router = APIRouter(include_in_schema=False)

# How long /readyz waits for the primary's `SELECT 1`: under the chart's probe timeout (2 s), so that a primary
# that does not answer is reported in the body instead of the probe timing out.
READINESS_PING_SECONDS = 1.0


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
    """Ready once the primary has answered since the process started; from then on ready whatever it answers.

    Before its first answer the gateway is not ready (503): a pod started with a wrong address or password never
    joins its Service, so a bad rollout stops at its first new pod. After that, a primary outage does not take the
    gateway out: every gateway shares the same primary, so taking them out would gain nothing and turn the outage
    into refused connections for every client, reads from the replica included. The gateway keeps answering
    instead, 503 with Retry-After for what needs the primary, and the body says `degraded`. Neither the replica
    (reads fall back to the primary) nor Kafka (an accepted application waits in the outbox) is checked.
    """
    state = request.app.state
    primary = await state.db.ping_primary(within=READINESS_PING_SECONDS)
    if primary:
        state.primary_answered = True
    ready = primary or state.primary_answered
    status = "ready" if primary else "degraded" if ready else "not ready"
    return Response(
        orjson.dumps({"status": status, "checks": {"primary": primary}}),
        status_code=200 if ready else 503,
        media_type="application/json",
    )


@router.get("/metrics")
async def metrics() -> Response:
    """Prometheus metrics."""
    return Response(await render_metrics_off_loop(), media_type="text/plain; version=0.0.4; charset=utf-8")
