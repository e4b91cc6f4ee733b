"""The review queue routes: /api/v1/reviews (keys with the review or supervise scope and an actor). HTTP only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from fastloans.contracts import REVIEWS_PATH
from fastloans.tenants import REVIEW_SCOPES
from fastloans_gateway.api.cursors import decode_cursor, encode_cursor
from fastloans_gateway.api.deps import CallerDep, read_json, trace_context, validate
from fastloans_gateway.api.openapi import json_body, optional_json_body, problems
from fastloans_gateway.api.responses import json_response
from fastloans_gateway.auth import Caller
from fastloans_gateway.problems import Problem
from fastloans_gateway.review_schemas import (
    CaseStateName,
    InformationRequest,
    ReturnRequest,
    ReviewCase,
    ReviewCaseDetail,
    ReviewDecisionRequest,
    ReviewQueuePage,
    VersionedRequest,
    render_case,
    render_detail,
)
from fastloans_gateway.reviews import CaseNotFound, Reviews

router = APIRouter(prefix=REVIEWS_PATH, tags=["review queue"])
ITEM = "/{case_id}"
ACTION_PROBLEMS = (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
NO_CASE = "No such review case for this tenant"
CLAIMED = "Another actor holds a live claim, or the case is not open"
NOT_HOLDER = "The caller does not hold a live claim, or the case moved on"


def _service(request: Request) -> Reviews:
    service: Reviews = request.app.state.reviews
    return service


def _actor(who: Caller, scope: str) -> str:
    """The actor of a caller whose key has `scope`; 403 for a key without an actor name."""
    who.require(scope)
    if who.actor is None:
        raise Problem(403, "this API key has no actor: review actions need one (fastloans keys create --actor NAME)")
    return who.actor


def _case_id(case_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(case_id)
    except ValueError:
        raise CaseNotFound from None


async def _body(request: Request, model: type[VersionedRequest]) -> Any:
    """The JSON body as `model`; an empty request is `{}` (every field of these bodies is optional)."""
    has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    return validate(model, await read_json(request) if has_body else {})


@router.get(
    "",
    response_model=ReviewQueuePage,
    responses=problems(400, 401, 403, 422, 429, 503),
    summary="The review queue: unfinished cases (or those in `state`), earliest due first, with the time left",
    operation_id="listReviewCases",
)
async def list_cases(
    request: Request,
    who: CallerDep,
    state: Annotated[CaseStateName | None, Query()] = None,
    due_before: Annotated[datetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Cases of this tenant; follow `next_cursor` for more."""
    if not who.scopes & {*REVIEW_SCOPES, "admin"}:
        raise Problem(403, "this API key lacks the 'review' or 'supervise' scope")
    if due_before is not None and due_before.tzinfo is None:
        raise Problem(
            422,
            "invalid parameter(s): query.due_before",
            errors=[{"field": "query.due_before", "message": "give a time zone (e.g. Z)"}],
        )
    position = decode_cursor(cursor) if cursor else None
    rows, more = await _service(request).page(
        tenant_id=who.tenant_id, state=state, due_before=due_before, limit=limit, after_position=position
    )
    now = datetime.now(UTC)
    next_cursor = encode_cursor(rows[-1]["due_at"], rows[-1]["id"]) if more and rows else None
    return json_response(
        {
            "items": [render_case(row, now) for row in rows],
            "next_cursor": next_cursor,
            "caller": {"actor": who.actor, "scopes": sorted(who.scopes)},
        }
    )


@router.get(
    ITEM,
    response_model=ReviewCaseDetail,
    responses=problems(401, 403, 404, 429, 503, status_404=NO_CASE),
    summary="A case with its application, the policy's decision record, the packet and the history",
    operation_id="getReviewCase",
)
async def get_case(request: Request, who: CallerDep, case_id: str) -> Response:
    """Read from the primary (a case changes by the second)."""
    if not who.scopes & {*REVIEW_SCOPES, "admin"}:
        raise Problem(403, "this API key lacks the 'review' or 'supervise' scope")
    detail = await _service(request).get(tenant_id=who.tenant_id, case_id=_case_id(case_id))
    return json_response(render_detail(detail.case, detail.application, detail.decision, detail.history))


@router.post(
    f"{ITEM}/claim",
    response_model=ReviewCase,
    responses=problems(*ACTION_PROBLEMS, status_404=NO_CASE, status_409=CLAIMED),
    openapi_extra=optional_json_body(VersionedRequest),
    summary="Claim the case (a lease, renewed by claiming again; it lapses after the idle time)",
    operation_id="claimReviewCase",
)
async def claim_case(request: Request, who: CallerDep, case_id: str) -> Response:
    """Take the case: `409` while another actor holds a live claim on it."""
    actor = _actor(who, "review")
    body: VersionedRequest = await _body(request, VersionedRequest)
    row = await _service(request).claim(
        tenant_id=who.tenant_id, case_id=_case_id(case_id), actor=actor, version=body.version
    )
    return json_response(render_case(row))


@router.post(
    f"{ITEM}/decision",
    response_model=ReviewCase,
    responses=problems(*ACTION_PROBLEMS, status_404=NO_CASE, status_409=NOT_HOLDER),
    openapi_extra=json_body(ReviewDecisionRequest),
    summary="Decide the claimed case; an override of the recommendation waits for a supervisor",
    operation_id="decideReviewCase",
)
async def decide_case(request: Request, who: CallerDep, case_id: str) -> Response:
    """Final when it follows the recommendation (published as a decision at once); else `awaiting_approval`."""
    actor = _actor(who, "review")
    body: ReviewDecisionRequest = validate(ReviewDecisionRequest, await read_json(request))
    row = await _service(request).decide(
        tenant_id=who.tenant_id,
        case_id=_case_id(case_id),
        actor=actor,
        version=body.version,
        outcome=body.outcome,
        reason_codes=list(body.reason_codes),
        note=body.note,
        trace=trace_context(request),
    )
    return json_response(render_case(row))


@router.post(
    f"{ITEM}/request-information",
    response_model=ReviewCase,
    responses=problems(*ACTION_PROBLEMS, status_404=NO_CASE, status_409=NOT_HOLDER),
    openapi_extra=json_body(InformationRequest),
    summary="Ask the applicant for information: the deadline's clock stops until a new revision",
    operation_id="requestReviewInformation",
)
async def request_information(request: Request, who: CallerDep, case_id: str) -> Response:
    """By the holder of the claim."""
    actor = _actor(who, "review")
    body: InformationRequest = validate(InformationRequest, await read_json(request))
    row = await _service(request).request_information(
        tenant_id=who.tenant_id, case_id=_case_id(case_id), actor=actor, version=body.version, items=list(body.items)
    )
    return json_response(render_case(row))


@router.post(
    f"{ITEM}/approve",
    response_model=ReviewCase,
    responses=problems(
        *ACTION_PROBLEMS,
        status_404=NO_CASE,
        status_403="The key lacks the supervise scope or an actor, or the caller made the decision (four eyes)",
        status_409="The case is not awaiting approval",
    ),
    openapi_extra=optional_json_body(VersionedRequest),
    summary="Approve someone else's override (supervise scope): the decision becomes final",
    operation_id="approveReviewDecision",
)
async def approve_decision(request: Request, who: CallerDep, case_id: str) -> Response:
    """Never by the actor who made the decision."""
    actor = _actor(who, "supervise")
    body: VersionedRequest = await _body(request, VersionedRequest)
    row = await _service(request).approve(
        tenant_id=who.tenant_id,
        case_id=_case_id(case_id),
        actor=actor,
        version=body.version,
        trace=trace_context(request),
    )
    return json_response(render_case(row))


@router.post(
    f"{ITEM}/return",
    response_model=ReviewCase,
    responses=problems(
        *ACTION_PROBLEMS,
        status_404=NO_CASE,
        status_403="The key lacks the supervise scope or an actor, or the caller made the decision (four eyes)",
        status_409="The case is not awaiting approval",
    ),
    openapi_extra=optional_json_body(ReturnRequest),
    summary="Return someone else's override to the queue (supervise scope)",
    operation_id="returnReviewDecision",
)
async def return_decision(request: Request, who: CallerDep, case_id: str) -> Response:
    """The case is open again and its decision cleared; the history keeps what was returned."""
    actor = _actor(who, "supervise")
    body: ReturnRequest = await _body(request, ReturnRequest)
    row = await _service(request).send_back(
        tenant_id=who.tenant_id, case_id=_case_id(case_id), actor=actor, version=body.version, note=body.note
    )
    return json_response(render_case(row))
