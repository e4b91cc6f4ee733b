"""An unexpected exception is answered once by the gateway's edge (problem+json), not raised on to the server.

In memory: the app is called as an ASGI callable, without its lifespan (no database, no sockets).
"""

from __future__ import annotations

import logging

import asyncpg
import httpx
import pytest

from fastloans_gateway.app import create_app
from fastloans_gateway.metrics import HTTP_REQUESTS
from fastloans_gateway.settings import GatewaySettings


def gateway() -> httpx.AsyncClient:
    """A client on a gateway app with two failing routes; an exception raised out of the app fails the test."""
    app = create_app(
        GatewaySettings(
            DATABASE_URL="postgresql://app@db/loans",  # type: ignore[call-arg]
            KAFKA_BOOTSTRAP_SERVERS="k:9092",
            ENVIRONMENT="test",
        )
    )

    async def bug() -> None:
        raise RuntimeError("a bug")

    async def outage() -> None:
        raise asyncpg.CannotConnectNowError("the database is starting up")

    app.add_api_route("/test-only/bug", bug)
    app.add_api_route("/test-only/outage", outage)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=True), base_url="http://gw")


def count(route: str, status: str) -> float:
    return HTTP_REQUESTS.labels(route, "GET", status)._value.get()  # type: ignore[attr-defined]


@pytest.mark.parametrize(("path", "status"), [("/test-only/bug", 500), ("/test-only/outage", 503)])
async def test_an_exception_is_answered_logged_once_and_counted_with_its_status(
    path: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    before = count(path, str(status))
    with caplog.at_level(logging.WARNING):
        async with gateway() as http:
            response = await http.get(path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert (response.headers.get("retry-after") == "1") is (status == 503)
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1, caplog.records
    assert count(path, str(status)) == before + 1
