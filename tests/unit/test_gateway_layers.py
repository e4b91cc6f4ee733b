"""The gateway's layers keep to their business: the service layer and the outbox know nothing of HTTP, every
domain error has one HTTP answer, and the outbox row written on submit is the one the relay reads."""

from __future__ import annotations

import ast
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

import fastloans_gateway
from fastloans.events import ApplicationSubmitted
from fastloans.settings import Settings
from fastloans_gateway import admission, applications, outbox, reviews
from fastloans_gateway.api.errors import DOMAIN_PROBLEMS, domain_problem
from fastloans_gateway.applications import ApplicationError, IdempotencyConflict, NotFound

PACKAGE = Path(fastloans_gateway.__file__).parent
HTTP_MODULES = ("fastapi", "starlette", "fastloans_gateway.api", "fastloans_gateway.problems")
TRACEPARENT = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"


def imported(module: Path) -> set[str]:
    """Every module `module` imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "name", ["applications.py", "admission.py", "outbox.py", "waiting.py", "relay.py", "reviews.py"]
)
def test_the_service_layer_and_the_outbox_do_not_speak_http(name: str) -> None:
    speaking = {module for module in imported(PACKAGE / name) if module.startswith(HTTP_MODULES)}
    assert not speaking, speaking


def test_every_domain_error_has_exactly_one_answer() -> None:
    errors = {
        cls
        for module in (applications, admission, reviews)
        for cls in vars(module).values()
        if isinstance(cls, type)
        and issubclass(cls, ApplicationError)
        and cls not in (ApplicationError, reviews.ReviewError)
    }
    review_errors = {reviews.CaseNotFound, reviews.CaseConflict, reviews.NotAllowed, reviews.InvalidDecision}
    assert set(DOMAIN_PROBLEMS) == errors == {NotFound, IdempotencyConflict, admission.Overloaded, *review_errors}
    assert [domain_problem(error("x")).status for error in (reviews.CaseConflict, reviews.NotAllowed)] == [409, 403]
    invalid = domain_problem(reviews.InvalidDecision("note", "explain it"))
    assert invalid.status == 422 and invalid.errors == [{"field": "note", "message": "explain it"}]
    assert domain_problem(NotFound()).status == 404
    conflict = domain_problem(IdempotencyConflict())
    assert conflict.status == 422 and conflict.errors == [
        {"field": "Idempotency-Key", "message": "reused with a different body"}
    ]
    refused = domain_problem(admission.Overloaded(admission.Refusal.IN_FLIGHT, retry_after=3))
    assert refused.status == 503 and refused.headers == {"Retry-After": "3"} and "nothing was stored" in refused.detail


def test_the_row_written_on_submit_is_the_one_the_relay_reads() -> None:
    settings = Settings(
        database_url="postgresql://app@db/loans", kafka_bootstrap_servers="k:9092", kafka_topic_prefix="t."
    )
    application = applications.new_application(
        uuid.uuid4(),
        {
            "applicant_name": "Ada Lovelace",
            "credit_score": 750,
            "loan_amount": Decimal("2000.00"),
            "loan_purpose": "auto",
            "monthly_income": Decimal("5000.00"),
            "monthly_debt": Decimal("0.00"),
            "employment_status": "employed",
        },
    )
    row = outbox.submitted_row(settings, application, {"traceparent": TRACEPARENT, "tracestate": "x=\x00"})
    assert row.topic == "t.loan-applications.submitted" and row.key == str(application["id"])
    event = ApplicationSubmitted.decode(row.payload)
    assert event.application_id == application["id"] and event.facts.loan_amount == Decimal("2000.00")
    assert "Ada" not in row.payload.decode() + row.headers  # the applicant's name stays in the database
    headers = dict(outbox.kafka_headers(row.headers))
    assert headers["traceparent"] == TRACEPARENT.encode()
    assert "tracestate" not in headers  # an invalid trace state is dropped on the way out, not published
    assert set(orjson.loads(row.headers)) - {"traceparent", "tracestate"} <= set(headers)
    assert application["submitted_at"] <= datetime.now(UTC)
