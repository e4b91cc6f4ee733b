"""What the routes take from a request: the caller, its scopes, the JSON body, the Idempotency-Key, the trace.

`CallerDep` is a FastAPI dependency for the routes that are not on the hot path. The hot routes (submit, get
by id) call `authorised()` and the readers below directly: FastAPI's dependency and parameter resolution
costs more per request than the work they do.
"""

from __future__ import annotations

import json
import math
import uuid
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from fastloans.contracts import IDEMPOTENCY_KEY_HEADER
from fastloans.tracecontext import TRACE_HEADERS
from fastloans.tracecontext import trace_context as valid_trace_context
from fastloans_gateway.applications import NotFound
from fastloans_gateway.auth import Caller
from fastloans_gateway.problems import Problem, field_errors

MAX_WAIT_SECONDS = 30
MAX_IDEMPOTENCY_KEY = 255


async def caller(request: Request) -> Caller:
    """The authenticated caller of this request."""
    who: Caller = await request.app.state.auth.authenticate(
        request.headers.get("authorization"), request.scope.get("client")
    )
    return who


CallerDep = Annotated[Caller, Depends(caller)]


async def authorised(request: Request, scope: str) -> Caller:
    """The caller of this request, if its key has `scope` (401/403 otherwise)."""
    who: Caller = await request.app.state.auth.authenticate(
        request.headers.get("authorization"), request.scope.get("client")
    )
    who.require(scope)
    return who


def idempotency_key(request: Request) -> str | None:
    """The request's Idempotency-Key (None when absent or empty), or 422 when it is too long."""
    key = request.headers.get(IDEMPOTENCY_KEY_HEADER) or None
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY:
        raise Problem(
            422,
            f"invalid parameter(s): {IDEMPOTENCY_KEY_HEADER}",
            errors=[{"field": IDEMPOTENCY_KEY_HEADER, "message": f"may be at most {MAX_IDEMPOTENCY_KEY} characters"}],
        )
    return key


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:  # an exponent beyond what Decimal represents
        raise ValueError("number out of range") from None


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object from its members, refusing a key given twice (the last would win silently)."""
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise Problem(
                    422, f"invalid field(s): {key}", errors=[{"field": key, "message": "given more than once"}]
                )
            seen.add(key)
    for key, value in pairs:
        # "\ud800" escapes decode to unpaired surrogates, which neither UTF-8 nor PostgreSQL can hold.
        for text in (key, value) if isinstance(value, str) else (key,):
            if not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise Problem(
                        400, "the body is not valid JSON: a string holds an unpaired surrogate escape"
                    ) from None
    return data


def json_content_type(header: str) -> bool:
    """Whether a Content-Type is `application/json`, with at most a `charset=utf-8` parameter."""
    media_type, *parameters = header.split(";")
    if media_type.strip().lower() != "application/json":
        return False
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() != "charset" or value.strip().strip('"').lower() != "utf-8":
            return False
    return len(parameters) <= 1


async def read_json(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, with numbers as exact Decimals; clear 4xx errors otherwise."""
    if not json_content_type(request.headers.get("content-type", "")):
        raise Problem(415, "send the body as application/json (the only charset allowed is utf-8)")
    limit = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise Problem(413, f"the body may be at most {limit} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise Problem(413, f"the body may be at most {limit} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(400, "the body is not valid UTF-8") from None
    try:
        data = json.loads(text, parse_float=_decimal, parse_constant=_reject_constant, object_pairs_hook=unique_keys)
    except (ValueError, RecursionError) as error:
        message = error.msg if isinstance(error, json.JSONDecodeError) else str(error) or "too deeply nested"
        raise Problem(400, f"the body is not valid JSON: {message}") from None
    if not isinstance(data, dict):
        raise Problem(422, "the body must be a JSON object", errors=[{"field": "body", "message": "must be an object"}])
    return data


def validate(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """Validate `data` as `model`, or answer 422 naming every invalid field."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        errors = field_errors(error.errors(include_input=False))
        names = ", ".join(dict.fromkeys(e["field"] for e in errors))
        raise Problem(422, f"invalid field(s): {names}", errors=errors) from None


def wait_seconds(request: Request) -> float:
    """The `wait` query parameter (0 when absent), or 422.

    Read by hand rather than declared: FastAPI's parameter resolution was about a tenth of
    the cost of a GET by id.
    """
    raw = request.query_params.get("wait")
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= MAX_WAIT_SECONDS:  # also refuses nan
        raise Problem(
            422,
            "invalid parameter(s): query.wait",
            errors=[{"field": "query.wait", "message": f"must be a number from 0 to {MAX_WAIT_SECONDS}"}],
        )
    return value


def parse_id(application_id: str) -> uuid.UUID:
    """The application id; a path that is not a UUID names no application (`NotFound`)."""
    try:
        return uuid.UUID(application_id)
    except ValueError:
        raise NotFound from None


def trace_context(request: Request) -> dict[str, str]:
    """The request's W3C trace context, validated and bounded, to carry into the outbox message."""
    # Invalid or oversized headers are dropped: the request goes on without them.
    context = valid_trace_context((name, value) for name in TRACE_HEADERS for value in request.headers.getlist(name))
    apm = request.app.state.trace_parent()
    if apm:
        context["traceparent"] = apm
    return context
