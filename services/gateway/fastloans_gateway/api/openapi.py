"""The OpenAPI document: each operation lists exactly the problems its code can answer.

Request bodies and the hand-read parameters (`wait`, `Idempotency-Key`) are declared here, since the routes
read them without FastAPI's parameter resolution; the document is built once, on first request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict

from fastloans.contracts import API_PREFIX, IDEMPOTENCY_KEY_HEADER
from fastloans_gateway.api.deps import MAX_IDEMPOTENCY_KEY, MAX_WAIT_SECONDS
from fastloans_gateway.problems import PROBLEM_JSON
from fastloans_gateway.review_schemas import InformationRequest, ReturnRequest, ReviewDecisionRequest, VersionedRequest
from fastloans_gateway.schemas import LoanApplicationCreate, LoanApplicationUpdate
from fastloans_gateway.webhook_schemas import RecoverRequest, WebhookEndpointCreate, WebhookEndpointUpdate

TITLE = "Fast Loans API"
VERSION = "1.0.0"
DESCRIPTION = (
    "Submit loan applications and read their decisions; receive them as signed webhooks. Every error is RFC 9457 "
    "`application/problem+json`. Money is decimal with at most two places."
)
SECURITY_SCHEME = "apiKey"

PROBLEMS = {
    400: "Malformed request (not JSON, not UTF-8, bad cursor)",
    401: "Missing, unknown or revoked API key",
    403: "The API key lacks the needed scope",
    404: "No such application for this tenant (or withdrawn)",
    409: "The review case's state, version or claim does not allow the action",
    413: "Request body over the size limit",
    415: "Body is not application/json",
    422: "A field or parameter is invalid; `errors` names it",
    429: "Rate limit for this API key exceeded; see Retry-After",
    503: "A dependency is unavailable; see Retry-After",
}


class ProblemBody(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(title="Problem")

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, str]] | None = None


def problems(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """The `responses` entries of these problem statuses (`status_422="..."` overrides a description)."""
    return {
        status: {
            "description": descriptions.get(f"status_{status}", PROBLEMS[status]),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """An operation's required JSON request body of `model` (listed in the components by `build`)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }


def optional_json_body(model: type[BaseModel]) -> dict[str, Any]:
    """An operation's optional JSON request body of `model` (an empty request is `{}`)."""
    body = json_body(model)
    body["requestBody"]["required"] = False
    return body


SUBMIT_DOC = {
    "parameters": [
        {
            "name": IDEMPOTENCY_KEY_HEADER,
            "in": "header",
            "required": False,
            "description": "Retry-safe submission key",
            "schema": {"type": "string", "maxLength": MAX_IDEMPOTENCY_KEY, "title": IDEMPOTENCY_KEY_HEADER},
        }
    ],
    **json_body(LoanApplicationCreate),
}
UPDATE_DOC = json_body(LoanApplicationUpdate)
WAIT_DOC = {
    "parameters": [
        {
            "name": "wait",
            "in": "query",
            "required": False,
            "description": "Seconds to wait for the current revision's decision",
            "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS, "default": 0, "title": "Wait"},
        }
    ]
}
# The schemas of FastAPI's own 422 body, which this API never sends.
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
COMPONENTS: dict[str, type[BaseModel]] = {
    "LoanApplicationCreate": LoanApplicationCreate,
    "LoanApplicationUpdate": LoanApplicationUpdate,
    "Problem": ProblemBody,
    "WebhookEndpointCreate": WebhookEndpointCreate,
    "WebhookEndpointUpdate": WebhookEndpointUpdate,
    "RecoverRequest": RecoverRequest,
    "VersionedRequest": VersionedRequest,
    "ReturnRequest": ReturnRequest,
    "ReviewDecisionRequest": ReviewDecisionRequest,
    "InformationRequest": InformationRequest,
}


def _drop_default_422(operation: dict[str, Any]) -> None:
    # FastAPI documents a 422 of its own shape for any operation with parameters; this API answers problem+json,
    # and only where an operation lists 422 itself (a path parameter of type str cannot fail).
    response = operation.get("responses", {}).get("422", {})
    if "application/json" in response.get("content", {}):
        del operation["responses"]["422"]


def build(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """`app.openapi`: the document, with the body models, the problem schema and bearer security on the API."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for name, model in COMPONENTS.items():
            schemas[name] = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components["securitySchemes"] = {SECURITY_SCHEME: {"type": "http", "scheme": "bearer"}}
        for path, operations in schema["paths"].items():
            for operation in operations.values():
                _drop_default_422(operation)
                if path.startswith(f"{API_PREFIX}/"):
                    operation["security"] = [{SECURITY_SCHEME: []}]
        for name in FASTAPI_VALIDATION_SCHEMAS:
            schemas.pop(name, None)
        app.openapi_schema = schema
        return schema

    return openapi
