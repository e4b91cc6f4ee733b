"""The OpenAPI document, built in memory: a valid OpenAPI 3.1 document, short operation ids, and for each
operation exactly the problem statuses its code can answer."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate

from fastloans.contracts import APPLICATIONS_PATH, POLICY_PATH, REVIEWS_PATH, WEBHOOK_ENDPOINTS_PATH
from fastloans_gateway.app import create_app
from fastloans_gateway.problems import PROBLEM_JSON
from fastloans_gateway.settings import GatewaySettings

ITEM = f"{APPLICATIONS_PATH}/{{application_id}}"
HOOKS = WEBHOOK_ENDPOINTS_PATH
HOOK = f"{HOOKS}/{{endpoint_id}}"
READ = {401, 403, 404, 429, 503}
CASE = f"{REVIEWS_PATH}/{{case_id}}"
CASE_ACTION = {400, 401, 403, 404, 409, 413, 415, 422, 429, 503}
# (path, method) -> (operationId, success status, problem statuses)
OPERATIONS = {
    (APPLICATIONS_PATH, "post"): ("submitApplication", "202", {400, 401, 403, 413, 415, 422, 429, 503}),
    (APPLICATIONS_PATH, "get"): ("listApplications", "200", {400, 401, 403, 422, 429, 503}),
    (ITEM, "get"): ("getApplication", "200", {401, 403, 404, 422, 429, 503}),
    (ITEM, "patch"): ("updateApplication", "202", {400, 401, 403, 404, 413, 415, 422, 429, 503}),
    (ITEM, "delete"): ("withdrawApplication", "204", {401, 403, 404, 429, 503}),
    (f"{ITEM}/notice", "get"): ("getNotice", "200", READ | {406, 409}),
    (f"{ITEM}/notice/sent", "post"): ("recordNoticeSent", "200", READ | {400, 409, 413, 415, 422}),
    (f"{POLICY_PATH}/challenger", "get"): ("getChallengerReport", "200", {401, 403, 422, 429, 503}),
    (HOOKS, "post"): ("createWebhookEndpoint", "201", {400, 401, 403, 413, 415, 422, 429, 503}),
    (HOOKS, "get"): ("listWebhookEndpoints", "200", {401, 403, 429, 503}),
    (HOOK, "get"): ("getWebhookEndpoint", "200", READ),
    (HOOK, "patch"): ("updateWebhookEndpoint", "200", {400, 401, 403, 404, 413, 415, 422, 429, 503}),
    (HOOK, "delete"): ("deleteWebhookEndpoint", "204", READ),
    (f"{HOOK}/rotate-secret", "post"): ("rotateWebhookSecret", "200", READ),
    (f"{HOOK}/test", "post"): ("pingWebhookEndpoint", "202", READ),
    (f"{HOOK}/verify", "post"): ("verifyWebhookEndpoint", "202", READ),
    (f"{HOOK}/deliveries", "get"): ("listWebhookDeliveries", "200", READ | {422}),
    (f"{HOOK}/deliveries/{{delivery_id}}/retry", "post"): ("retryWebhookDelivery", "202", READ),
    (f"{HOOK}/recover", "post"): ("recoverWebhookEndpoint", "200", {400, 401, 403, 404, 413, 415, 422, 429, 503}),
    (REVIEWS_PATH, "get"): ("listReviewCases", "200", {400, 401, 403, 422, 429, 503}),
    (CASE, "get"): ("getReviewCase", "200", READ),
    (f"{CASE}/claim", "post"): ("claimReviewCase", "200", CASE_ACTION),
    (f"{CASE}/decision", "post"): ("decideReviewCase", "200", CASE_ACTION),
    (f"{CASE}/request-information", "post"): ("requestReviewInformation", "200", CASE_ACTION),
    (f"{CASE}/approve", "post"): ("approveReviewDecision", "200", CASE_ACTION),
    (f"{CASE}/return", "post"): ("returnReviewDecision", "200", CASE_ACTION),
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    app = create_app(
        GatewaySettings(
            DATABASE_URL="postgresql://app@db/loans",  # type: ignore[call-arg]
            KAFKA_BOOTSTRAP_SERVERS="k:9092",
            ENVIRONMENT="test",
        )
    )
    return app.openapi()


def test_the_document_is_valid_openapi(spec: dict[str, Any]) -> None:
    validate(spec)


def test_optional_fields_of_a_change_have_no_null_default(spec: dict[str, Any]) -> None:
    update = spec["components"]["schemas"]["LoanApplicationUpdate"]
    assert "required" not in update
    for name, field in update["properties"].items():
        types = [field.get("type")] + [choice.get("type") for choice in field.get("anyOf", ())]
        assert "default" not in field and "null" not in types, name


def test_every_operation_has_its_short_id_and_exactly_the_problems_it_answers(spec: dict[str, Any]) -> None:
    found = {
        (path, method): operation for path, methods in spec["paths"].items() for method, operation in methods.items()
    }
    assert set(found) == set(OPERATIONS)
    for key, (operation_id, success, statuses) in OPERATIONS.items():
        operation = found[key]
        assert operation["operationId"] == operation_id, key
        assert operation["security"] == [{"apiKey": []}], key
        responses = operation["responses"]
        assert set(responses) == {success} | {str(status) for status in statuses}, key
        for status in statuses:
            assert list(responses[str(status)]["content"]) == [PROBLEM_JSON], (key, status)


def test_no_idempotency_conflict_status_but_the_422_the_code_answers(spec: dict[str, Any]) -> None:
    submit = spec["paths"][APPLICATIONS_PATH]["post"]
    assert "409" not in submit["responses"]
    assert "Idempotency-Key" in submit["responses"]["422"]["description"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
