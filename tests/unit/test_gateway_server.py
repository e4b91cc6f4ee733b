"""The gateway's HTTP limits as uvicorn gets them, and the server's own answers (no I/O)."""

from __future__ import annotations

import json

import pytest

from fastloans_gateway.main import http_limits, server_config
from fastloans_gateway.server import BODY_TIMEOUT, HEAD_TIMEOUT, HEAD_TOO_LARGE, TOO_MANY_HEADERS
from fastloans_gateway.settings import GatewaySettings


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> pytest.MonkeyPatch:
    """The required settings, in an empty directory (no .env file)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db/loans")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k:9092")
    return monkeypatch


def test_defaults_reach_the_protocol_and_uvicorn(env: pytest.MonkeyPatch) -> None:
    settings = GatewaySettings()  # type: ignore[call-arg]
    limits = http_limits(settings)
    assert (limits.max_head_bytes, limits.max_headers, limits.max_connections) == (16_384, 100, 1024)
    assert (limits.head_timeout, limits.body_timeout, limits.ops_port) == (10.0, 15.0, 9180)
    config = server_config(settings)
    # Longer than the idle timeout of the usual client pools and proxies: the server is not the side closing first.
    assert config.timeout_keep_alive == 75 and config.ws == "none"
    assert config.http.keywords["limits"] == limits  # type: ignore[union-attr]


def test_one_shared_port_caps_every_connection(env: pytest.MonkeyPatch) -> None:
    env.setenv("HTTP_PORT", "8080")
    env.setenv("OPS_PORT", "8080")
    assert http_limits(GatewaySettings()).ops_port == 0  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("response", "status"), [(HEAD_TOO_LARGE, 431), (TOO_MANY_HEADERS, 431), (HEAD_TIMEOUT, 408), (BODY_TIMEOUT, 408)]
)
def test_the_servers_own_answers_are_closing_problem_documents(response: bytes, status: int) -> None:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} ")
    fields = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert fields == {
        "content-type": "application/problem+json",
        "content-length": str(len(body)),
        "connection": "close",
    }
    assert json.loads(body)["status"] == status
