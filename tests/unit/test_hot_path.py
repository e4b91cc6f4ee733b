"""The hot routes answer exactly as the router does: the same status, headers, body and metrics label.

In memory: two gateway apps, one with `GATEWAY_HOT_PATH` on and one with it off, called as ASGI callables
without their lifespan; the service layer below the HTTP layer is a stand-in (no database, no sockets).
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Match

from fastloans.contracts import APPLICATIONS_PATH, IDEMPOTENCY_KEY_HEADER
from fastloans_gateway.api.routes import applications as application_routes
from fastloans_gateway.app import create_app
from fastloans_gateway.applications import NotFound, Submitted, new_application
from fastloans_gateway.auth import Caller
from fastloans_gateway.hotpath import HotRoutes, hot_route
from fastloans_gateway.metrics import HTTP_REQUESTS
from fastloans_gateway.problems import Problem
from fastloans_gateway.schemas import EXAMPLE, LoanApplicationCreate, render_application
from fastloans_gateway.settings import GatewaySettings

TENANT = uuid.UUID("00000000-0000-4000-8000-000000000001")
KNOWN = new_application(TENANT, LoanApplicationCreate.model_validate(EXAMPLE).model_dump()) | {
    "id": uuid.UUID("00000000-0000-4000-8000-0000000000aa")
}
PUBLIC, OPS = 8000, 9180
KEYS = {"reader": {"read"}, "submitter": {"submit"}, "both": {"read", "submit"}}


class StandInAuth:
    """API keys by name; no key is 401 as the real authenticator answers it."""

    async def authenticate(self, authorization: str | None, client: object = None) -> Caller:
        key = (authorization or "").removeprefix("Bearer ")
        if key not in KEYS:
            raise Problem(401, "invalid API key")
        return Caller(tenant_id=TENANT, scopes=frozenset(KEYS[key]), key_hash=key.encode())


class StandInApplications:
    """One known application; ids ending in 'dead' are a database outage, 'b0b0' a bug."""

    admission = None

    async def get(self, *, tenant_id: uuid.UUID, application_id: uuid.UUID, wait: float = 0.0) -> Any:
        if application_id.hex.endswith("dead"):
            raise asyncpg.CannotConnectNowError("the database is starting up")
        if application_id.hex.endswith("b0b0"):
            raise RuntimeError("a bug")
        if application_id != KNOWN["id"]:
            raise NotFound
        return KNOWN, "replica"

    async def submit(
        self, *, tenant_id: uuid.UUID, body: dict[str, Any], idempotency_key: str | None, trace: Any
    ) -> Any:
        application = render_application(KNOWN | {"id": uuid.UUID(int=len(body))})
        return Submitted(status=202, application=application, replayed=idempotency_key == "seen")


def gateway(*, hot_path: bool) -> httpx.AsyncClient:
    app = create_app(
        GatewaySettings(
            DATABASE_URL="postgresql://app@db/loans",  # type: ignore[call-arg]
            KAFKA_BOOTSTRAP_SERVERS="k:9092",
            ENVIRONMENT="test",
            HTTP_PORT=PUBLIC,
            OPS_PORT=OPS,
            GATEWAY_HOT_PATH=hot_path,
            MAX_BODY_BYTES=2048,
        )
    )
    app.state.auth = StandInAuth()
    app.state.applications = StandInApplications()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    return httpx.AsyncClient(transport=transport, base_url=f"http://127.0.0.1:{PUBLIC}")


ITEM = f"{APPLICATIONS_PATH}/{KNOWN['id']}"
BODY = orjson.dumps(EXAMPLE)
JSON = {"content-type": "application/json"}
REQUESTS: list[tuple[str, str, dict[str, str], bytes | None]] = [
    ("GET", ITEM, {"authorization": "Bearer reader"}, None),
    ("HEAD", ITEM, {"authorization": "Bearer reader"}, None),
    ("GET", f"{ITEM}?wait=2", {"authorization": "Bearer reader"}, None),
    ("GET", f"{ITEM}?wait=soon", {"authorization": "Bearer reader"}, None),
    ("GET", f"{ITEM}?wait=9999", {"authorization": "Bearer reader"}, None),
    ("GET", f"{APPLICATIONS_PATH}/{uuid.uuid4()}", {"authorization": "Bearer reader"}, None),
    ("GET", f"{APPLICATIONS_PATH}/not-an-id", {"authorization": "Bearer reader"}, None),
    ("GET", f"{APPLICATIONS_PATH}/%20", {"authorization": "Bearer reader"}, None),
    ("GET", f"{APPLICATIONS_PATH}/00000000-0000-4000-8000-00000000dead", {"authorization": "Bearer reader"}, None),
    ("GET", f"{APPLICATIONS_PATH}/00000000-0000-4000-8000-00000000b0b0", {"authorization": "Bearer reader"}, None),
    ("GET", ITEM, {}, None),
    ("GET", ITEM, {"authorization": "Bearer submitter"}, None),
    ("GET", f"{ITEM}/", {"authorization": "Bearer reader"}, None),
    ("GET", f"{ITEM}/notice", {}, None),
    ("POST", ITEM, {"authorization": "Bearer both", **JSON}, BODY),
    ("PUT", ITEM, {"authorization": "Bearer both", **JSON}, BODY),
    ("POST", APPLICATIONS_PATH, {"authorization": "Bearer submitter", **JSON}, BODY),
    ("POST", APPLICATIONS_PATH, {"authorization": "Bearer submitter", **JSON, IDEMPOTENCY_KEY_HEADER: "seen"}, BODY),
    ("POST", APPLICATIONS_PATH, {"authorization": "Bearer submitter", **JSON, IDEMPOTENCY_KEY_HEADER: "k" * 256}, BODY),
    ("POST", APPLICATIONS_PATH, {"authorization": "Bearer reader", **JSON}, BODY),
    ("POST", APPLICATIONS_PATH, {**JSON}, BODY),
    ("POST", APPLICATIONS_PATH, {"authorization": "Bearer submitter", "content-type": "text/plain"}, BODY),
    ("POST", APPLICATIONS_PATH, {"authorization": "Bearer submitter", **JSON}, b"{not json"),
    ("POST", APPLICATIONS_PATH, {"authorization": "Bearer submitter", **JSON}, b"[]"),
    ("POST", APPLICATIONS_PATH, {"authorization": "Bearer submitter", **JSON}, orjson.dumps({**EXAMPLE, "x": 1})),
    ("POST", APPLICATIONS_PATH, {"authorization": "Bearer submitter", **JSON}, b" " * 4096 + BODY),
    ("POST", f"{APPLICATIONS_PATH}/", {"authorization": "Bearer submitter", **JSON}, BODY),
    ("GET", APPLICATIONS_PATH + "?limit=0", {"authorization": "Bearer reader"}, None),
]


def answer(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    return response.status_code, sorted(response.headers.multi_items()), response.content


def counted() -> dict[tuple[str, ...], float]:
    """Every (route, method, status) count of the gateway's request counter."""
    return {
        tuple(sample.labels.values()): sample.value
        for metric in HTTP_REQUESTS.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


def increments(
    before: dict[tuple[str, ...], float], after: dict[tuple[str, ...], float]
) -> dict[tuple[str, ...], float]:
    return {
        labels: value - before.get(labels, 0.0) for labels, value in after.items() if value != before.get(labels, 0.0)
    }


@pytest.mark.parametrize(("method", "url", "headers", "body"), REQUESTS)
async def test_the_hot_path_answers_as_the_router_does(
    method: str, url: str, headers: dict[str, str], body: bytes | None
) -> None:
    answers, labels = [], []
    for hot_path in (True, False):
        async with gateway(hot_path=hot_path) as http:
            before = counted()
            response = await http.request(method, url, headers=headers, content=body)
            labels.append(increments(before, counted()))
        answers.append(answer(response))
    assert answers[0] == answers[1]
    assert labels[0] == labels[1]
    assert answers[0][0] < 500 or answers[0][0] == 503 or url.endswith("b0b0")


async def test_the_hot_path_serves_the_hot_requests_itself_and_passes_the_rest_on() -> None:
    async with gateway(hot_path=True) as http:
        middleware = [m for m in http._transport.app.user_middleware if m.cls is HotRoutes]  # type: ignore[attr-defined]
    assert len(middleware) == 1
    async with gateway(hot_path=False) as http:
        assert not [m for m in http._transport.app.user_middleware if m.cls is HotRoutes]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", APPLICATIONS_PATH, ("submit", None)),
        ("GET", f"{APPLICATIONS_PATH}/abc", ("get", "abc")),
        ("GET", APPLICATIONS_PATH, None),
        ("GET", f"{APPLICATIONS_PATH}/", None),
        ("GET", f"{APPLICATIONS_PATH}/abc/notice", None),
        ("POST", f"{APPLICATIONS_PATH}/abc", None),
        ("PATCH", f"{APPLICATIONS_PATH}/abc", None),
        ("DELETE", f"{APPLICATIONS_PATH}/abc", None),
        ("GET", f"{APPLICATIONS_PATH}x/abc", None),
        ("POST", f"{APPLICATIONS_PATH}/", None),
    ],
)
def test_which_requests_are_hot(method: str, path: str, expected: tuple[str, str | None] | None) -> None:
    assert hot_route(method, path) == expected


def test_no_route_declared_before_the_hot_ones_would_take_their_requests() -> None:
    """For every route's path shape, the router's first match and the hot path agree on the endpoint."""
    app = create_app(
        GatewaySettings(DATABASE_URL="postgresql://app@db/loans", KAFKA_BOOTSTRAP_SERVERS="k:9092", ENVIRONMENT="test")  # type: ignore[call-arg]
    )
    endpoints = {"submit": application_routes.submit_application, "get": application_routes.get_application}
    # Every route in the order the router tries them (included routers expanded).
    every = [context.original_route for context in iter_route_contexts(app.router.routes)]
    assert any(route.endpoint is application_routes.get_application for route in every if isinstance(route, APIRoute))
    paths = {route.path.replace("{application_id}", "x1") for route in every if hasattr(route, "path")}
    paths = {path.replace("{", "").replace("}", "") for path in paths}
    checked = 0
    for path in sorted(paths):
        for method in ("GET", "POST"):
            hot = hot_route(method, path)
            if hot is None:
                continue
            scope = {"type": "http", "method": method, "path": path, "root_path": ""}
            first = next((route for route in every if route.matches(scope)[0] is Match.FULL), None)  # type: ignore[arg-type]
            assert first is not None, (method, path)
            _, child = first.matches(scope)  # type: ignore[arg-type]
            assert child.get("endpoint") is endpoints[hot[0]], (method, path, child.get("endpoint"))
            checked += 1
    assert checked >= 2
