"""The gateway's FastAPI application: routes, error handling, security headers, metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastloans.db import Database
from fastloans.kafka import is_transient
from fastloans.metrics import HTTP_ERRORS, HTTP_LATENCY, HTTP_REQUESTS, render_metrics, sample_database
from fastloans.observability import log_request, request_application_id, tag_request
from fastloans.settings import load_settings
from fastloans.tracing import instrument_app
from fastloans_gateway.api import ProblemBody, router
from fastloans_gateway.applications import OutboxNotifier, SubmitBatcher
from fastloans_gateway.auth import Authenticator
from fastloans_gateway.problems import Problem, field_errors, problem_response
from fastloans_gateway.reports import router as reports_router
from fastloans_gateway.schemas import LoanApplicationCreate, LoanApplicationUpdate
from fastloans_gateway.server import OpsPortMiddleware
from fastloans_gateway.settings import GatewaySettings
from fastloans_gateway.waiting import DecisionWaiters
from fastloans_gateway.web import web_router

log = logging.getLogger("fastloans.gateway")

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"),
]
# The methods the API serves, as the HTTP metrics label them; any other the parser knows is counted as "other".
SERVED_METHODS = frozenset({"GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"})


UNLOGGED_ROUTES = {"/healthz", "/readyz", "/metrics"}
OPENAPI_URL = "/openapi.json"


class EdgeMiddleware:
    """Security headers on every response; request metrics, a log line and error tags by route template.

    HEAD is routed as GET wherever GET is served (the ASGI server sends the headers without the body).
    An exception is answered here (503 for an outage, else 500) and not raised on: raised, it would be
    logged a second time by the server, which also drops the connection, and counted with the wrong status.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"] if scope["method"] in SERVED_METHODS else "other"
        if scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}
        # 499 (client closed request) unless a response starts: the client went away mid-request.
        status_holder = {"status": 499, "started": 0}
        location: list[bytes] = []

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = 1
                headers = list(message.get("headers", []))
                present = {name for name, _ in headers}
                location.extend(value for name, value in headers if name == b"location")
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
                if not scope["path"].startswith("/static/") and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as error:
            if status_holder["started"]:  # too late for an answer: the server closes the connection
                raise
            tag_request(request_application_id(scope, None))
            await error_response(error, scope["path"])(scope, receive, send_with_headers)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            status = str(status_holder["status"])
            HTTP_REQUESTS.labels(template, method, status).inc()
            HTTP_LATENCY.labels(template, method).observe(time.perf_counter() - started)
            if status_holder["status"] >= 400:
                HTTP_ERRORS.labels(template, status).inc()
            if template not in UNLOGGED_ROUTES and not scope["path"].startswith("/static/"):
                application_id = request_application_id(scope, location[0] if location else None)
                tag_request(application_id)
                log_request(method=method, route=template, status=status_holder["status"],
                            seconds=time.perf_counter() - started, application_id=application_id)


def error_response(error: Exception, path: str) -> Response:
    """The answer to an unexpected exception, logged once: 503 + Retry-After for an outage, else 500."""
    if is_transient(error) or isinstance(error, asyncpg.PostgresConnectionError):
        log.warning("dependency unavailable", extra={"error.type": type(error).__name__})
        return problem_response(Problem(503, "a dependency is unavailable; retry shortly",
                                        headers={"Retry-After": "1"}), path)
    log.exception("unhandled error", extra={"url.path": path})
    return problem_response(Problem(500, "internal error"), path)


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (LoanApplicationCreate, LoanApplicationUpdate, ProblemBody):
            components[model.__name__ if model is not ProblemBody else "Problem"] = model.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
        schema["components"]["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer"}}
        for path, operations in schema["paths"].items():
            if path.startswith("/api/"):
                for operation in operations.values():
                    operation["security"] = [{"apiKey": []}]
        app.openapi_schema = schema
        return schema
    return build


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """Build the gateway application (nothing connects until startup)."""
    settings = settings or load_settings(GatewaySettings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database.from_settings(settings)
        app.state.db = db
        app.state.auth = Authenticator.from_settings(db, settings)
        app.state.waiters = DecisionWaiters(settings)
        app.state.waiters.start()
        app.state.outbox = OutboxNotifier(db, interval=settings.outbox_linger_ms / 1000)
        app.state.outbox.start()
        app.state.submissions = SubmitBatcher(db, linger=settings.submit_linger_ms / 1000)
        sampler = asyncio.create_task(sample_database(db))
        try:
            yield
        finally:
            sampler.cancel()
            await app.state.outbox.stop()
            await app.state.waiters.stop()
            await app.state.auth.stop()
            await db.dispose()

    app = FastAPI(
        title="Fast Loans API",
        version="1.0.0",
        description="Submit loan applications and read their decisions. Every error is RFC 9457 "
                    "`application/problem+json`. Money is decimal with at most two places.",
        lifespan=lifespan,
        docs_url=None,  # served by web_router from local files, under the strict CSP
        openapi_url=OPENAPI_URL if settings.docs_enabled else None,
        redoc_url=None,
        # No trailing-slash redirects: Starlette builds their Location from the Host header. A wrong path is a 404.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.trace_parent = lambda: None
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    app.include_router(router)
    app.include_router(reports_router)
    app.include_router(web_router(docs_openapi_url=OPENAPI_URL if settings.docs_enabled else None))

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/noop", include_in_schema=False)
    async def noop() -> Response:
        # The same server doing no work: the benchmark's floor for the cost of a request.
        return Response(b"{}", media_type="application/json")

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        checks = await request.app.state.db.ping()
        checks["kafka"] = await _kafka_reachable(settings)
        ok = all(checks.values())
        return Response(orjson.dumps({"status": "ready" if ok else "not ready", "checks": checks}),
                        status_code=200 if ok else 503, media_type="application/json")

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(render_metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.exception_handler(Problem)
    async def on_problem(request: Request, problem: Problem) -> Response:
        return problem_response(problem, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, error: RequestValidationError) -> Response:
        errors = field_errors(list(error.errors()))
        names = ", ".join(dict.fromkeys(e["field"] for e in errors))
        return problem_response(Problem(422, f"invalid parameter(s): {names}", errors=errors), request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, error: StarletteHTTPException) -> Response:
        detail = error.detail if isinstance(error.detail, str) else "error"
        headers = dict(error.headers or {})
        if error.status_code == 405:
            # Every method some route serves on the path (the router names only those of the first route it matched).
            methods = {method for method in SERVED_METHODS
                       if any(route.matches({**request.scope, "method": method})[0] is Match.FULL
                              for route in request.app.router.routes)}
            if methods:
                headers["Allow"] = ", ".join(sorted(methods | ({"HEAD"} if "GET" in methods else set())))
        return problem_response(Problem(error.status_code, detail, headers=headers), request.url.path)

    @app.exception_handler(Exception)
    async def on_error(request: Request, error: Exception) -> Response:
        return error_response(error, request.url.path)

    # /healthz, /readyz and /metrics answer only on the ops port, the API only on the public one.
    app.add_middleware(OpsPortMiddleware, ops_port=settings.ops_port, public_port=settings.http_port,
                       ops_paths=UNLOGGED_ROUTES)
    if settings.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allow_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
            expose_headers=["Location", "Retry-After"],
            max_age=600,
        )
    app.add_middleware(EdgeMiddleware)
    instrument_app(app, settings)
    return app


async def _kafka_reachable(settings: GatewaySettings) -> bool:
    """Whether a Kafka bootstrap server accepts a TCP connection (the relay does the producing)."""
    import asyncio

    for server in settings.kafka_bootstrap_servers.split(","):
        host, _, port = server.rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout=1)
            writer.close()
            return True
        except (TimeoutError, OSError):
            continue
    return False
