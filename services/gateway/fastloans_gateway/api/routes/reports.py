"""Reports for the lender's credit-risk team: /api/v1/policy/... (admin keys only). HTTP only: the report itself
is `fastloans.policy.agreement`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel
from starlette.responses import JSONResponse

from fastloans.contracts import POLICY_PATH
from fastloans.policy.agreement import challenger_agreement
from fastloans_gateway.api.deps import CallerDep
from fastloans_gateway.api.openapi import problems
from fastloans_gateway.problems import Problem

DEFAULT_WINDOW = timedelta(days=7)
MAX_WINDOW = timedelta(days=366)
EARLIEST = datetime.min.replace(tzinfo=UTC)

router = APIRouter(prefix=POLICY_PATH, tags=["credit policy"])


class VersionPair(BaseModel):
    """The decisions made while one champion version ran beside one challenger version."""

    champion_version: str
    challenger_version: str
    decisions: int
    agreed: int


class ChallengerReport(BaseModel):
    """Champion versus challenger over the decisions recorded in [since, until)."""

    since: datetime
    until: datetime
    decisions: int
    agreed: int
    agreement_rate: str | None
    confusion: dict[str, dict[str, int]]
    policies: list[VersionPair]


def _utc(moment: datetime | None, field: str) -> datetime | None:
    """The moment in UTC (naive means UTC), or 422 if it cannot be one."""
    if moment is None:
        return None
    try:
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise Problem(422, f"{field} is out of range", errors=[{"field": field, "message": "out of range"}]) from None


@router.get(
    "/challenger",
    response_model=ChallengerReport,
    responses=problems(401, 403, 422, 429, 503),
    summary="Champion versus challenger agreement (admin scope)",
    operation_id="getChallengerReport",
)
async def challenger_report(
    request: Request,
    who: CallerDep,
    since: Annotated[datetime | None, Query(description="Decisions made at or after (default: until - 7 days)")] = None,
    until: Annotated[datetime | None, Query(description="Decisions made before (default: now)")] = None,
) -> Response:
    """Count this tenant's decisions that carry a shadow outcome, agreed ones, and champion x challenger."""
    who.require("admin")
    end = _utc(until, "until") or datetime.now(UTC)
    start = _utc(since, "since") or end - min(DEFAULT_WINDOW, end - EARLIEST)
    if start >= end:
        raise Problem(422, "since must be before until", errors=[{"field": "since", "message": "must be before until"}])
    if end - start > MAX_WINDOW:
        raise Problem(
            422,
            "the window may be at most 366 days",
            errors=[{"field": "since", "message": "at most 366 days before until"}],
        )
    async with request.app.state.db.connection(read=True) as conn:
        report = await challenger_agreement(conn, since=start, until=end, tenant_id=who.tenant_id)
    return JSONResponse(report.to_dict())
