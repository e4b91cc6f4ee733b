"""The gateway's FastAPI application, put together: state and its lifespan, routers, error handlers, middleware."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from fastloans import webhooks
from fastloans.background import cancel_all
from fastloans.contracts import IDEMPOTENCY_KEY_HEADER
from fastloans.db import Database
from fastloans.looplag import freeze_startup_heap, measure_lag
from fastloans.metrics import sample_database
from fastloans.settings import load_settings
from fastloans_gateway.admission import AdmissionControl
from fastloans_gateway.api import openapi
from fastloans_gateway.api.errors import add_error_handlers
from fastloans_gateway.api.routes import applications as application_routes
from fastloans_gateway.api.routes import notices as notice_routes
from fastloans_gateway.api.routes import ops, reports
from fastloans_gateway.api.routes import reviews as review_routes
from fastloans_gateway.api.routes import webhooks as webhook_routes
from fastloans_gateway.applications import Applications, SubmitBatcher
from fastloans_gateway.auth import Authenticator
from fastloans_gateway.hotpath import HotRoutes
from fastloans_gateway.metrics import declare_routes
from fastloans_gateway.middleware import EdgeMiddleware
from fastloans_gateway.notices.service import Notices
from fastloans_gateway.outbox import OutboxNotifier
from fastloans_gateway.reviews import Reviews
from fastloans_gateway.server import OpsPortMiddleware
from fastloans_gateway.settings import GatewaySettings
from fastloans_gateway.tracing import instrument_app
from fastloans_gateway.waiting import DecisionWaiters
from fastloans_gateway.web import web_router
from fastloans_gateway.webhook_endpoints import WebhookEndpoints

OPENAPI_URL = "/openapi.json"


def lifespan(settings: GatewaySettings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Open the database and start the background tasks on startup; stop them in reverse on shutdown.

    `app.state` then holds what the routes use: `db`, `auth` and `applications` (the service layer).
    """

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        db = Database.from_settings(settings)
        auth = Authenticator.from_settings(db, settings)
        waiters = DecisionWaiters(settings)
        notifier = OutboxNotifier(db, interval=settings.outbox_linger_ms / 1000)
        batcher = SubmitBatcher(db, linger=settings.submit_linger_ms / 1000)
        admission = admission_control(db, settings)
        app.state.db = db
        app.state.primary_answered = False  # set by /readyz on the primary's first answer
        app.state.auth = auth
        app.state.applications = Applications(
            db, settings, batcher=batcher, waiters=waiters, notify=notifier.poke, admission=admission
        )
        app.state.notices = Notices(db)
        app.state.reviews = Reviews(
            db, settings, claim_idle=timedelta(minutes=settings.review_claim_idle_minutes), notify=notifier.poke
        )
        app.state.webhook_endpoints = WebhookEndpoints(
            db, box=webhook_box(settings), rotation_overlap=timedelta(hours=settings.webhook_rotation_overlap_hours)
        )
        declare_routes(app.routes)
        waiters.start()
        notifier.start()
        admission.start()
        sampler = asyncio.create_task(sample_database(db))
        lag = asyncio.create_task(measure_lag())
        freeze_startup_heap()
        try:
            yield
        finally:
            await cancel_all([sampler, lag])
            await admission.stop()
            await notifier.stop()
            await waiters.stop()
            await auth.stop()
            await db.dispose()

    return run


def admission_control(db: Database | None, settings: GatewaySettings) -> AdmissionControl:
    """The process's admission bounds, from the settings."""
    return AdmissionControl(
        db,
        max_in_flight=settings.admission_max_in_flight,
        max_outbox_backlog=settings.admission_max_outbox_backlog,
        max_loop_lag=settings.admission_max_loop_lag_ms / 1000,
        retry_after=settings.admission_retry_after_seconds,
        sample_interval=settings.admission_sample_ms / 1000,
    )


def webhook_box(settings: GatewaySettings) -> webhooks.SecretBox | None:
    """The box sealing webhook secrets (None in production without WEBHOOK_SECRET_KEY: those routes answer 503)."""
    key = settings.webhook_secret_key.get_secret_value() if settings.webhook_secret_key else None
    try:
        return webhooks.secret_box(key, settings.environment)
    except webhooks.WebhookKeyMissing:
        return None


def add_routers(app: FastAPI, settings: GatewaySettings) -> None:
    """The API, the policy report, the webhook endpoints, the web page (and /docs when enabled), health and metrics."""
    app.include_router(application_routes.router)
    app.include_router(reports.router)
    app.include_router(notice_routes.router)
    app.include_router(webhook_routes.router)
    app.include_router(review_routes.router)
    app.include_router(web_router(docs_openapi_url=OPENAPI_URL if settings.docs_enabled else None))
    app.include_router(ops.router)


def add_middleware(app: FastAPI, settings: GatewaySettings) -> None:
    """The hot routes (innermost), ops-port separation, CORS when configured, and the edge (outermost: it sees
    every answer)."""
    if settings.hot_path:
        app.add_middleware(HotRoutes, exception_handlers=app.exception_handlers)
    # /healthz, /readyz and /metrics answer only on the ops port, the API only on the public one.
    app.add_middleware(
        OpsPortMiddleware, ops_port=settings.ops_port, public_port=settings.http_port, ops_paths=ops.OPS_PATHS
    )
    if settings.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allow_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", IDEMPOTENCY_KEY_HEADER],
            expose_headers=["Location", "Retry-After"],
            max_age=600,
        )
    app.add_middleware(EdgeMiddleware)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """Build the gateway application (nothing connects until startup)."""
    settings = settings or load_settings(GatewaySettings)
    app = FastAPI(
        title=openapi.TITLE,
        version=openapi.VERSION,
        description=openapi.DESCRIPTION,
        lifespan=lifespan(settings),
        docs_url=None,  # served by web_router from local files, under the strict CSP
        openapi_url=OPENAPI_URL if settings.docs_enabled else None,
        redoc_url=None,
        # No trailing-slash redirects: Starlette builds their Location from the Host header. A wrong path is a 404.
        redirect_slashes=False,
        # FastAPI's own OpenTelemetry hooks: off, as the gateway traces with Elastic APM. On, every request
        # asks the global OpenTelemetry providers whether they are configured (about 10% of a routed request).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.trace_parent = lambda: None
    app.openapi = openapi.build(app)  # type: ignore[method-assign]
    add_routers(app, settings)
    add_error_handlers(app)
    add_middleware(app, settings)
    instrument_app(app, settings)
    return app
