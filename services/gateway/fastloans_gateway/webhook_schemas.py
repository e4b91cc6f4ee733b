"""Request and response bodies of the webhook endpoints API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fastloans.webhooks import EVENT_TYPES

URL_MAX = 2000
DESCRIPTION_MAX = 500
EventType = Literal["application.decided", "application.withdrawn"]
EventTypes = Annotated[list[EventType], Field(min_length=1, max_length=len(EVENT_TYPES))]
Url = Annotated[str, Field(min_length=8, max_length=URL_MAX, description="http(s) URL (https in production)")]
Description = Annotated[str, Field(max_length=DESCRIPTION_MAX)]
Ordered = Annotated[
    bool,
    Field(
        description="deliveries for one application go out in revision order (false: each as soon as it is due, "
        "without waiting for an earlier revision still being retried; the payload's revision tells them apart)"
    ),
]


class WebhookEndpointCreate(BaseModel):
    """A new endpoint: where to send which events."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "url": "https://lender.example.com/hooks/fastloans",
                    "event_types": ["application.decided"],
                    "description": "origination",
                }
            ]
        },
    )

    url: Url
    event_types: EventTypes
    description: Description = ""
    ordered: Ordered = True


def _changes_schema(schema: dict[str, Any]) -> None:
    # Every field is optional but none is nullable: the default None only marks "not given".
    for field in schema["properties"].values():
        field.pop("default", None)
    schema["examples"] = [{"enabled": True}]


class WebhookEndpointUpdate(BaseModel):
    """Changes to an endpoint; `enabled: true` also clears why it was disabled."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra=_changes_schema)

    url: Url = None  # type: ignore[assignment]
    event_types: EventTypes = None  # type: ignore[assignment]
    description: Description = None  # type: ignore[assignment]
    enabled: bool = None  # type: ignore[assignment]
    ordered: Ordered = None  # type: ignore[assignment]

    @model_validator(mode="after")
    def _something(self) -> WebhookEndpointUpdate:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        return self


class RecoverRequest(BaseModel):
    """Resend every delivery that failed since this moment."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"since": "2026-12-01T00:00:00Z"}]})

    since: datetime


class VerificationCheck(BaseModel):
    """One request of the receiver check: what was sent, what the receiver should answer, what it did."""

    name: Literal["signed", "bad_signature", "old_timestamp", "repeat"]
    expected: Literal["2xx", "refusal"]
    status_code: int | None
    error: str | None
    passed: bool


class Verification(BaseModel):
    """The last receiver check: a signed ping, a badly signed one, one with an old timestamp, a repeat."""

    checked_at: datetime
    passed: bool
    checks: list[VerificationCheck]


class WebhookEndpoint(BaseModel):
    """An endpoint as the API shows it (its secret only once, when made)."""

    id: str
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    ordered: bool
    disabled_reason: str | None
    failing_since: datetime | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    verified: bool
    verified_at: datetime | None
    verification_pending: bool
    verification: Verification | None


class WebhookEndpointWithSecret(WebhookEndpoint):
    """An endpoint with its signing secret (`whsec_` + base64), shown this once."""

    secret: str


class WebhookEndpointList(BaseModel):
    """Every endpoint of the tenant."""

    items: list[WebhookEndpoint]


class WebhookAttempt(BaseModel):
    """One attempt to deliver: the receiver's status (None when no answer), how long, what went wrong."""

    attempted_at: datetime
    status_code: int | None
    latency_ms: float
    error: str | None


class WebhookDelivery(BaseModel):
    """One event for one endpoint, and its attempts."""

    id: int
    webhook_id: str
    event_type: str
    application_id: str | None
    revision: int
    status: Literal["pending", "delivered", "failed"]
    attempt_count: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    attempts: list[WebhookAttempt]


class WebhookDeliveryList(BaseModel):
    """The endpoint's latest deliveries, newest first."""

    items: list[WebhookDelivery]


class Recovered(BaseModel):
    """How many failed deliveries were queued again."""

    requeued: int
