"""The loan application routes: /api/v1/loan_applications. HTTP only: parse, call the service, render."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from fastloans.contracts import APPLICATIONS_PATH, IDEMPOTENT_REPLAYED_HEADER
from fastloans_gateway.api.cursors import decode_cursor, encode_cursor
from fastloans_gateway.api.deps import (
    CallerDep,
    authorised,
    idempotency_key,
    parse_id,
    read_json,
    trace_context,
    validate,
    wait_seconds,
)
from fastloans_gateway.api.openapi import SUBMIT_DOC, UPDATE_DOC, WAIT_DOC, problems
from fastloans_gateway.api.responses import json_response
from fastloans_gateway.schemas import (
    LoanApplication,
    LoanApplicationCreate,
    LoanApplicationPage,
    LoanApplicationUpdate,
    render_application,
)

router = APIRouter(prefix=APPLICATIONS_PATH, tags=["loan applications"])


def location(application_id: object) -> str:
    """The URL path of an application."""
    return f"{APPLICATIONS_PATH}/{application_id}"


@router.post(
    "",
    status_code=202,
    response_model=LoanApplication,
    responses=problems(
        400,
        401,
        403,
        413,
        415,
        422,
        429,
        503,
        status_422="A field is invalid (`errors` names it), or the Idempotency-Key was used "
        "before with a different body",
    ),
    openapi_extra=SUBMIT_DOC,
    summary="Submit a loan application",
    operation_id="submitApplication",
)
async def submit_application(request: Request) -> Response:
    """Store the application (pending) and queue it for scoring; answers 202 with its id and Location."""
    who = await authorised(request, "submit")
    key = idempotency_key(request)
    body = validate(LoanApplicationCreate, await read_json(request)).model_dump()
    submitted = await request.app.state.applications.submit(
        tenant_id=who.tenant_id, body=body, idempotency_key=key, trace=trace_context(request)
    )
    headers = {"Location": location(submitted.application["id"])}
    if submitted.replayed:
        headers[IDEMPOTENT_REPLAYED_HEADER] = "true"
    return json_response(submitted.application, status_code=submitted.status, headers=headers)


@router.get(
    "",
    response_model=LoanApplicationPage,
    responses=problems(400, 401, 403, 422, 429, 503),
    summary="List this tenant's applications",
    operation_id="listApplications",
)
async def list_applications(
    request: Request,
    who: CallerDep,
    status: Annotated[Literal["pending", "approved", "rejected", "referred"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Newest first, `limit` per page; follow `next_cursor` for more."""
    who.require("read")
    after = decode_cursor(cursor) if cursor else None
    rows, more = await request.app.state.applications.page(
        tenant_id=who.tenant_id, status=status, limit=limit, after=after
    )
    next_cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more and rows else None
    return json_response({"items": [render_application(r) for r in rows], "next_cursor": next_cursor})


@router.get(
    "/{application_id}",
    response_model=LoanApplication,
    responses=problems(401, 403, 404, 422, 429, 503),
    openapi_extra=WAIT_DOC,
    summary="Get an application and its decision",
    operation_id="getApplication",
)
async def get_application(request: Request, application_id: str) -> Response:
    """Read from the replica (the primary if the row has not replicated yet); `wait` long-polls."""
    who = await authorised(request, "read")
    ident = parse_id(application_id)
    row, source = await request.app.state.applications.get(
        tenant_id=who.tenant_id, application_id=ident, wait=wait_seconds(request)
    )
    return json_response(render_application(row), headers={"X-Read-Source": source})


@router.patch(
    "/{application_id}",
    status_code=202,
    response_model=LoanApplication,
    responses=problems(400, 401, 403, 404, 413, 415, 422, 429, 503),
    openapi_extra=UPDATE_DOC,
    summary="Change an application (decided again as a new revision)",
    operation_id="updateApplication",
)
async def update_application(request: Request, who: CallerDep, application_id: str) -> Response:
    """Apply the changes as a new pending revision; a late decision for an older revision is ignored."""
    who.require("submit")
    ident = parse_id(application_id)
    changes = validate(LoanApplicationUpdate, await read_json(request)).model_dump(exclude_unset=True)
    row = await request.app.state.applications.revise(
        tenant_id=who.tenant_id, application_id=ident, changes=changes, trace=trace_context(request)
    )
    return json_response(render_application(row), status_code=202, headers={"Location": location(ident)})


@router.delete(
    "/{application_id}",
    status_code=204,
    responses=problems(401, 403, 404, 429, 503),
    summary="Withdraw an application",
    operation_id="withdrawApplication",
)
async def withdraw_application(request: Request, who: CallerDep, application_id: str) -> Response:
    """Withdraw: GET answers 404 afterwards and no late decision brings it back."""
    who.require("submit")
    await request.app.state.applications.withdraw(tenant_id=who.tenant_id, application_id=parse_id(application_id))
    return Response(status_code=204)
