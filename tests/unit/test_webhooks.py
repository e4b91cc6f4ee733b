"""Webhook signing checked against the specification's own library, the address checks on literal IPs, the
sealing of secrets, the retry arithmetic and the dispatcher's settings (no I/O)."""

from __future__ import annotations

import base64
import time
import uuid
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from fastloans import webhooks
from fastloans.events import ApplicationDecided, PolicyRef
from fastloans.settings import ConfigurationError, load_settings
from fastloans_webhooks.sender import Attempt, Outcome, Refused, next_delay, plan_outcomes, resolve, retry_after
from fastloans_webhooks.settings import DEFAULT_SCHEDULE, WebhooksSettings

BASE = {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "DATABASE_URL": "postgresql://app@db/loans"}


def _headers(secrets: list[str], body: bytes, msg_id: str = "msg_1") -> dict[str, str]:
    now = int(time.time())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(now),
        "webhook-signature": webhooks.signature_header(secrets, msg_id, now, body),
    }


def test_signatures_verify_with_standardwebhooks() -> None:
    secret = webhooks.new_secret()
    assert secret.startswith("whsec_") and len(webhooks.secret_bytes(secret)) == webhooks.SECRET_BYTES
    body = b'{"type":"ping","timestamp":"2026-12-02T00:00:00Z","data":{}}'
    assert Webhook(secret).verify(body, _headers([secret], body))["type"] == "ping"
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify(body, _headers([secret], body))
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", _headers([secret], body))


def test_during_a_rotation_either_secret_verifies() -> None:
    old, new = webhooks.new_secret(), webhooks.new_secret()
    body = b'{"a":1}'
    headers = _headers([new, old], body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify(body, headers) == Webhook(new).verify(body, headers) == {"a": 1}


def test_secrets_are_sealed_and_opened() -> None:
    box = webhooks.SecretBox(bytes(32))
    secret = webhooks.new_secret()
    sealed = box.seal(secret)
    assert secret.encode() not in sealed and box.seal(secret) != sealed
    assert box.open(sealed) == secret
    with pytest.raises(Exception):  # noqa: B017  (cryptography's InvalidTag)
        webhooks.SecretBox(bytes([1]) * 32).open(sealed)


def test_the_secret_key_is_required_in_production_only() -> None:
    with pytest.raises(webhooks.WebhookKeyMissing):
        webhooks.secret_box(None, "production")
    assert webhooks.secret_box(None, "development").open(webhooks.secret_box(None, "test").seal("x")) == "x"
    with pytest.raises(ValueError, match="32 bytes"):
        webhooks.secret_box(base64.b64encode(b"short").decode(), "production")
    key = base64.b64encode(bytes(range(32))).decode()
    assert webhooks.secret_box(key, "production").open(webhooks.SecretBox(bytes(range(32))).seal("y")) == "y"


@pytest.mark.parametrize(
    ("address", "production", "development"),
    [
        ("93.184.215.14", True, True),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True, True),
        ("127.0.0.1", False, True),
        ("::1", False, True),
        ("::ffff:127.0.0.1", False, True),
        ("10.1.2.3", False, False),
        ("172.16.0.1", False, False),
        ("192.168.1.1", False, False),
        ("169.254.169.254", False, False),  # cloud metadata
        ("fd00:ec2::254", False, False),  # AWS metadata over IPv6
        ("fe80::1", False, False),
        ("100.64.0.1", False, False),  # carrier-grade NAT
        ("0.0.0.0", False, False),  # noqa: S104  (an address checked, not bound)
        ("224.0.0.1", False, False),
        ("::ffff:10.0.0.1", False, False),
    ],
)
def test_address_checks(address: str, production: bool, development: bool) -> None:
    assert webhooks.address_allowed(address, environment="production") is production
    assert webhooks.address_allowed(address, environment="development") is development
    assert webhooks.address_allowed(address, environment="test") is development


@pytest.mark.parametrize(
    ("url", "environment", "problem"),
    [
        ("https://hooks.example.com/fastloans", "production", None),
        ("http://hooks.example.com/fastloans", "production", "must be https"),
        ("http://127.0.0.1:8080/x", "test", None),
        ("https://127.0.0.1/x", "production", "must not be a loopback"),
        ("https://[::1]/x", "production", "must not be a loopback"),
        ("https://10.0.0.5/x", "development", "must not be a loopback"),
        ("ftp://example.com/x", "development", "absolute http(s) URL"),
        ("https://user:pw@example.com/x", "development", "credentials"),
        ("https://example.com:99999/x", "development", "absolute http(s) URL"),
        ("/relative", "development", "absolute http(s) URL"),
    ],
)
def test_url_checks(url: str, environment: str, problem: str | None) -> None:
    found = webhooks.url_problem(url, environment=environment)
    assert (found is None) if problem is None else (found is not None and problem in found), found


def test_decision_payloads_are_thin_and_ids_stable() -> None:
    event = ApplicationDecided(
        application_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        revision=2,
        submitted_at=datetime(2026, 12, 1, tzinfo=UTC),
        outcome="rejected",
        risk_score=115,
        contributions=[{"rule": "x", "points": 30}],
        principal_reasons=[{"reason_code": "DTI_HIGH", "text": "…"}, {"reason_code": "SCORE_LOW"}],
        policy=PolicyRef(name="seed", version="seed-1", hash="h"),
        decided_at=datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC),
    )
    data = webhooks.decided_data(event)
    assert data == {
        "application_id": str(event.application_id),
        "revision": 2,
        "outcome": "rejected",
        "score": 115,
        "reason_codes": ["DTI_HIGH", "SCORE_LOW"],
        "policy_version": "seed-1",
        "decided_by": "policy",
        "occurred_at": "2026-12-01T00:00:01Z",
    }
    key = webhooks.decided_key(event)
    redelivered = event.model_copy(update={"event_id": uuid.uuid4()})
    assert webhooks.message_id(key) == webhooks.message_id(webhooks.decided_key(redelivered))
    assert webhooks.message_id(key) != webhooks.message_id(key.replace(":2", ":3"))
    assert webhooks.body("application.decided", event.decided_at, data).startswith(
        b'{"type":"application.decided","timestamp":"2026-12-01T00:00:01Z"'
    )


def test_backoff_jitter_retry_after_and_the_end_of_the_schedule() -> None:
    schedule = (0.0, 5.0, 300.0)
    for _ in range(50):
        assert 4.0 <= next_delay(1, schedule, jitter=0.2, asked=None, cap=60) <= 6.0  # type: ignore[operator]
    assert next_delay(1, schedule, jitter=0, asked=120, cap=60) == 60
    assert next_delay(2, schedule, jitter=0, asked=10, cap=60) == 300
    assert next_delay(3, schedule, jitter=0, asked=None, cap=60) is None
    assert sum(DEFAULT_SCHEDULE) / 86_400 == pytest.approx(3.57, abs=0.01)
    now = time.time()
    assert retry_after("120", now) == 120
    assert retry_after(time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 30)), now) == pytest.approx(
        30, abs=1.5
    )
    assert retry_after("soon", now) is None and retry_after(None, now) is None


def test_a_batch_of_outcomes_is_sorted_into_its_statements() -> None:
    settings = WebhooksSettings(_env_file=None, WEBHOOK_RETRY_SCHEDULE="0,5", WEBHOOK_RETRY_JITTER="0", **BASE)  # type: ignore[call-arg]
    healthy, flaky, failing, gone = (uuid.uuid4() for _ in range(4))
    plan = plan_outcomes(
        [
            Attempt(1, healthy, 1, Outcome(204), 0.01),
            Attempt(2, flaky, 1, Outcome(500), 0.01),
            Attempt(3, flaky, 1, Outcome(200), 0.01),
            Attempt(4, failing, 1, Outcome(None, error="refused"), 0.01),
            Attempt(5, failing, 2, Outcome(503, retry_after=30.0), 0.01),
            Attempt(6, gone, 1, Outcome(410), 0.01),
            Attempt(7, healthy, 1, Outcome(302, error="redirects are not followed"), 0.01),
        ],
        settings,
    )
    assert plan.delivered == [(1, 204), (3, 200)]
    assert plan.rescheduled == [
        (2, "pending", 5.0, 500, "answered 500"),
        (4, "pending", 5.0, None, "refused"),
        (5, "failed", 0.0, 503, "answered 503"),  # the schedule is spent: given up, Retry-After or not
        (6, "failed", 0.0, 410, "answered 410"),
        (7, "pending", 5.0, 302, "redirects are not followed"),
    ]
    # An endpoint that succeeded in the batch is not failing; a 410 disables its endpoint.
    assert plan.succeeded == {healthy, flaky} and plan.failing == {failing} and plan.gone == {gone}
    assert plan.counts == {"delivered": 2, "retrying": 3, "failed": 1, "gone": 1}


def test_dispatcher_settings(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    settings = WebhooksSettings(_env_file=None, WEBHOOK_RETRY_SCHEDULE="0, 1,2.5", **BASE)  # type: ignore[call-arg]
    assert settings.webhook_retry_schedule == (0.0, 1.0, 2.5)
    assert settings.webhook_timeout_seconds == 10 and settings.lease_seconds > settings.webhook_timeout_seconds
    for name, value in {**BASE, "ENVIRONMENT": "production"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError):
        load_settings(WebhooksSettings, _env_file=None)
    assert "WEBHOOK_SECRET_KEY is required in production" in capsys.readouterr().err
    monkeypatch.setenv("WEBHOOK_RETRY_SCHEDULE", "1,-1")
    monkeypatch.setenv("ENVIRONMENT", "test")
    with pytest.raises(ConfigurationError):
        load_settings(WebhooksSettings, _env_file=None)


@pytest.mark.parametrize("address", ["10.0.0.7", "169.254.169.254", "fd00:ec2::254", "127.0.0.1", "::1"])
async def test_send_time_resolution_refuses_what_production_may_not_call(address: str) -> None:
    """Literal addresses resolve without any lookup; in production each is refused before a connection."""
    with pytest.raises(Refused, match="may not be called"):
        await resolve(address, 443, environment="production")


async def test_send_time_resolution_allows_loopback_in_test_only() -> None:
    assert await resolve("127.0.0.1", 8080, environment="test") == "127.0.0.1"
    with pytest.raises(Refused):
        await resolve("192.168.0.10", 8080, environment="test")
