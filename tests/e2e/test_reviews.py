"""The review queue on a pipeline of its own that runs the `seed-with-review` policy: referred applications
open cases in the recorder, reviewers claim and decide them over the API, overrides wait for a second person,
the final decision travels through the outbox and Kafka to the recorder, and the history is a verified chain."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from click.testing import CliRunner

from fastloans.cli import main as cli
from fastloans.contracts import APPLICATIONS_PATH, REVIEWS_PATH
from fastloans.events import ApplicationDecided, Topic
from fastloans.kafka import connection_options
from fastloans.policy import reason_text
from fastloans.policy.loader import shipped_policy_path
from fastloans.tenants import issue_key, set_notice_settings
from fastloans_dev.devstack.system import Child
from fastloans_gateway.problems import PROBLEM_JSON
from tests.e2e.pipelines import pipeline_of_its_own
from tests.e2e.test_pipeline import decided, submit

# 20 (credit 650) + 20 (DTI 0.38) + 0 (employed) + 10 (business) + 10 (LTI 0.4) = 60: referred, recommended reject.
BORDERLINE = {
    "applicant_name": "Ada Lovelace",
    "credit_score": 650,
    "loan_amount": "2000.00",
    "loan_purpose": "business",
    "monthly_income": "5000.00",
    "monthly_debt": "1900.00",
    "employment_status": "employed",
}
REVIEWER_REASONS = ["DEBT_TO_INCOME_HIGH", "CREDIT_SCORE_LOW"]
SERVICES = ("gateway", "relay", "risk", "approval", "recorder")


@dataclass
class Pipeline:
    """The services on topics and consumer groups of their own, and how to reach them."""

    api_url: str
    prefix: str
    children: dict[str, Child]


@pytest.fixture(scope="module")
async def pipeline(infra: Any) -> AsyncIterator[Pipeline]:
    """Gateway, relay, risk, approval and recorder with POLICY_FILE=seed-with-review, unseen by the shared ones."""
    prefix = f"reviews-{uuid.uuid4().hex[:8]}."
    env = {
        "ENVIRONMENT": "test",
        "AUTH_CACHE_SECONDS": "0",
        "RATE_LIMIT_PER_SECOND": "0",
        "AUTH_FAILURE_RATE_PER_SECOND": "0",
        "LOG_LEVEL": "INFO",
        "POLICY_FILE": shipped_policy_path(),
    }
    async with pipeline_of_its_own(infra, prefix, SERVICES, env) as children:
        yield Pipeline(f"http://127.0.0.1:{children['gateway'].port}", prefix, children)  # type: ignore[attr-defined]


@dataclass
class Tenant:
    """A tenant's name and its clients: the applicant side and each review key, by actor."""

    name: str
    applicant: httpx.AsyncClient
    staff: dict[str, httpx.AsyncClient]


@pytest.fixture
async def tenant(pipeline: Pipeline, migrated_db: Any) -> AsyncIterator[Tenant]:
    """A new tenant with a submit/read key, two reviewers, a supervisor, and a reviewer who also supervises."""
    name = f"reviews-{uuid.uuid4().hex[:8]}"
    keys = {
        None: ("submit", "read"),
        "reviewer-1": ("review",),
        "reviewer-2": ("review",),
        "supervisor-1": ("supervise",),
        "reviewer-3": ("review", "supervise"),
    }
    conn = await asyncpg.connect(migrated_db.primary_url)
    try:
        issued = {
            actor: (await issue_key(conn, name, scopes=scopes, actor=actor)).key for actor, scopes in keys.items()
        }
    finally:
        await conn.close()
    clients = {
        actor: httpx.AsyncClient(base_url=pipeline.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=40)
        for actor, key in issued.items()
    }
    try:
        yield Tenant(name, clients.pop(None), {actor: client for actor, client in clients.items() if actor})
    finally:
        for client in (*clients.values(),):
            await client.aclose()


async def referred(tenant: Tenant) -> tuple[dict[str, Any], str]:
    """Submit the borderline application; once referred, the application and its case id."""
    application = await decided(tenant.applicant, (await submit(tenant.applicant, BORDERLINE))["id"])
    assert (application["status"], application["risk_score"], application["decided_by"]) == ("referred", 60, "policy")
    assert application["review_case_id"] is not None
    return application, application["review_case_id"]


async def until_status(client: httpx.AsyncClient, application_id: str, status: str) -> dict[str, Any]:
    """The application once the recorder has given it `status` (a reviewer's decision, through Kafka)."""
    for _ in range(150):
        response = await client.get(f"{APPLICATIONS_PATH}/{application_id}")
        assert response.status_code == 200, response.text
        if response.json()["status"] == status:
            return response.json()
        await asyncio.sleep(0.2)
    pytest.fail(f"application {application_id} did not become {status}: {response.json()['status']}")


async def case_of(client: httpx.AsyncClient, case_id: str) -> dict[str, Any]:
    response = await client.get(f"{REVIEWS_PATH}/{case_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def act(
    client: httpx.AsyncClient, case_id: str, action: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    return await client.post(f"{REVIEWS_PATH}/{case_id}/{action}", json=body)


async def test_a_referred_application_is_decided_by_a_reviewer_through_kafka(
    tenant: Tenant, pipeline: Pipeline
) -> None:
    application, case_id = await referred(tenant)
    reviewer = tenant.staff["reviewer-1"]

    queue = (await reviewer.get(REVIEWS_PATH)).json()["items"]
    listed = next(item for item in queue if item["id"] == case_id)
    assert (listed["state"], listed["recommendation"], listed["escalated"]) == ("open", "reject", False)
    assert 29 * 86400 < listed["seconds_left"] <= 30 * 86400  # Reg B: 30 days from the submission
    assert [item["due_at"] for item in queue] == sorted(item["due_at"] for item in queue)

    detail = await case_of(reviewer, case_id)
    assert detail["application"]["id"] == application["id"] and detail["decision_record"]["outcome"] == "referred"
    packet = detail["packet"]
    assert (packet["refer_rule"], packet["points_above_approval"], packet["points_below_rejection"]) == (
        "refer-borderline",
        1,
        10,
    )
    assert {change["fact"] for change in packet["to_approve"]} == {"loan_amount", "monthly_debt"}

    # Deciding needs a claim; a reason must be of a factor the policy scored (employment added no points).
    refused = await act(reviewer, case_id, "decision", {"outcome": "reject", "reason_codes": ["CREDIT_SCORE_LOW"]})
    assert refused.status_code == 409 and refused.headers["content-type"] == PROBLEM_JSON
    assert (await act(reviewer, case_id, "claim")).json()["claimed_by"] == "reviewer-1"
    unsupported = await act(reviewer, case_id, "decision", {"outcome": "reject", "reason_codes": ["EMPLOYMENT_NONE"]})
    assert unsupported.status_code == 422 and "not supported" in unsupported.json()["detail"]
    too_many = [
        "CREDIT_SCORE_LOW",
        "DEBT_TO_INCOME_HIGH",
        "PURPOSE_BUSINESS",
        "LOAN_TO_INCOME_HIGH",
        "CREDIT_SCORE_VERY_LOW",
    ]
    assert (
        await act(reviewer, case_id, "decision", {"outcome": "reject", "reason_codes": too_many})
    ).status_code == 422

    # Following the recommendation is final at once: published, and applied by the recorder.
    final = await act(
        reviewer,
        case_id,
        "decision",
        {"outcome": "reject", "reason_codes": ["DEBT_TO_INCOME_HIGH", "CREDIT_SCORE_LOW"]},
    )
    assert final.status_code == 200, final.text
    assert (final.json()["state"], final.json()["decision"]["override"]) == ("decided", False)
    shown = await until_status(tenant.applicant, application["id"], "rejected")
    assert (shown["decided_by"], shown["review_case_id"], shown["is_approved"]) == ("review", case_id, False)
    assert [r["reason_code"] for r in shown["review_reasons"]] == ["DEBT_TO_INCOME_HIGH", "CREDIT_SCORE_LOW"]
    assert [r["reason_code"] for r in shown["principal_reasons"]] == ["DEBT_TO_INCOME_HIGH", "CREDIT_SCORE_LOW"]
    assert [(e["action"], e["actor"]) for e in (await case_of(reviewer, case_id))["history"]] == [
        ("open", "system"),
        ("claim", "reviewer-1"),
        ("decide", "reviewer-1"),
    ]
    assert (await act(reviewer, case_id, "claim")).status_code == 409  # decided: nothing more happens to it


async def test_a_reviewers_rejection_is_recorded_and_its_notice_gives_the_reviewers_reasons(
    tenant: Tenant, migrated_db: Any
) -> None:
    application, case_id = await referred(tenant)
    policy_reasons = [r["reason_code"] for r in application["principal_reasons"]]
    reviewer = tenant.staff["reviewer-1"]
    assert (await act(reviewer, case_id, "claim")).status_code == 200
    chosen = ["LOAN_TO_INCOME_HIGH"]  # scored for this application; the referral gave three reasons before it
    assert policy_reasons[0] not in chosen and len(policy_reasons) > 1, policy_reasons
    final = await act(reviewer, case_id, "decision", {"outcome": "reject", "reason_codes": chosen})
    assert final.status_code == 200, final.text
    await until_status(tenant.applicant, application["id"], "rejected")

    conn = await asyncpg.connect(migrated_db.primary_url)
    try:
        recorded = await conn.fetch(
            "SELECT id, decided_by, outcome, risk_score, review_case_id, reasons FROM loan_decisions "
            "WHERE application_id = $1 AND revision = 1 ORDER BY id",
            uuid.UUID(application["id"]),
        )
        await set_notice_settings(
            conn, tenant.name, creditor_name="Acme Lending", address="1 Main St", supervising_agency="CFPB",
            contact="555-0100",
        )  # fmt: skip
    finally:
        await conn.close()
    # The policy's referral and the reviewer's decision, each recorded once, the reviewer's with its case.
    assert [(r["decided_by"], r["outcome"], r["risk_score"]) for r in recorded] == [
        ("policy", "referred", 60),
        ("review", "rejected", 60),
    ]
    assert str(recorded[1]["review_case_id"]) == case_id
    assert [r["reason_code"] for r in orjson.loads(recorded[1]["reasons"])["principal_reasons"]] == chosen

    # The notice is of the final decision: the reviewer's reasons, not the referral's.
    notice = await tenant.applicant.get(f"{APPLICATIONS_PATH}/{application['id']}/notice")
    assert notice.status_code == 200, notice.text
    listed = re.search(r'<ol class="reasons">(.*?)</ol>', notice.text, re.DOTALL)
    assert listed, notice.text
    assert [" ".join(item.split()) for item in re.findall(r"<li>(.*?)</li>", listed[1], re.DOTALL)] == [
        reason_text(code) for code in chosen
    ]
    assert "without a review" not in notice.text  # the wording of a referral's notice
    sent = await tenant.applicant.post(f"{APPLICATIONS_PATH}/{application['id']}/notice/sent", json={})
    assert sent.status_code == 200 and sent.json()["decision_id"] == recorded[1]["id"], sent.text
    # The case still shows the policy's record, the one the reviewer decided on.
    assert (await case_of(reviewer, case_id))["decision_record"]["outcome"] == "referred"


async def test_tenants_see_only_their_own_cases(tenant: Tenant, pipeline: Pipeline, migrated_db: Any) -> None:
    _, case_id = await referred(tenant)
    conn = await asyncpg.connect(migrated_db.primary_url)
    try:
        other = (await issue_key(conn, f"other-{uuid.uuid4().hex[:8]}", scopes=("review",), actor="reviewer-1")).key
    finally:
        await conn.close()
    async with httpx.AsyncClient(base_url=pipeline.api_url, headers={"Authorization": f"Bearer {other}"}) as outsider:
        assert (await outsider.get(f"{REVIEWS_PATH}/{case_id}")).status_code == 404
        assert (await act(outsider, case_id, "claim")).status_code == 404
        assert (await outsider.get(REVIEWS_PATH)).json()["items"] == []
    assert (await tenant.applicant.get(REVIEWS_PATH)).status_code == 403  # submit/read: no review scope


async def test_racing_claims_get_one_200_and_one_409(tenant: Tenant) -> None:
    _, case_id = await referred(tenant)
    first, second = await asyncio.gather(
        act(tenant.staff["reviewer-1"], case_id, "claim"), act(tenant.staff["reviewer-2"], case_id, "claim")
    )
    assert sorted((first.status_code, second.status_code)) == [200, 409], (first.text, second.text)
    loser = second if second.status_code == 409 else first
    assert loser.headers["content-type"] == PROBLEM_JSON
    holder = (first if first.status_code == 200 else second).json()["claimed_by"]
    assert (await case_of(tenant.staff["reviewer-1"], case_id))["claimed_by"] == holder
    # A version read before the claim no longer applies.
    stale = await act(tenant.staff[holder], case_id, "claim", {"version": 1})
    assert stale.status_code == 409 and "version" in stale.json()["detail"]


async def test_an_override_needs_a_second_person_and_their_approval_finalises_it(tenant: Tenant) -> None:
    application, case_id = await referred(tenant)
    maker = tenant.staff["reviewer-3"]  # review and supervise
    assert (await act(maker, case_id, "claim")).status_code == 200
    unexplained = await act(maker, case_id, "decision", {"outcome": "approve"})
    assert unexplained.status_code == 422 and unexplained.json()["errors"][0]["field"] == "note"
    override = await act(maker, case_id, "decision", {"outcome": "approve", "note": "Stable business income"})
    assert override.status_code == 200, override.text
    assert (override.json()["state"], override.json()["decision"]["override"]) == ("awaiting_approval", True)

    own = await act(maker, case_id, "approve")
    assert own.status_code == 403 and own.headers["content-type"] == PROBLEM_JSON  # four eyes
    assert (await act(tenant.staff["reviewer-1"], case_id, "approve")).status_code == 403  # no supervise scope
    assert (await tenant.applicant.get(f"{APPLICATIONS_PATH}/{application['id']}")).json()["status"] == "referred"

    approved = await act(tenant.staff["supervisor-1"], case_id, "approve")
    assert approved.status_code == 200, approved.text
    assert (approved.json()["state"], approved.json()["decision"]["approved_by"]) == ("decided", "supervisor-1")
    shown = await until_status(tenant.applicant, application["id"], "approved")
    assert (shown["decided_by"], shown["is_approved"], shown["principal_reasons"]) == ("review", True, [])
    notice = await tenant.applicant.get(f"{APPLICATIONS_PATH}/{application['id']}/notice")
    assert notice.status_code == 404, notice.text  # approved in the end: no adverse-action notice is due
    assert [e["action"] for e in (await case_of(maker, case_id))["history"]] == ["open", "claim", "decide", "approve"]


async def test_a_returned_override_is_open_again(tenant: Tenant) -> None:
    _, case_id = await referred(tenant)
    reviewer = tenant.staff["reviewer-1"]
    await act(reviewer, case_id, "claim")
    await act(reviewer, case_id, "decision", {"outcome": "approve", "note": "Stable business income"})
    returned = await act(tenant.staff["supervisor-1"], case_id, "return", {"note": "Ask for bank statements first"})
    assert returned.status_code == 200, returned.text
    assert (returned.json()["state"], returned.json()["decision"], returned.json()["claimed_by"]) == (
        "open",
        None,
        None,
    )
    asked = await act(tenant.staff["reviewer-2"], case_id, "claim")
    assert asked.status_code == 200
    waiting = await act(tenant.staff["reviewer-2"], case_id, "request-information", {"items": ["Bank statements"]})
    assert waiting.status_code == 200, waiting.text
    assert (waiting.json()["state"], waiting.json()["information_requested"]) == (
        "waiting_for_information",
        ["Bank statements"],
    )


async def test_a_withdrawn_application_closes_its_case(tenant: Tenant) -> None:
    application, case_id = await referred(tenant)
    await act(tenant.staff["reviewer-1"], case_id, "claim")
    assert (await tenant.applicant.delete(f"{APPLICATIONS_PATH}/{application['id']}")).status_code == 204
    case = await case_of(tenant.staff["reviewer-1"], case_id)
    assert case["state"] == "withdrawn" and case["history"][-1]["action"] == "withdraw"
    assert case_id not in {item["id"] for item in (await tenant.staff["reviewer-1"].get(REVIEWS_PATH)).json()["items"]}
    late = await act(
        tenant.staff["reviewer-1"], case_id, "decision", {"outcome": "reject", "reason_codes": ["CREDIT_SCORE_LOW"]}
    )
    assert late.status_code == 409


async def test_the_chain_verifies_and_a_row_edited_by_hand_breaks_it(
    tenant: Tenant, infra: Any, migrated_db: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    _, case_id = await referred(tenant)
    await act(tenant.staff["reviewer-1"], case_id, "claim")
    monkeypatch.chdir(tmp_path)
    env = {"DATABASE_URL": migrated_db.primary_url, "KAFKA_BOOTSTRAP_SERVERS": infra.kafka.bootstrap_servers}
    arguments = ["reviews", "verify-chain", "--tenant", tenant.name]
    # In a thread: the command runs its own event loop.
    verified = await asyncio.to_thread(CliRunner().invoke, cli, arguments, env=env)
    assert verified.exit_code == 0 and "OK" in verified.output and "1 case(s), 2 history entries" in verified.output

    conn = await asyncpg.connect(migrated_db.primary_url)
    try:
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute(
                "UPDATE review_history SET actor = 'someone-else' WHERE case_id = $1", uuid.UUID(case_id)
            )
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute("DELETE FROM review_history WHERE case_id = $1", uuid.UUID(case_id))
        # Around the trigger, as only a superuser can: the chain shows it.
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(
                "UPDATE review_history SET actor = 'someone-else' WHERE case_id = $1 AND seq = 2", uuid.UUID(case_id)
            )
    finally:
        await conn.close()
    broken = await asyncio.to_thread(CliRunner().invoke, cli, arguments, env=env)
    assert broken.exit_code == 1, broken.output
    assert f"BROKEN case {case_id} entry 2" in broken.output and "edited" in broken.output


async def test_a_redelivered_decision_opens_no_second_case(
    tenant: Tenant, pipeline: Pipeline, infra: Any, migrated_db: Any
) -> None:
    application, case_id = await referred(tenant)
    settings = infra.settings()
    topic = f"{pipeline.prefix}{Topic.DECIDED.value}"
    key = application["id"].encode()
    reader = AIOKafkaConsumer(topic, **connection_options(settings), auto_offset_reset="earliest", group_id=None)
    await reader.start()
    try:
        original = None
        while original is None:
            batch = await asyncio.wait_for(reader.getmany(timeout_ms=1000), timeout=30)
            for records in batch.values():
                original = next((r for r in records if r.key == key), original)
    finally:
        await reader.stop()
    assert ApplicationDecided.decode(original.value).referral is not None

    producer = AIOKafkaProducer(**connection_options(settings))
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, original.value, key=key, headers=list(original.headers))
    finally:
        await producer.stop()
    # Wait until the recorder has committed past the copy: it has handled it.
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        for _ in range(150):
            offsets = await admin.list_consumer_group_offsets(f"{pipeline.prefix}recorder")
            committed = offsets.get(TopicPartition(topic, sent.partition))
            if committed is not None and committed.offset > sent.offset:
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail("the recorder did not consume the redelivered decision")
    finally:
        await admin.close()
    conn = await asyncpg.connect(migrated_db.primary_url)
    try:
        cases = await conn.fetch("SELECT id FROM review_cases WHERE application_id = $1", uuid.UUID(application["id"]))
        entries = await conn.fetchval("SELECT count(*) FROM review_history WHERE case_id = $1", uuid.UUID(case_id))
    finally:
        await conn.close()
    assert [str(row["id"]) for row in cases] == [case_id] and entries == 1


async def test_the_applicants_answer_supersedes_the_case_and_its_revision_is_reviewed_anew(tenant: Tenant) -> None:
    application, case_id = await referred(tenant)
    reviewer = tenant.staff["reviewer-1"]
    await act(reviewer, case_id, "claim")
    asked = await act(reviewer, case_id, "request-information", {"items": ["Proof of income"]})
    assert asked.json()["state"] == "waiting_for_information"
    frozen = asked.json()["seconds_left"]
    await asyncio.sleep(1.1)
    assert (await case_of(reviewer, case_id))["seconds_left"] == frozen  # the clock stands still

    answered = await tenant.applicant.patch(
        f"{APPLICATIONS_PATH}/{application['id']}", json={"monthly_income": "5000.00"}
    )
    assert answered.status_code == 202, answered.text
    old = await case_of(reviewer, case_id)
    assert old["state"] == "superseded" and old["history"][-1]["details"]["by_revision"] == 2
    again = await decided(tenant.applicant, application["id"], revision=2)
    assert again["status"] == "referred" and again["review_case_id"] not in (None, case_id)
    new = await case_of(reviewer, again["review_case_id"])
    assert (new["revision"], new["state"]) == (2, "open")
    assert new["due_at"] > old["due_at"]  # counted from the new revision's submission
