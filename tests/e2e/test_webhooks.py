"""Webhooks end to end: decisions delivered by the running dispatcher to a real HTTP receiver on loopback, each
delivery verified with the Standard Webhooks specification's own library (`standardwebhooks`)."""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from fastloans.contracts import APPLICATIONS_PATH, WEBHOOK_ENDPOINTS_PATH
from tests.conftest import TEST_SERVICE_ENV, issue_test_key
from tests.webhook_receiver import Received, Receiver, serve, verifying

from .test_pipeline import APPROVED, REJECTED, decided, submit

# The dispatchers the tests start wait at most this long per attempt (the services fixture's: see conftest).
TIMEOUT = float(TEST_SERVICE_ENV["WEBHOOK_TIMEOUT_SECONDS"])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver answering 204 unless the test changes `answer`; stopped afterwards."""
    made = Receiver().start()
    yield made
    made.stop()


@pytest.fixture
async def admin(api_url: str, migrated_db) -> AsyncIterator[httpx.AsyncClient]:
    """A client with an admin key of a tenant of its own (admin keys submit and read too)."""
    key = await issue_test_key(migrated_db.primary_url, f"hooks-{uuid.uuid4().hex[:8]}", scopes=("admin",))
    async with httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=40) as http:
        yield http


async def subscribe(admin: httpx.AsyncClient, url: str, **extra: Any) -> dict[str, Any]:
    """Create an endpoint for decisions; answers it with its secret."""
    response = await admin.post(
        WEBHOOK_ENDPOINTS_PATH, json={"url": url, "event_types": ["application.decided"], **extra}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert response.headers["location"] == f"{WEBHOOK_ENDPOINTS_PATH}/{body['id']}"
    assert body["secret"].startswith("whsec_")
    return body


async def wait_for(check: Callable[[], bool | Awaitable[bool]], what: str, within: float = 60.0) -> None:
    """Poll `check` (a function or a coroutine function) until it holds; fail naming `what` otherwise."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if await result if inspect.isawaitable(result) else result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def verify(secret: str, request: Received) -> dict[str, Any]:
    """The payload, verified by standardwebhooks (signature over id.timestamp.body, and a fresh timestamp)."""
    payload: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    return payload


def _delivered_count(infra: Any) -> float:
    text = httpx.get(f"http://127.0.0.1:{infra.ports.services['webhooks']}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith('fastloans_webhook_attempts_total{outcome="delivered"}'):
            return float(line.rsplit(" ", 1)[-1])
    pytest.fail("fastloans_webhook_attempts_total is not exported")


async def test_every_decision_reaches_the_endpoint_signed(
    admin: httpx.AsyncClient, receiver: Receiver, infra: Any
) -> None:
    delivered_before = _delivered_count(infra)
    endpoint = await subscribe(admin, receiver.url, description="origination")
    applications = [await submit(admin, APPROVED if i % 2 else REJECTED) for i in range(6)]
    outcomes = {a["id"]: (await decided(admin, a["id"]))["status"] for a in applications}
    await wait_for(lambda: {r.event["data"]["application_id"] for r in receiver.accepted()} >= set(outcomes), "all")
    for request in receiver.accepted():
        payload = verify(endpoint["secret"], request)
        data = payload["data"]
        assert payload["type"] == "application.decided"
        assert data["outcome"] == outcomes[data["application_id"]]
        assert data["revision"] == 1 and data["decided_by"] == "policy" and data["policy_version"]
        assert isinstance(data["score"], int) and isinstance(data["reason_codes"], list)
        # Thin payloads: no applicant name, no income, nothing else of the application's data.
        assert not {"applicant_name", "monthly_income", "monthly_debt", "loan_amount"} & set(data)
        assert b"Ada Lovelace" not in request.body and b"5000" not in request.body
        assert request.headers["webhook-id"].startswith("msg_")
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 32).verify(receiver.accepted()[0].body, receiver.accepted()[0].headers)
    # One delivery per decision, all delivered, and the list shows their attempts.
    listed = (await admin.get(f"{WEBHOOK_ENDPOINTS_PATH}/{endpoint['id']}/deliveries")).json()["items"]
    assert len(listed) == len(applications)
    assert {d["status"] for d in listed} == {"delivered"}
    assert all(d["attempts"][-1]["status_code"] == 204 for d in listed)
    assert _delivered_count(infra) - delivered_before >= len(applications)


async def test_a_failing_receiver_gets_every_event_under_one_webhook_id(
    admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    """500 for the first three seconds, then 200: every event arrives, each retry under its first webhook-id."""
    recovers_at = time.monotonic() + 3.0
    receiver.answer = lambda _: (500 if time.monotonic() < recovers_at else 200, 0.0)
    endpoint = await subscribe(admin, receiver.url)
    applications = [await submit(admin, APPROVED) for _ in range(4)]
    for application in applications:
        await decided(admin, application["id"])
    ids = {a["id"] for a in applications}
    await wait_for(lambda: {r.event["data"]["application_id"] for r in receiver.accepted()} >= ids, "recovery")
    by_application: dict[str, set[str]] = {}
    for request in receiver.all():
        verify(endpoint["secret"], request)
        by_application.setdefault(request.event["data"]["application_id"], set()).add(request.headers["webhook-id"])
    assert {k: len(v) for k, v in by_application.items()} == dict.fromkeys(ids, 1)
    assert any(r.status == 500 for r in receiver.all())
    listed = (await admin.get(f"{WEBHOOK_ENDPOINTS_PATH}/{endpoint['id']}/deliveries")).json()["items"]
    failed_first = [d for d in listed if d["attempts"][0]["status_code"] == 500]
    assert failed_first and all(d["status"] == "delivered" and d["attempt_count"] >= 2 for d in failed_first)
    assert (await admin.get(f"{WEBHOOK_ENDPOINTS_PATH}/{endpoint['id']}")).json()["failing_since"] is None


async def test_rotation_keeps_deliveries_verifiable_with_either_secret(
    admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    endpoint = await subscribe(admin, receiver.url)
    rotated = await admin.post(f"{WEBHOOK_ENDPOINTS_PATH}/{endpoint['id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert new["secret"] != endpoint["secret"] and new["previous_secret_expires_at"]
    expires = datetime.fromisoformat(new["previous_secret_expires_at"])
    assert timedelta(hours=23) < expires - datetime.now(UTC) <= timedelta(hours=24)
    application = await submit(admin, APPROVED)
    await decided(admin, application["id"])
    ping = await admin.post(f"{WEBHOOK_ENDPOINTS_PATH}/{endpoint['id']}/test")
    assert ping.status_code == 202, ping.text
    await wait_for(lambda: len(receiver.accepted()) == 1 and len(receiver.accepted("ping")) == 1, "both events")
    for request in [*receiver.accepted(), *receiver.accepted("ping")]:
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        assert verify(endpoint["secret"], request) == verify(new["secret"], request)
    assert receiver.accepted("ping")[0].headers["webhook-id"] == ping.json()["webhook_id"]
    # The secret is never shown again.
    assert "secret" not in (await admin.get(f"{WEBHOOK_ENDPOINTS_PATH}/{endpoint['id']}")).json()


async def test_a_slow_endpoint_does_not_delay_another(
    admin: httpx.AsyncClient, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second endpoint that never answers in time: the first still gets each decision well within a timeout."""
    slow = Receiver(answer=lambda _: (200, TIMEOUT + 1))
    slow.server = serve(slow)
    try:
        await subscribe(admin, receiver.url)
        await subscribe(admin, slow.url)
        started = {}
        for _ in range(8):
            application = await submit(admin, APPROVED)
            started[application["id"]] = time.monotonic()
        await wait_for(lambda: len(receiver.accepted()) == len(started), "the fast endpoint", within=30)
        latencies = sorted(r.at - started[r.event["data"]["application_id"]] for r in receiver.accepted())
        with capsys.disabled():
            print(
                f"\n[webhooks] fast endpoint beside one timing out ({TIMEOUT:g} s): submit to receipt "
                f"p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
            )
        assert latencies[-1] < TIMEOUT
        # The slow one was tried (and will be retried) meanwhile.
        await wait_for(lambda: len(slow.all()) >= 1, "an attempt at the slow endpoint", within=TIMEOUT * 3)
    finally:
        slow.server.shutdown()
        slow.server.server_close()


async def test_410_disables_the_endpoint_and_retry_resends_under_the_same_id(
    admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.answer = lambda _: (410, 0.0)
    endpoint = await subscribe(admin, receiver.url)
    item = f"{WEBHOOK_ENDPOINTS_PATH}/{endpoint['id']}"
    ping = (await admin.post(f"{item}/test")).json()
    await wait_for(lambda: len(receiver.all()) == 1, "the ping")

    async def state() -> dict[str, Any]:
        return (await admin.get(item)).json()

    async def disabled() -> bool:
        return not (await state())["enabled"]

    await wait_for(disabled, "the endpoint to be disabled", within=10)
    shown = await state()
    assert shown["enabled"] is False and "410" in shown["disabled_reason"]
    deliveries = (await admin.get(f"{item}/deliveries", params={"status": "failed"})).json()["items"]
    assert [d["id"] for d in deliveries] == [ping["id"]]
    # Re-enabled and retried, the same event goes out again under the same webhook-id.
    receiver.answer = lambda _: (200, 0.0)
    enabled = await admin.patch(item, json={"enabled": True})
    assert enabled.status_code == 200 and enabled.json()["disabled_reason"] is None
    retried = await admin.post(f"{item}/deliveries/{ping['id']}/retry")
    assert retried.status_code == 202, retried.text
    await wait_for(lambda: len(receiver.accepted("ping")) == 1, "the retried ping")
    assert (
        receiver.accepted("ping")[0].headers["webhook-id"]
        == ping["webhook_id"]
        == receiver.all()[0].headers["webhook-id"]
    )


async def test_recover_resends_what_failed_since_a_time(admin: httpx.AsyncClient, receiver: Receiver) -> None:
    receiver.answer = lambda _: (503, 0.0)
    endpoint = await subscribe(admin, receiver.url)
    item = f"{WEBHOOK_ENDPOINTS_PATH}/{endpoint['id']}"
    since = datetime.now(UTC) - timedelta(seconds=1)
    for _ in range(2):
        assert (await admin.post(f"{item}/test")).status_code == 202

    async def failed() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await admin.get(f"{item}/deliveries", params={"status": "failed"})).json()[
            "items"
        ]
        return items

    async def given_up() -> bool:
        return len(await failed()) == 2

    await wait_for(given_up, "the pings to be given up")
    assert all(d["attempt_count"] == len(TEST_SERVICE_ENV["WEBHOOK_RETRY_SCHEDULE"].split(",")) for d in await failed())
    receiver.answer = lambda _: (200, 0.0)
    recovered = await admin.post(f"{item}/recover", json={"since": since.isoformat()})
    assert recovered.status_code == 200 and recovered.json() == {"requeued": 2}
    await wait_for(lambda: len(receiver.accepted("ping")) == 2, "the recovered pings")
    assert {r.headers["webhook-id"] for r in receiver.accepted("ping")} == {
        r.headers["webhook-id"] for r in receiver.all()
    }


async def test_endpoint_api_crud_and_refusals(admin: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    created = await subscribe(admin, "http://127.0.0.1:9/none")
    item = f"{WEBHOOK_ENDPOINTS_PATH}/{created['id']}"
    listed = (await admin.get(WEBHOOK_ENDPOINTS_PATH)).json()["items"]
    assert [e["id"] for e in listed] == [created["id"]] and "secret" not in listed[0]
    changed = await admin.patch(item, json={"event_types": ["application.withdrawn"], "enabled": False})
    assert changed.status_code == 200 and changed.json()["event_types"] == ["application.withdrawn"]
    assert changed.json()["enabled"] is False
    for body in (
        {"url": "ftp://example.com/x", "event_types": ["application.decided"]},
        {"url": "http://10.0.0.1/hook", "event_types": ["application.decided"]},
        {"url": "http://169.254.169.254/latest", "event_types": ["application.decided"]},
        {"url": "https://example.com/x", "event_types": ["nope"]},
        {"url": "https://example.com/x", "event_types": []},
    ):
        refused = await admin.post(WEBHOOK_ENDPOINTS_PATH, json=body)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
    assert (await admin.patch(item, json={})).status_code == 422
    # Another tenant's keys, or keys without the admin scope, see nothing.
    assert (await client.get(WEBHOOK_ENDPOINTS_PATH)).status_code == 403
    assert (await client.get(item)).status_code == 403
    missing = f"{WEBHOOK_ENDPOINTS_PATH}/{uuid.uuid4()}"
    for method, path in (
        ("GET", missing),
        ("DELETE", missing),
        ("POST", f"{missing}/rotate-secret"),
        ("GET", f"{WEBHOOK_ENDPOINTS_PATH}/not-a-uuid"),
        ("POST", f"{item}/deliveries/123/retry"),
        ("POST", f"{item}/deliveries/x/retry"),
        ("GET", f"{missing}/deliveries"),
    ):
        answer = await admin.request(method, path)
        assert answer.status_code == 404, (method, path, answer.text)
    assert (await admin.post(f"{missing}/recover", json={"since": "2026-01-01T00:00:00Z"})).status_code == 404
    assert (await admin.delete(item)).status_code == 204
    assert (await admin.get(item)).status_code == 404


async def test_withdrawal_is_delivered_after_the_decision(admin: httpx.AsyncClient, receiver: Receiver) -> None:
    await subscribe(admin, receiver.url, event_types=["application.decided", "application.withdrawn"])
    application = await submit(admin, APPROVED)
    await wait_for(lambda: len(receiver.accepted()) == 1, "the decision")
    assert (await admin.delete(f"{APPLICATIONS_PATH}/{application['id']}")).status_code == 204
    await wait_for(lambda: len(receiver.accepted("application.withdrawn")) == 1, "the withdrawal")
    withdrawn = receiver.accepted("application.withdrawn")[0].event["data"]
    assert withdrawn["application_id"] == application["id"] and withdrawn["revision"] == 1


async def test_a_receiver_down_while_the_dispatcher_is_killed_still_gets_everything(
    admin: httpx.AsyncClient, services: Any
) -> None:
    """Receiver down; SIGKILL the dispatcher mid-retries and start it again; the receiver comes up: all arrive."""
    from fastloans_dev.devstack.system import free_port

    port = free_port()
    receiver = Receiver()
    url = f"http://127.0.0.1:{port}/hooks/fastloans"
    endpoint = await subscribe(admin, url)
    item = f"{WEBHOOK_ENDPOINTS_PATH}/{endpoint['id']}"
    applications = [await submit(admin, APPROVED) for _ in range(5)]
    for application in applications:
        await decided(admin, application["id"])

    async def all_refused() -> bool:
        items = (await admin.get(f"{item}/deliveries")).json()["items"]
        return len(items) == len(applications) and all(d["attempts"] for d in items)

    await wait_for(all_refused, "an attempt at each delivery")
    dispatcher = services.children["webhooks"]
    dispatcher.kill()
    services.start("webhooks")
    services.wait_ready(services.children["webhooks"])
    receiver.server = serve(receiver, port)
    try:
        ids = {a["id"] for a in applications}
        await wait_for(lambda: {r.event["data"]["application_id"] for r in receiver.accepted()} >= ids, "all")
        by_application: dict[str, set[str]] = {}
        for request in receiver.all():
            verify(endpoint["secret"], request)
            by_application.setdefault(request.event["data"]["application_id"], set()).add(request.headers["webhook-id"])
        assert {k: len(v) for k, v in by_application.items()} == dict.fromkeys(ids, 1)
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


async def test_verify_passes_a_careful_receiver_and_fails_a_naive_one(admin: httpx.AsyncClient) -> None:
    """A receiver that verifies with standardwebhooks and drops repeats passes; one that accepts anything fails."""
    endpoint = await subscribe(admin, "http://127.0.0.1:9/later")
    secret, seen, acted = endpoint["secret"], set(), []

    check = verifying(secret)

    def careful(receiver: Receiver) -> tuple[int, float]:
        status, delay = check(receiver)
        if status < 300 and receiver.pending.headers["webhook-id"] not in seen:
            seen.add(receiver.pending.headers["webhook-id"])
            acted.append(receiver.pending.headers["webhook-id"])
        return status, delay

    careful_receiver, naive = Receiver(answer=careful), Receiver(answer=lambda _: (200, 0.0))
    for receiver in (careful_receiver, naive):
        receiver.server = serve(receiver)
    try:
        results = {}
        for name, receiver in (("careful", careful_receiver), ("naive", naive)):
            item = f"{WEBHOOK_ENDPOINTS_PATH}/{endpoint['id']}"
            assert (await admin.patch(item, json={"url": receiver.url})).status_code == 200
            started = await admin.post(f"{item}/verify")
            assert started.status_code == 202 and started.json()["verification_pending"] is True

            async def reported(item: str = item) -> bool:
                shown = (await admin.get(item)).json()
                return not shown["verification_pending"] and shown["verification"] is not None

            await wait_for(reported, f"the check of the {name} receiver")
            results[name] = (await admin.get(item)).json()
            assert len(receiver.all()) == 4
        assert results["careful"]["verified"] is True and results["careful"]["verification"]["passed"] is True
        assert len(acted) == 1
        naive_checks = {c["name"]: c["passed"] for c in results["naive"]["verification"]["checks"]}
        assert naive_checks == {"signed": True, "bad_signature": False, "old_timestamp": False, "repeat": True}
        assert results["naive"]["verified"] is False
    finally:
        for receiver in (careful_receiver, naive):
            assert receiver.server is not None
            receiver.server.shutdown()
            receiver.server.server_close()


async def test_an_endpoint_that_opts_out_of_order_gets_a_revision_while_an_earlier_one_is_retried(
    admin: httpx.AsyncClient,
) -> None:
    """Both receivers refuse revision 1 for a while: the `ordered: false` endpoint gets revision 2 meanwhile, the
    default one only after revision 1."""
    refusing = {"revision 1": True}

    def answer(receiver: Receiver) -> tuple[int, float]:
        return (503 if refusing["revision 1"] and receiver.pending.event["data"]["revision"] == 1 else 204), 0.0

    ordered, unordered = Receiver(answer=answer).start(), Receiver(answer=answer).start()
    try:
        kept = await subscribe(admin, ordered.url)
        opted = await subscribe(admin, unordered.url, ordered=False)
        assert (kept["ordered"], opted["ordered"]) == (True, False)
        application = await submit(admin, APPROVED)
        await wait_for(lambda: len(unordered.all()) >= 1 and len(ordered.all()) >= 1, "revision 1 refused")
        patched = await admin.patch(f"{APPLICATIONS_PATH}/{application['id']}", json={"credit_score": 560})
        assert patched.status_code == 202, patched.text

        def revisions(receiver: Receiver) -> list[int]:
            return [r.event["data"]["revision"] for r in receiver.accepted()]

        await wait_for(lambda: revisions(unordered) == [2], "revision 2 at the endpoint that opted out")
        # The default endpoint is tried again at revision 1 since then, and still holds revision 2 back.
        tried = len(ordered.all())
        await wait_for(lambda: len(ordered.all()) > tried, "another attempt at revision 1")
        assert {r.event["data"]["revision"] for r in ordered.all()} == {1}
        refusing["revision 1"] = False
        await wait_for(lambda: revisions(ordered) == [1, 2], "both revisions, in order, at the default endpoint")
        await wait_for(lambda: revisions(unordered) == [2, 1], "revision 1 at the endpoint that opted out")
        changed = await admin.patch(f"{WEBHOOK_ENDPOINTS_PATH}/{kept['id']}", json={"ordered": False})
        assert changed.status_code == 200 and changed.json()["ordered"] is False
        refused = await admin.patch(f"{WEBHOOK_ENDPOINTS_PATH}/{kept['id']}", json={"ordered": "sometimes"})
        assert refused.status_code == 422, refused.text
    finally:
        ordered.stop()
        unordered.stop()
