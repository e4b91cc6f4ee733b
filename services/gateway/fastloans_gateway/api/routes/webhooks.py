"""The webhook endpoint routes: /api/v1/webhook_endpoints (admin keys only). HTTP only: parse, call, render."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from fastloans import webhooks
from fastloans.contracts import WEBHOOK_ENDPOINTS_PATH
from fastloans_gateway.api.deps import CallerDep, read_json, validate
from fastloans_gateway.api.openapi import json_body, problems
from fastloans_gateway.api.responses import json_response
from fastloans_gateway.problems import Problem
from fastloans_gateway.webhook_endpoints import Created, WebhookEndpoints
from fastloans_gateway.webhook_schemas import (
    Recovered,
    RecoverRequest,
    WebhookDelivery,
    WebhookDeliveryList,
    WebhookEndpoint,
    WebhookEndpointCreate,
    WebhookEndpointList,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecret,
)

router = APIRouter(prefix=WEBHOOK_ENDPOINTS_PATH, tags=["webhooks"])
NO_ENDPOINT = "No such webhook endpoint for this tenant"
NO_DELIVERY = "No such webhook endpoint or delivery for this tenant"
ITEM = "/{endpoint_id}"


def _service(request: Request) -> WebhookEndpoints:
    service: WebhookEndpoints = request.app.state.webhook_endpoints
    return service


def _endpoint_id(endpoint_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(endpoint_id)
    except ValueError:
        raise Problem(404, "no such webhook endpoint") from None


@dataclass(frozen=True)
class Admin:
    """An admin caller's tenant and the service that holds its endpoints."""

    service: WebhookEndpoints
    tenant_id: uuid.UUID


@dataclass(frozen=True)
class Owned(Admin):
    """The endpoint a request names, looked up within the admin caller's tenant."""

    endpoint_id: uuid.UUID

    @property
    def ids(self) -> dict[str, uuid.UUID]:
        """The keyword arguments that name it to the service."""
        return {"tenant_id": self.tenant_id, "endpoint_id": self.endpoint_id}


async def _admin(request: Request, who: CallerDep) -> Admin:
    who.require("admin")
    return Admin(_service(request), who.tenant_id)


AdminDep = Annotated[Admin, Depends(_admin)]


async def _owned(admin: AdminDep, endpoint_id: str) -> Owned:
    return Owned(admin.service, admin.tenant_id, _endpoint_id(endpoint_id))


EndpointDep = Annotated[Owned, Depends(_owned)]


def _found(value: Any, what: str = "webhook endpoint") -> Any:
    if value is None:
        raise Problem(404, f"no such {what}")
    return value


def _check_url(request: Request, url: str | None) -> None:
    if url is None:
        return
    reason = webhooks.url_problem(url, environment=request.app.state.settings.environment)
    if reason:
        raise Problem(422, f"invalid field(s): url ({reason})", errors=[{"field": "url", "message": reason}])


def _with_secret(created: Created) -> dict[str, Any]:
    return {**created.endpoint, "secret": created.secret}


@router.post(
    "",
    status_code=201,
    response_model=WebhookEndpointWithSecret,
    responses=problems(400, 401, 403, 413, 415, 422, 429, 503),
    openapi_extra=json_body(WebhookEndpointCreate),
    summary="Subscribe an endpoint (admin scope); answers its signing secret once",
    operation_id="createWebhookEndpoint",
)
async def create_endpoint(request: Request, admin: AdminDep) -> Response:
    """Store the endpoint; the secret in the answer is never shown again."""
    body: WebhookEndpointCreate = validate(WebhookEndpointCreate, await read_json(request))
    _check_url(request, body.url)
    created = await admin.service.create(
        tenant_id=admin.tenant_id,
        url=body.url,
        event_types=list(dict.fromkeys(body.event_types)),
        description=body.description,
        ordered=body.ordered,
    )
    location = f"{WEBHOOK_ENDPOINTS_PATH}/{created.endpoint['id']}"
    return json_response(_with_secret(created), status_code=201, headers={"Location": location})


@router.get(
    "",
    response_model=WebhookEndpointList,
    responses=problems(401, 403, 429, 503),
    summary="List this tenant's webhook endpoints (admin scope)",
    operation_id="listWebhookEndpoints",
)
async def list_endpoints(admin: AdminDep) -> Response:
    """Every endpoint, oldest first (without secrets)."""
    return json_response({"items": await admin.service.listing(tenant_id=admin.tenant_id)})


@router.get(
    ITEM,
    response_model=WebhookEndpoint,
    responses=problems(401, 403, 404, 429, 503, status_404=NO_ENDPOINT),
    summary="Get a webhook endpoint (admin scope)",
    operation_id="getWebhookEndpoint",
)
async def get_endpoint(endpoint: EndpointDep) -> Response:
    """The endpoint, whether it is enabled and, if not, why."""
    return json_response(_found(await endpoint.service.get(**endpoint.ids)))


@router.patch(
    ITEM,
    response_model=WebhookEndpoint,
    responses=problems(400, 401, 403, 404, 413, 415, 422, 429, 503, status_404=NO_ENDPOINT),
    openapi_extra=json_body(WebhookEndpointUpdate),
    summary="Change a webhook endpoint's URL, event types, description, enabled or ordered (admin scope)",
    operation_id="updateWebhookEndpoint",
)
async def update_endpoint(request: Request, endpoint: EndpointDep) -> Response:
    """Apply the changes; enabling a disabled endpoint resumes its pending deliveries."""
    changes = validate(WebhookEndpointUpdate, await read_json(request)).model_dump(exclude_unset=True)
    _check_url(request, changes.get("url"))
    if "event_types" in changes:
        changes["event_types"] = list(dict.fromkeys(changes["event_types"]))
    return json_response(_found(await endpoint.service.update(**endpoint.ids, changes=changes)))


@router.delete(
    ITEM,
    status_code=204,
    responses=problems(401, 403, 404, 429, 503, status_404=NO_ENDPOINT),
    summary="Delete a webhook endpoint and its deliveries (admin scope)",
    operation_id="deleteWebhookEndpoint",
)
async def delete_endpoint(endpoint: EndpointDep) -> Response:
    """Nothing more is sent to it."""
    if not await endpoint.service.delete(**endpoint.ids):
        raise Problem(404, "no such webhook endpoint")
    return Response(status_code=204)


@router.post(
    f"{ITEM}/rotate-secret",
    response_model=WebhookEndpointWithSecret,
    responses=problems(401, 403, 404, 429, 503, status_404=NO_ENDPOINT),
    summary="Rotate the signing secret; the old one keeps signing beside it for the overlap (admin scope)",
    operation_id="rotateWebhookSecret",
)
async def rotate_secret(endpoint: EndpointDep) -> Response:
    """A new secret, shown once; `previous_secret_expires_at` says when the old one stops signing."""
    return json_response(_with_secret(_found(await endpoint.service.rotate(**endpoint.ids))))


@router.post(
    f"{ITEM}/test",
    status_code=202,
    response_model=WebhookDelivery,
    responses=problems(401, 403, 404, 429, 503, status_404=NO_ENDPOINT),
    summary="Send a ping to the endpoint (admin scope)",
    operation_id="pingWebhookEndpoint",
)
async def ping_endpoint(endpoint: EndpointDep) -> Response:
    """Queue a `ping` event; follow it in the endpoint's deliveries."""
    return json_response(_found(await endpoint.service.ping(**endpoint.ids)), status_code=202)


@router.post(
    f"{ITEM}/verify",
    status_code=202,
    response_model=WebhookEndpoint,
    responses=problems(401, 403, 404, 429, 503, status_404=NO_ENDPOINT),
    summary="Check the receiver: it must accept a signed ping and refuse forgeries and replays (admin scope)",
    operation_id="verifyWebhookEndpoint",
)
async def verify_endpoint(endpoint: EndpointDep) -> Response:
    """A dispatcher sends a signed ping, a badly signed one, an old one and a repeat; the report shows on GET."""
    return json_response(_found(await endpoint.service.verify(**endpoint.ids)), status_code=202)


@router.get(
    f"{ITEM}/deliveries",
    response_model=WebhookDeliveryList,
    responses=problems(401, 403, 404, 422, 429, 503, status_404=NO_ENDPOINT),
    summary="The endpoint's latest deliveries and their attempts (admin scope)",
    operation_id="listWebhookDeliveries",
)
async def list_deliveries(
    endpoint: EndpointDep, status: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None
) -> Response:
    """The latest 100, newest first, each with status code, latency and error per attempt."""
    return json_response({"items": _found(await endpoint.service.deliveries(**endpoint.ids, status=status))})


@router.post(
    f"{ITEM}/deliveries/{{delivery_id}}/retry",
    status_code=202,
    response_model=WebhookDelivery,
    responses=problems(401, 403, 404, 429, 503, status_404=NO_DELIVERY),
    summary="Send a delivery again now, under the same webhook-id (admin scope)",
    operation_id="retryWebhookDelivery",
)
async def retry_delivery(endpoint: EndpointDep, delivery_id: str) -> Response:
    """Queue the delivery again with a fresh retry schedule."""
    if not delivery_id.isdigit() or len(delivery_id) > 18:
        raise Problem(404, "no such delivery")
    row = await endpoint.service.retry(**endpoint.ids, delivery_id=int(delivery_id))
    return json_response(_found(row, "delivery"), status_code=202)


@router.post(
    f"{ITEM}/recover",
    response_model=Recovered,
    responses=problems(400, 401, 403, 404, 413, 415, 422, 429, 503, status_404=NO_ENDPOINT),
    openapi_extra=json_body(RecoverRequest),
    summary="Resend every delivery that failed since a time (admin scope)",
    operation_id="recoverWebhookEndpoint",
)
async def recover_endpoint(request: Request, endpoint: EndpointDep) -> Response:
    """Queue again the failed deliveries created at or after `since`."""
    body: RecoverRequest = validate(RecoverRequest, await read_json(request))
    since = body.since if body.since.tzinfo else body.since.replace(tzinfo=UTC)
    count = _found(await endpoint.service.recover(**endpoint.ids, since=since))
    return json_response({"requeued": count})
