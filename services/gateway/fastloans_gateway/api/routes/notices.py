"""Adverse-action notices: /api/v1/loan_applications/{id}/notice (HTML or PDF) and …/notice/sent. HTTP only."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, Final

from fastapi import APIRouter, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict

from fastloans.contracts import APPLICATIONS_PATH
from fastloans_gateway.api.deps import CallerDep, parse_id, read_json, validate
from fastloans_gateway.api.openapi import problems
from fastloans_gateway.api.responses import json_response
from fastloans_gateway.notices.pdf import html_to_pdf
from fastloans_gateway.notices.service import NoticeUnavailable, StoredNotice
from fastloans_gateway.problems import PROBLEM_JSON, Problem

log = logging.getLogger("fastloans.gateway")

HTML: Final = "text/html"
PDF: Final = "application/pdf"
# A notice's own styles are inline, and it loads nothing: the API's default policy would drop its styles.
NOTICE_CSP: Final = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
# Each reason a notice cannot be given, as the API answers it.
STATUS_OF: Final = {"approved": 404, "withdrawn": 404, "pending": 409, "settings": 409, "sent_conflict": 409}

router = APIRouter(prefix=APPLICATIONS_PATH, tags=["adverse-action notices"])


class NoticeSent(BaseModel):
    """When the lender sent the notice to the applicant (default: now)."""

    model_config = ConfigDict(extra="forbid")

    sent_at: AwareDatetime | None = None


class NoticeRecord(BaseModel):
    """A stored notice: the decision it is for, the template version, its SHA-256 and when it was sent."""

    application_id: str
    decision_id: int
    template_version: str
    content_sha256: str
    created_at: datetime
    sent_at: datetime | None


def _problem_doc(status: int, description: str) -> dict[int | str, dict[str, Any]]:
    return {
        status: {
            "description": description,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    }


NOTICE_RESPONSES: Final = {
    **problems(401, 403, 429, 503),
    **_problem_doc(404, "No such application for this tenant; or it was approved or withdrawn (no notice is due)"),
    **_problem_doc(409, "Not decided yet, or the tenant's notice settings are incomplete (`errors` names them)"),
}


def _quality(parameters: list[str]) -> float:
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                return min(max(float(value), 0.0), 1.0)
            except ValueError:
                return 0.0
    return 1.0


def preferred_media_type(accept: str | None) -> str | None:
    """HTML or PDF, whichever `accept` prefers (RFC 9110: the most specific range names a type's quality; HTML
    when both are equal or nothing is said); None when it accepts neither."""
    if not accept or not accept.strip():
        return HTML
    ranges: dict[str, float] = {}
    for item in accept.split(","):
        media_type, *parameters = (part.strip() for part in item.split(";"))
        ranges[media_type.lower()] = max(ranges.get(media_type.lower(), 0.0), _quality(parameters))

    def quality(offered: str) -> float:
        for candidate in (offered, offered.split("/")[0] + "/*", "*/*"):
            if candidate in ranges:
                return ranges[candidate]
        return 0.0

    html, pdf = quality(HTML), quality(PDF)
    if html > 0 and html >= pdf:
        return HTML
    return PDF if pdf > 0 else None


def unavailable(error: NoticeUnavailable) -> Problem:
    """The problem answering a notice that cannot be given."""
    errors = [
        {"field": name, "message": "not set" if error.reason == "settings" else "invalid"} for name in error.fields
    ]
    return Problem(STATUS_OF.get(error.reason, 422), error.detail, errors=errors or None)


def notice_headers(notice: StoredNotice) -> dict[str, str]:
    """Headers naming the stored notice: its hash (also the ETag) and the template version it was rendered with."""
    return {
        "ETag": f'"{notice.content_sha256}"',
        "X-Notice-Sha256": notice.content_sha256,
        "X-Notice-Template-Version": notice.template_version,
        "Content-Security-Policy": NOTICE_CSP,
        "Vary": "Accept",
    }


@router.get(
    "/{application_id}/notice",
    responses={
        200: {
            "description": "The notice of the current decision, as first rendered (stored once per decision)",
            "content": {HTML: {"schema": {"type": "string"}}, PDF: {"schema": {"type": "string", "format": "binary"}}},
        },
        **NOTICE_RESPONSES,
        **_problem_doc(406, "Accept names neither text/html nor application/pdf"),
    },
    response_class=Response,
    summary="Get the adverse-action notice of a rejected or referred application (HTML, or PDF by Accept)",
    operation_id="getNotice",
)
async def get_notice(request: Request, who: CallerDep, application_id: str) -> Response:
    """The current decision's notice: stored on the first request, the same document (same hash) ever after."""
    who.require("read")
    ident = parse_id(application_id)
    media_type = preferred_media_type(request.headers.get("accept"))
    if media_type is None:
        raise Problem(406, f"this notice is available as {HTML} or {PDF}")
    try:
        notice = await request.app.state.notices.get(tenant_id=who.tenant_id, application_id=ident)
    except NoticeUnavailable as error:
        raise unavailable(error) from None
    headers = notice_headers(notice)
    if media_type == HTML:
        return Response(notice.html, media_type=HTML, headers=headers)
    try:
        pdf = await asyncio.to_thread(html_to_pdf, notice.html)
    except OSError:  # WeasyPrint could not load Pango: the server lacks its system libraries
        log.error("PDF notices cannot be rendered: Pango is not installed (services/gateway/debian-packages.txt)")
        raise Problem(503, "PDF notices are not available on this server; ask for text/html") from None
    headers["Content-Disposition"] = f'inline; filename="notice-{ident}.pdf"'
    return Response(pdf, media_type=PDF, headers=headers)


@router.post(
    "/{application_id}/notice/sent",
    response_model=NoticeRecord,
    responses={
        **NOTICE_RESPONSES,
        **problems(400, 413, 415),
        **_problem_doc(409, "Already recorded with another time, not decided yet, or the notice settings are missing"),
        **problems(422, status_422="`sent_at` is not a time with an offset, is in the future, or precedes the notice"),
    },
    # Inline: the document's components list only the models `openapi.build` knows of.
    openapi_extra={
        "requestBody": {"required": False, "content": {"application/json": {"schema": NoticeSent.model_json_schema()}}}
    },
    summary="Record when the notice was sent to the applicant",
    operation_id="recordNoticeSent",
)
async def record_notice_sent(request: Request, who: CallerDep, application_id: str) -> Response:
    """Record `sent_at` (default now) once; the same time again is answered the same, another one is a 409."""
    who.require("submit")
    ident = parse_id(application_id)
    has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    body = validate(NoticeSent, await read_json(request)) if has_body else NoticeSent()
    try:
        notice = await request.app.state.notices.mark_sent(
            tenant_id=who.tenant_id, application_id=ident, sent_at=body.sent_at
        )
    except NoticeUnavailable as error:
        raise unavailable(error) from None
    return json_response(notice.to_dict(), headers={"ETag": f'"{notice.content_sha256}"'})
