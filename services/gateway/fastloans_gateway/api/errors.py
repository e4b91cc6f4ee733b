"""Every error the API answers, as problem+json, decided here: domain errors, bad parameters, HTTP errors, and
any unexpected exception (503 + Retry-After for an outage, else 500, logged once)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from fastloans.contracts import IDEMPOTENCY_KEY_HEADER
from fastloans.db.outages import is_database_outage
from fastloans.kafka import is_transient
from fastloans.webhooks import WebhookKeyMissing
from fastloans_gateway.admission import Overloaded
from fastloans_gateway.applications import ApplicationError, IdempotencyConflict, NotFound
from fastloans_gateway.problems import Problem, field_errors, problem_response
from fastloans_gateway.reviews import CaseConflict, CaseNotFound, InvalidDecision, NotAllowed

log = logging.getLogger("fastloans.gateway")

# The methods the API serves, as the HTTP metrics label them; any other the parser knows is counted as "other".
SERVED_METHODS = frozenset({"GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"})

# The service layer's errors as the API answers them. The README promises 422 for a reused Idempotency-Key.
DOMAIN_PROBLEMS: dict[type[ApplicationError], Callable[[Any], Problem]] = {
    NotFound: lambda _: Problem(404, "no such loan application"),
    IdempotencyConflict: lambda _: Problem(
        422,
        f"this {IDEMPOTENCY_KEY_HEADER} was already used with a different request body",
        errors=[{"field": IDEMPOTENCY_KEY_HEADER, "message": "reused with a different body"}],
    ),
    Overloaded: lambda error: Problem(503, str(error), headers={"Retry-After": str(error.retry_after)}),
    CaseNotFound: lambda _: Problem(404, "no such review case"),
    CaseConflict: lambda error: Problem(409, str(error)),
    NotAllowed: lambda error: Problem(403, str(error)),
    InvalidDecision: lambda error: Problem(
        422, f"invalid field(s): {error.field} ({error})", errors=[{"field": error.field, "message": str(error)}]
    ),
}


def domain_problem(error: ApplicationError) -> Problem:
    """The problem answering a service-layer error."""
    return DOMAIN_PROBLEMS[type(error)](error)


def error_response(error: Exception, path: str) -> Response:
    """The answer to an unexpected exception, logged once: 503 + Retry-After for an outage, else 500."""
    if isinstance(error, WebhookKeyMissing):
        log.error("webhook secrets cannot be sealed: WEBHOOK_SECRET_KEY is not set")
        return problem_response(Problem(503, "webhook endpoints are not configured on this server"), path)
    if is_transient(error) or is_database_outage(error):
        log.warning("dependency unavailable", extra={"error.type": type(error).__name__})
        return problem_response(
            Problem(503, "a dependency is unavailable; retry shortly", headers={"Retry-After": "1"}), path
        )
    log.exception("unhandled error", extra={"url.path": path})
    return problem_response(Problem(500, "internal error"), path)


async def on_problem(request: Request, problem: Problem) -> Response:
    """A problem raised by a route or a dependency."""
    return problem_response(problem, request.url.path)


async def on_domain_error(request: Request, error: ApplicationError) -> Response:
    """A service-layer error."""
    return problem_response(domain_problem(error), request.url.path)


async def on_validation(request: Request, error: RequestValidationError) -> Response:
    """A declared parameter FastAPI refused: 422 naming each."""
    errors = field_errors(list(error.errors()))
    names = ", ".join(dict.fromkeys(e["field"] for e in errors))
    return problem_response(Problem(422, f"invalid parameter(s): {names}", errors=errors), request.url.path)


async def on_http(request: Request, error: StarletteHTTPException) -> Response:
    """Routing's own answers (404, 405 with every method the path serves in Allow)."""
    detail = error.detail if isinstance(error.detail, str) else "error"
    headers = dict(error.headers or {})
    if error.status_code == 405:
        # Every method some route serves on the path (the router names only those of the first route it matched).
        methods = {
            method
            for method in SERVED_METHODS
            if any(
                route.matches({**request.scope, "method": method})[0] is Match.FULL
                for route in request.app.router.routes
            )
        }
        if methods:
            headers["Allow"] = ", ".join(sorted(methods | ({"HEAD"} if "GET" in methods else set())))
    return problem_response(Problem(error.status_code, detail, headers=headers), request.url.path)


async def on_error(request: Request, error: Exception) -> Response:
    """Anything else."""
    return error_response(error, request.url.path)


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error as problem+json."""
    # Starlette types every handler as taking any Exception; it calls each with the type it is registered for.
    handlers: dict[type[Exception], Callable[[Request, Any], Awaitable[Response]]] = {
        Problem: on_problem,
        ApplicationError: on_domain_error,
        RequestValidationError: on_validation,
        StarletteHTTPException: on_http,
        Exception: on_error,
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)
