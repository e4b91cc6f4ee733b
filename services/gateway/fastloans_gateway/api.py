"""The loan application routes: /api/v1/loan_applications."""

from __future__ import annotations

import base64
import json
import math
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ValidationError

from fastloans.tracecontext import TRACE_HEADERS
from fastloans.tracecontext import trace_context as valid_trace_context
from fastloans_gateway import applications
from fastloans_gateway.auth import Caller
from fastloans_gateway.problems import PROBLEM_JSON, Problem, field_errors
from fastloans_gateway.schemas import (
    LoanApplication,
    LoanApplicationCreate,
    LoanApplicationPage,
    LoanApplicationUpdate,
    render_application,
)
from fastloans_gateway.waiting import RECHECK_SECONDS

PREFIX = "/api/v1/loan_applications"
MAX_WAIT_SECONDS = 30
MAX_IDEMPOTENCY_KEY = 255

router = APIRouter(prefix=PREFIX, tags=["loan applications"])


async def caller(request: Request) -> Caller:
    """The authenticated caller of this request."""
    return await request.app.state.auth.authenticate(request.headers.get("authorization"), request.scope.get("client"))


CallerDep = Annotated[Caller, Depends(caller)]


async def authorised(request: Request, scope: str) -> Caller:
    """The caller of this request, if its key has `scope` (401/403 otherwise).

    The hot routes call this directly instead of declaring a dependency: FastAPI's
    dependency resolution costs more per request than the lookup itself.
    """
    who = await request.app.state.auth.authenticate(request.headers.get("authorization"), request.scope.get("client"))
    who.require(scope)
    return who


def json_response(body: Any, *, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response serialised with orjson (UTC times end in "Z", as pydantic writes them)."""
    return Response(orjson.dumps(body, option=orjson.OPT_UTC_Z), status_code=status_code, headers=headers,
                    media_type="application/json")

PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": description,
             "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    for status, description in (
        (400, "Malformed request (not JSON, not UTF-8, bad cursor)"),
        (401, "Missing, unknown or revoked API key"),
        (403, "The API key lacks the needed scope"),
        (404, "No such application for this tenant (or withdrawn)"),
        (413, "Request body over the size limit"),
        (415, "Body is not application/json"),
        (422, "A field is invalid; `errors` names it"),
        (429, "Rate limit for this API key exceeded; see Retry-After"),
    )
}


class ProblemBody(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, str]] | None = None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:  # an exponent beyond what Decimal represents
        raise ValueError("number out of range") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object from its members, refusing a key given twice (the last would win silently)."""
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise Problem(422, f"invalid field(s): {key}",
                              errors=[{"field": key, "message": "given more than once"}])
            seen.add(key)
    for key, value in pairs:
        # "\ud800" escapes decode to unpaired surrogates, which neither UTF-8 nor PostgreSQL can hold.
        for text in (key, value) if isinstance(value, str) else (key,):
            if not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise Problem(400, "the body is not valid JSON: a string holds an unpaired surrogate "
                                       "escape") from None
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
        data = json.loads(text, parse_float=_decimal, parse_constant=_reject_constant,
                          object_pairs_hook=_unique_keys)
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


WAIT_DOC = {"parameters": [{
    "name": "wait", "in": "query", "required": False,
    "description": "Seconds to wait for the current revision's decision",
    "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS, "default": 0, "title": "Wait"},
}]}


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
        raise Problem(422, "invalid parameter(s): query.wait", errors=[
            {"field": "query.wait", "message": f"must be a number from 0 to {MAX_WAIT_SECONDS}"}])
    return value


def parse_id(application_id: str) -> uuid.UUID:
    """The application id, or 404 if it is not a UUID."""
    try:
        return uuid.UUID(application_id)
    except ValueError:
        raise Problem(404, "no such loan application") from None


def trace_context(request: Request) -> dict[str, str]:
    """The request's W3C trace context, validated and bounded, to carry into the outbox message."""
    # Invalid or oversized headers are dropped: the request goes on without them.
    context = valid_trace_context((name, value) for name in TRACE_HEADERS for value in request.headers.getlist(name))
    apm = request.app.state.trace_parent()
    if apm:
        context["traceparent"] = apm
    return context


def _location(application_id: object) -> str:
    return f"{PREFIX}/{application_id}"


BODY_DOC = {
    "parameters": [{
        "name": "Idempotency-Key", "in": "header", "required": False,
        "description": "Retry-safe submission key",
        "schema": {"type": "string", "maxLength": MAX_IDEMPOTENCY_KEY, "title": "Idempotency-Key"},
    }],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LoanApplicationCreate"}}},
    }
}
PATCH_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LoanApplicationUpdate"}}},
    }
}


@router.post(
    "",
    status_code=202,
    response_model=LoanApplication,
    responses={**PROBLEM_RESPONSES, 409: PROBLEM_RESPONSES[422] | {"description": "Idempotency conflict"}},
    openapi_extra=BODY_DOC,
    summary="Submit a loan application",
)
async def submit_application(request: Request) -> Response:
    """Store the application (pending) and queue it for scoring; answers 202 with its id and Location."""
    who = await authorised(request, "submit")
    idempotency_key = request.headers.get("idempotency-key") or None
    if idempotency_key is not None and len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
        raise Problem(422, "invalid parameter(s): Idempotency-Key", errors=[
            {"field": "Idempotency-Key", "message": f"may be at most {MAX_IDEMPOTENCY_KEY} characters"}])
    body = validate(LoanApplicationCreate, await read_json(request)).model_dump()
    status, response, replayed = await applications.submit(
        request.app.state.db, request.app.state.settings, tenant_id=who.tenant_id, body=body,
        idempotency_key=idempotency_key, trace=trace_context(request), render=render_application,
        notify=request.app.state.outbox.poke, batcher=request.app.state.submissions,
    )
    headers = {"Location": _location(response["id"])}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(response, status_code=status, headers=headers)


@router.get("", response_model=LoanApplicationPage, responses=PROBLEM_RESPONSES,
            summary="List this tenant's applications")
async def list_applications(
    request: Request,
    who: CallerDep,
    status: Annotated[Literal["pending", "approved", "rejected", "referred"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Newest first, `limit` per page; follow `next_cursor` for more."""
    who.require("read")
    position = _decode_cursor(cursor) if cursor else None
    rows = await applications.page(request.app.state.db, tenant_id=who.tenant_id, status=status,
                                   limit=limit, cursor=position)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = _encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more and rows else None
    return json_response({"items": [render_application(r) for r in rows], "next_cursor": next_cursor})


@router.get("/{application_id}", response_model=LoanApplication, responses=PROBLEM_RESPONSES,
            openapi_extra=WAIT_DOC, summary="Get an application and its decision")
async def get_application(request: Request, application_id: str) -> Response:
    """Read from the replica (the primary if the row has not replicated yet); `wait` long-polls."""
    who = await authorised(request, "read")
    ident = parse_id(application_id)
    wait = wait_seconds(request)
    db = request.app.state.db
    source = "replica"
    row = await applications.fetch(db, tenant_id=who.tenant_id, application_id=ident)
    if row is None:
        source = "primary"
        row = await applications.fetch(db, tenant_id=who.tenant_id, application_id=ident, primary=True)
    if row is None:
        raise Problem(404, "no such loan application")
    deadline = time.monotonic() + wait
    if wait and row["status"] == "pending":
        # Watching before reading the primary: a decision recorded after that read is announced to this watch.
        with request.app.state.waiters.watch(ident) as watch:
            source = "primary"
            while True:
                row = await applications.fetch(db, tenant_id=who.tenant_id, application_id=ident, primary=True)
                if row is None:
                    raise Problem(404, "no such loan application")
                remaining = deadline - time.monotonic()
                if row["status"] != "pending" or remaining <= 0:
                    break
                # Read again only when woken, or after RECHECK_SECONDS in case a notification was lost.
                if not await watch.wait(min(remaining, RECHECK_SECONDS)) and remaining <= RECHECK_SECONDS:
                    break
    return json_response(render_application(row), headers={"X-Read-Source": source})


@router.patch("/{application_id}", status_code=202, response_model=LoanApplication, responses=PROBLEM_RESPONSES,
              openapi_extra=PATCH_DOC, summary="Change an application (decided again as a new revision)")
async def update_application(request: Request, who: CallerDep, application_id: str) -> Response:
    """Apply the changes as a new pending revision; a late decision for an older revision is ignored."""
    who.require("submit")
    ident = parse_id(application_id)
    changes = validate(LoanApplicationUpdate, await read_json(request)).model_dump(exclude_unset=True)
    row = await applications.revise(request.app.state.db, request.app.state.settings, tenant_id=who.tenant_id,
                                    application_id=ident, changes=changes, trace=trace_context(request),
                                    notify=request.app.state.outbox.poke)
    if row is None:
        raise Problem(404, "no such loan application")
    return json_response(render_application(row), status_code=202, headers={"Location": _location(ident)})


@router.delete("/{application_id}", status_code=204, responses=PROBLEM_RESPONSES,
               summary="Withdraw an application")
async def withdraw_application(request: Request, who: CallerDep, application_id: str) -> Response:
    """Withdraw: GET answers 404 afterwards and no late decision brings it back."""
    who.require("submit")
    ident = parse_id(application_id)
    if not await applications.withdraw(request.app.state.db, tenant_id=who.tenant_id, application_id=ident):
        raise Problem(404, "no such loan application")
    return Response(status_code=204)


def _encode_cursor(created_at: datetime, ident: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.astimezone(UTC).isoformat()}|{ident}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor names, or 400 unless it is exactly one the API could have issued.

    Issued cursors hold a UTC time: another offset could take a date outside what PostgreSQL converts
    (year 1 at +14:00), and any other spelling of a valid position is refused the same way.
    """
    try:
        created, ident = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii").split("|", 1)
        position = datetime.fromisoformat(created), uuid.UUID(ident)
        if position[0].utcoffset() == timedelta(0) and _encode_cursor(*position) == cursor:
            return position
    except (ValueError, UnicodeError, OverflowError):
        pass
    raise Problem(400, "invalid cursor; use next_cursor from the previous page",
                  errors=[{"field": "cursor", "message": "invalid"}])
