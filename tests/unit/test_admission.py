"""Admission control's bounds, without I/O: who is refused, with which reason, and that slots are given back."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from fastloans.looplag import StandingLag
from fastloans_gateway.admission import AdmissionControl, Overloaded, Refusal, is_submission
from fastloans_gateway.app import create_app
from fastloans_gateway.metrics import ADMISSION_REFUSED, HTTP_REQUESTS
from fastloans_gateway.middleware import _shed_early
from fastloans_gateway.settings import GatewaySettings

# No connection is made: the app is called directly, its lifespan never runs.
GATEWAY_ENV = {
    "ENVIRONMENT": "test",
    "DATABASE_URL": "postgresql://fastloans@127.0.0.1:9/fastloans",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
}

pytestmark = pytest.mark.unit


def refused_count(reason: Refusal) -> float:
    return ADMISSION_REFUSED.labels(reason.value)._value.get()


def test_the_in_flight_bound_refuses_the_next_one_and_frees_its_slot_on_exit() -> None:
    control = AdmissionControl(None, max_in_flight=2, max_outbox_backlog=0, retry_after=4)
    before = refused_count(Refusal.IN_FLIGHT)
    with control.admitted(), control.admitted():
        assert control.in_flight == 2
        with pytest.raises(Overloaded) as refused, control.admitted():
            pass
        assert refused.value.reason is Refusal.IN_FLIGHT and refused.value.retry_after == 4
        assert control.in_flight == 2  # a refused submission holds no slot
    assert control.in_flight == 0
    assert refused_count(Refusal.IN_FLIGHT) == before + 1
    with control.admitted():
        assert control.in_flight == 1


def test_a_slot_is_freed_when_the_submission_fails() -> None:
    control = AdmissionControl(None, max_in_flight=1, max_outbox_backlog=0)
    with pytest.raises(RuntimeError), control.admitted():
        raise RuntimeError("the database went away")
    assert control.in_flight == 0


def test_the_outbox_bound_refuses_at_the_bound_and_not_below() -> None:
    control = AdmissionControl(None, max_in_flight=0, max_outbox_backlog=100)
    control.backlog = 99
    assert control.refusal() is None
    control.backlog = 100
    assert control.refusal() is Refusal.OUTBOX_BACKLOG
    with pytest.raises(Overloaded, match="decisions are behind"), control.admitted():
        pass


def test_zero_turns_a_bound_off() -> None:
    control = AdmissionControl(None, max_in_flight=0, max_outbox_backlog=0)
    control.backlog = 10**9
    with control.admitted(), control.admitted(), control.admitted():
        assert control.refusal() is None


def test_every_refusal_reason_is_counted_from_the_start() -> None:
    AdmissionControl(None, max_in_flight=1, max_outbox_backlog=1)
    labels = {sample.labels["reason"] for sample in ADMISSION_REFUSED.collect()[0].samples}
    assert labels >= {reason.value for reason in Refusal}


def test_a_standing_event_loop_lag_refuses_at_the_bound_and_not_below() -> None:
    lag = StandingLag(samples=2)
    control = AdmissionControl(None, max_in_flight=0, max_outbox_backlog=0, max_loop_lag=0.1, lag=lag)
    lag.add(0.099)
    lag.add(0.5)
    assert control.refusal() is None
    lag.add(0.1)
    assert control.refusal() is Refusal.LOOP_LAG
    with pytest.raises(Overloaded, match="busier than its CPU allows"), control.admitted():
        pass
    lag.add(0.002)
    assert control.refusal() is None
    off = AdmissionControl(None, max_in_flight=0, max_outbox_backlog=0, max_loop_lag=0, lag=lag)
    lag.add(5.0)
    lag.add(5.0)
    assert off.refusal() is None


@pytest.mark.parametrize(
    ("method", "path", "submission"),
    [
        ("POST", "/api/v1/loan_applications", True),
        ("PATCH", "/api/v1/loan_applications/5f0c6f5e-9d61-4c49-9d1e-0a4f1d2a9b10", True),
        ("GET", "/api/v1/loan_applications", False),
        ("DELETE", "/api/v1/loan_applications/5f0c6f5e-9d61-4c49-9d1e-0a4f1d2a9b10", False),
        ("POST", "/api/v1/loan_applications/5f0c6f5e-9d61-4c49-9d1e-0a4f1d2a9b10/notice/sent", False),
        ("POST", "/api/v1/reviews/x/claim", False),
    ],
)
def test_only_submissions_and_revisions_are_shed(method: str, path: str, submission: bool) -> None:
    assert is_submission(method, path) is submission


async def test_a_lagging_gateway_answers_a_submission_503_at_its_edge() -> None:
    """Before authentication and validation: a request with no key and no body still gets 503 + Retry-After."""
    lag = StandingLag(samples=1)
    control = AdmissionControl(None, max_in_flight=0, max_outbox_backlog=0, max_loop_lag=0.1, retry_after=2, lag=lag)
    app = create_app(GatewaySettings(_env_file=None, **GATEWAY_ENV))  # type: ignore[call-arg]
    app.state.applications = SimpleNamespace(admission=control)
    before = refused_count(Refusal.LOOP_LAG)
    lag.add(0.5)
    status, headers, body = await _call(app, "POST", "/api/v1/loan_applications")
    assert status == 503 and headers[b"retry-after"] == b"2", body
    assert orjson.loads(body)["detail"].startswith("the gateway is busier than its CPU allows")
    assert refused_count(Refusal.LOOP_LAG) == before + 1
    assert HTTP_REQUESTS.labels("/api/v1/loan_applications", "POST", "503")._value.get() >= 1
    # A read is never shed, and once the loop is quick a submission goes on to authentication and validation.
    assert _shed_early({"app": app, "method": "GET", "path": "/api/v1/loan_applications"}) is None
    lag.add(0.001)
    assert _shed_early({"app": app, "method": "POST", "path": "/api/v1/loan_applications"}) is None


async def _call(app: Any, method: str, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    settings = app.state.settings
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", settings.http_port),
        "state": {},
    }
    answer: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"], answer["headers"] = message["status"], dict(message["headers"])
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return answer["status"], answer["headers"], answer["body"]
