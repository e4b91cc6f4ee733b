"""The gateway's contract: validation, problem+json, authentication, tenants, idempotency, replica reads."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from datetime import timedelta

import asyncpg
import httpx
import pytest

from fastloans.contracts import IDEMPOTENCY_TTL
from tests.conftest import issue_test_key
from tests.e2e.test_pipeline import APPROVED, URL, decided, submit

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
        assert field in body["detail"]
    return body


INVALID = [
    ("loan_amount", 0),
    ("loan_amount", -5),
    ("loan_amount", "12.345"),
    ("loan_amount", "abc"),
    ("loan_amount", True),
    ("loan_amount", "NaN"),
    ("loan_amount", "1e400"),
    ("loan_amount", 1e15),
    ("monthly_income", 0),
    ("monthly_income", "-1.00"),
    ("monthly_income", None),
    ("monthly_debt", -0.01),
    ("monthly_debt", [1]),
    ("credit_score", 299),
    ("credit_score", 851),
    ("credit_score", 700.5),
    ("credit_score", "700"),
    ("credit_score", True),
    ("employment_status", "pirate"),
    ("employment_status", 3),
    ("employment_status", ""),
    ("loan_purpose", "yacht"),
    ("loan_purpose", None),
    ("applicant_name", ""),
    ("applicant_name", "x" * 201),
    ("applicant_name", 12),
]


@pytest.mark.parametrize(("field", "value"), INVALID, ids=[f"{f}={str(v)[:12]}" for f, v in INVALID])
async def test_each_invalid_field_is_a_422_naming_it(client: httpx.AsyncClient, field: str, value: object) -> None:
    assert_problem(await client.post(URL, json={**APPROVED, field: value}), 422, field)


@pytest.mark.parametrize("field", sorted(APPROVED))
async def test_each_missing_field_is_named(client: httpx.AsyncClient, field: str) -> None:
    body = {k: v for k, v in APPROVED.items() if k != field}
    assert_problem(await client.post(URL, json=body), 422, field)


async def test_unknown_fields_are_rejected(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post(URL, json={**APPROVED, "is_approved": True}), 422, "is_approved")


async def test_choices_are_case_insensitive(client: httpx.AsyncClient) -> None:
    body = {**APPROVED, "employment_status": "Self-Employed", "loan_purpose": "HOME_IMPROVEMENT"}
    created = await submit(client, body)
    assert (created["employment_status"], created["loan_purpose"]) == ("self-employed", "home_improvement")


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b'{"applicant_name": ', "application/json", 400),
        (b"\xff\xfe{}", "application/json", 400),
        (b"[1, 2, 3]", "application/json", 422),
        (b'{"credit_score": NaN}', "application/json", 400),
        (b'{"credit_score": Infinity}', "application/json", 400),
        (b'{"credit_score": 1' + b"0" * 5000 + b"}", "application/json", 400),
        (b"[" * 5000 + b"]" * 5000, "application/json", 400),
        (b"applicant_name=x", "application/x-www-form-urlencoded", 415),
        (b"{}", "text/plain", 415),
        (b'{"applicant_name": "' + b"x" * 20_000 + b'"}', "application/json", 413),
    ],
    ids=["truncated", "not-utf8", "array", "nan", "infinity", "huge-int", "deep-nesting", "form", "text", "oversized"],
)
async def test_malformed_bodies_get_a_clear_4xx(
    client: httpx.AsyncClient, content: bytes, content_type: str, status: int
) -> None:
    assert_problem(await client.post(URL, content=content, headers={"content-type": content_type}), status)


async def test_oversized_body_without_content_length_is_refused(client: httpx.AsyncClient) -> None:
    async def chunks():
        for _ in range(40):
            yield b"x" * 1024

    response = await client.post(URL, content=chunks(), headers={"content-type": "application/json"})
    assert_problem(response, 413)


async def test_authentication(api_url: str, ops_url: str, migrated_db) -> None:
    async with httpx.AsyncClient(base_url=api_url) as anonymous:
        body = assert_problem(await anonymous.post(URL, json=APPROVED), 401)
        assert "Bearer" in body["detail"]
        response = await anonymous.get(f"{URL}/{uuid.uuid4()}", headers={"Authorization": "Bearer not-a-key"})
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert (await anonymous.get(f"{ops_url}/healthz")).status_code == 200
    read_only = await issue_test_key(migrated_db.primary_url, "readers", scopes=("read",))
    async with httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {read_only}"}) as reader:
        assert_problem(await reader.post(URL, json=APPROVED), 403)


async def test_revoked_keys_stop_working(api_url: str, migrated_db) -> None:
    from fastloans.tenants import display_prefix, revoke_key

    key = await issue_test_key(migrated_db.primary_url, "revocation")
    async with httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {key}"}) as http:
        assert (await http.post(URL, json=APPROVED)).status_code == 202
        conn = await asyncpg.connect(migrated_db.primary_url)
        try:
            assert await revoke_key(conn, display_prefix(key)) == 1
        finally:
            await conn.close()
        assert_problem(await http.post(URL, json=APPROVED), 401)


async def test_a_tenant_never_sees_another_tenants_application(
    client: httpx.AsyncClient, api_url: str, migrated_db
) -> None:
    created = await submit(client, APPROVED)
    other = await issue_test_key(migrated_db.primary_url, f"other-{uuid.uuid4().hex[:6]}")
    async with httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {other}"}) as intruder:
        target = f"{URL}/{created['id']}"
        assert_problem(await intruder.get(target), 404)
        assert_problem(await intruder.patch(target, json={"credit_score": 800}), 404)
        assert_problem(await intruder.delete(target), 404)
        listing = (await intruder.get(URL)).json()
        assert created["id"] not in {item["id"] for item in listing["items"]}
    assert (await client.get(target)).status_code == 200


async def test_idempotency_key(client: httpx.AsyncClient, pg) -> None:
    key = f"idem-{uuid.uuid4()}"
    first = await client.post(URL, json=APPROVED, headers={"Idempotency-Key": key})
    again = await client.post(URL, json=APPROVED, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    count = await pg.fetchval("SELECT count(*) FROM loan_applications WHERE id = $1", uuid.UUID(first.json()["id"]))
    assert count == 1
    different = await client.post(URL, json={**APPROVED, "loan_amount": "2500"}, headers={"Idempotency-Key": key})
    assert_problem(different, 422, "Idempotency-Key")
    # Concurrent retries with one key still make one application.
    key = f"idem-{uuid.uuid4()}"
    responses = await asyncio.gather(
        *[client.post(URL, json=APPROVED, headers={"Idempotency-Key": key}) for _ in range(5)]
    )
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["id"] for r in responses}) == 1
    # Keys expire after IDEMPOTENCY_TTL: an expired key may be used again.
    await pg.execute(
        "UPDATE idempotency_keys SET created_at = now() - $2::interval WHERE key = $1",
        key,
        IDEMPOTENCY_TTL + timedelta(hours=1),
    )
    renewed = await client.post(URL, json={**APPROVED, "loan_amount": "2500"}, headers={"Idempotency-Key": key})
    assert renewed.status_code == 202 and renewed.json()["id"] != responses[0].json()["id"]


async def test_reads_come_from_the_replica_and_fall_back_to_the_primary(client: httpx.AsyncClient, infra) -> None:
    created = await submit(client, APPROVED)
    await decided(client, created["id"])
    infra.postgres.wait_replayed()
    response = await client.get(f"{URL}/{created['id']}")
    assert response.headers["x-read-source"] == "replica"
    infra.postgres.replica.psql("SELECT pg_wal_replay_pause()")
    try:
        fresh = await submit(client, APPROVED)
        response = await client.get(f"{URL}/{fresh['id']}")
        assert response.status_code == 200
        assert response.headers["x-read-source"] == "primary"
    finally:
        infra.postgres.replica.psql("SELECT pg_wal_replay_resume()")


async def test_listing_filters_and_pages(api_url: str, migrated_db) -> None:
    key = await issue_test_key(migrated_db.primary_url, f"lister-{uuid.uuid4().hex[:6]}")
    async with httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=40) as http:
        ids = [(await submit(http, APPROVED))["id"] for _ in range(5)]
        rejected = await submit(http, {**APPROVED, "credit_score": 500, "monthly_debt": "4000"})
        for ident in [*ids, rejected["id"]]:
            await decided(http, ident)
        await asyncio.sleep(0.3)  # let the replica catch up
        seen, cursor = [], None
        while True:
            page = (await http.get(URL, params={"limit": 2, **({"cursor": cursor} if cursor else {})})).json()
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == [rejected["id"], *reversed(ids)]
        only = (await http.get(URL, params={"status": "rejected"})).json()["items"]
        assert [item["id"] for item in only] == [rejected["id"]]
        assert_problem(await http.get(URL, params={"cursor": "!!"}), 400)
        assert_problem(await http.get(URL, params={"status": "maybe"}), 422, "query.status")


async def test_wait_is_bounded(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(f"{URL}/{uuid.uuid4()}", params={"wait": 31}), 422, "query.wait")
    assert_problem(await client.get(f"{URL}/not-a-uuid"), 404)


async def test_openapi_documents_the_api(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url) as http:
        spec = (await http.get("/openapi.json")).json()
        assert (await http.get("/docs")).status_code == 200
    operations = spec["paths"][URL]
    assert {"post", "get"} <= set(operations)
    create = spec["components"]["schemas"]["LoanApplicationCreate"]
    assert create["additionalProperties"] is False and create["examples"]
    assert "422" in operations["post"]["responses"] and "413" in operations["post"]["responses"]


async def test_reads_survive_a_replica_outage(client: httpx.AsyncClient, infra) -> None:
    created = await submit(client, APPROVED)
    infra.postgres.replica.stop()
    try:
        response = await client.get(f"{URL}/{created['id']}")
        assert response.status_code == 200 and response.json()["id"] == created["id"]
        assert (await client.get(URL)).status_code == 200
    finally:
        infra.postgres.replica.start()
        infra.postgres.wait_streaming()


@pytest.mark.parametrize("field", ["applicant_name", "credit_score", "monthly_debt", "loan_purpose"])
async def test_patch_refuses_nulls_and_empty_changes(client: httpx.AsyncClient, field: str) -> None:
    created = await submit(client, APPROVED)
    assert_problem(await client.patch(f"{URL}/{created['id']}", json={field: None}), 422, field)
    assert_problem(await client.patch(f"{URL}/{created['id']}", json={}), 422)


async def test_docs_page_loads_swagger_ui_from_local_files_under_the_strict_csp(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url) as http:
        docs = await http.get("/docs")
        api = await http.get("/openapi.json")
        assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
        assert docs.headers["content-security-policy"] == api.headers["content-security-policy"]
        assert "script-src 'self';" in docs.headers["content-security-policy"]
        assert "unsafe-inline" not in docs.headers["content-security-policy"]
        urls = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
        assert urls and all(url.startswith("/static/") for url in urls), urls
        for url in urls:
            asset = await http.get(url)
            assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"], url
        assert re.search(r"<script(?![^>]*\ssrc=)", docs.text) is None
    schema = api.json()["components"]["schemas"]["LoanApplicationUpdate"]["properties"]["credit_score"]
    assert "anyOf" not in schema and schema["type"] == "integer"


async def test_noop_floor_endpoint_is_unauthenticated_and_undocumented(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url) as http:
        response = await http.get("/noop")
        spec = (await http.get("/openapi.json")).json()
    assert response.status_code == 200
    assert "/noop" not in spec["paths"]


# -- strict input: hostile or ambiguous values are refused with a 4xx, never stored, never a 500 ----------

UNSTORABLE_NAMES = [
    ("nul", "Ada\x00Lovelace"),
    ("ansi", "\x1b[31mAda\x1b[0m"),
    ("crlf", "Ada\r\nX-Injected: 1"),
    ("bidi-override", "\u202eecalevoL adA"),
    ("bidi-isolate", "Ada \u2066Lovelace\u2069"),
    ("zero-width-only", "\u200b\u200b"),
    ("filler-only", "\u3164"),
]


@pytest.mark.parametrize("name", [n for _, n in UNSTORABLE_NAMES], ids=[i for i, _ in UNSTORABLE_NAMES])
async def test_names_with_control_or_invisible_characters_are_422_on_post_and_patch(
    client: httpx.AsyncClient, name: str
) -> None:
    assert_problem(await client.post(URL, json={**APPROVED, "applicant_name": name}), 422, "applicant_name")
    created = await submit(client, APPROVED)
    target = f"{URL}/{created['id']}"
    assert_problem(await client.patch(target, json={"applicant_name": name}), 422, "applicant_name")
    assert (await client.get(target)).json()["applicant_name"] == APPROVED["applicant_name"]


async def test_names_are_stored_in_nfc(client: httpx.AsyncClient) -> None:
    created = await submit(client, {**APPROVED, "applicant_name": "Jose\u0301 Garci\u0301a"})
    assert created["applicant_name"] == "José García"
    assert (await client.get(f"{URL}/{created['id']}")).json()["applicant_name"] == "José García"


@pytest.mark.parametrize(
    "amount",
    ["1_000", "\u0661\u0660\u0660\u0660", "\uff11\uff10\uff10\uff10"],
    ids=["underscore", "arabic-indic", "full-width"],
)
async def test_money_takes_only_ascii_digits(client: httpx.AsyncClient, amount: str) -> None:
    assert_problem(await client.post(URL, json={**APPROVED, "loan_amount": amount}), 422, "loan_amount")
    created = await submit(client, APPROVED)
    assert_problem(await client.patch(f"{URL}/{created['id']}", json={"monthly_debt": amount}), 422, "monthly_debt")


async def test_duplicate_keys_are_refused_naming_the_key(client: httpx.AsyncClient) -> None:
    body = (
        b'{"applicant_name": "Ada Lovelace", "credit_score": 750, "loan_amount": "1.00", "loan_purpose": "car", '
        b'"monthly_income": "5000.00", "monthly_debt": "0", "employment_status": "employed", '
        b'"loan_amount": "900000.00"}'
    )
    response = await client.post(URL, content=body, headers={"content-type": "application/json"})
    assert_problem(response, 422, "loan_amount")
    created = await submit(client, APPROVED)
    response = await client.patch(
        f"{URL}/{created['id']}",
        content=b'{"credit_score": 800, "credit_score": 300}',
        headers={"content-type": "application/json"},
    )
    assert_problem(response, 422, "credit_score")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/merge-patch+json",
        "application/vnd.fastloans+json",
        "application/json; charset=latin-1",
        "application/json; charset=utf-16",
        "application/json; boundary=x",
        "application/jsonp",
    ],
)
async def test_only_application_json_in_utf_8_is_accepted(client: httpx.AsyncClient, content_type: str) -> None:
    assert_problem(await client.post(URL, content=json_bytes(APPROVED), headers={"content-type": content_type}), 415)


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON;charset=UTF-8"])
async def test_application_json_with_charset_utf_8_is_accepted(client: httpx.AsyncClient, content_type: str) -> None:
    response = await client.post(URL, content=json_bytes(APPROVED), headers={"content-type": content_type})
    assert response.status_code == 202, response.text


def json_bytes(body: dict) -> bytes:
    """`body` as JSON text."""
    return json.dumps(body).encode()


async def test_negative_zero_is_zero_in_the_202_and_on_get(client: httpx.AsyncClient) -> None:
    response = await client.post(
        URL, content=json_bytes(APPROVED).replace(b'"1000.00"', b"-0.00"), headers={"content-type": "application/json"}
    )
    assert response.status_code == 202, response.text
    assert response.json()["monthly_debt"] == "0.00"
    assert (await client.get(f"{URL}/{response.json()['id']}")).json()["monthly_debt"] == "0.00"


async def test_idempotency_compares_values_not_their_spelling(client: httpx.AsyncClient) -> None:
    key = f"idem-{uuid.uuid4()}"
    first = await client.post(URL, json=APPROVED, headers={"Idempotency-Key": key})
    assert first.status_code == 202
    for same in (
        {"loan_amount": 2000},
        {"loan_amount": "2e3", "monthly_debt": 1000.0},
        {"applicant_name": "  Ada Lovelace ", "employment_status": "Employed"},
    ):
        again = await client.post(URL, json={**APPROVED, **same}, headers={"Idempotency-Key": key})
        assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true", (same, again.text)
        assert again.json()["id"] == first.json()["id"]
    assert_problem(
        await client.post(URL, json={**APPROVED, "loan_amount": 2000.01}, headers={"Idempotency-Key": key}),
        422,
        "Idempotency-Key",
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"loan_amount": 1e99999999999999999999}',
        b'{"loan_amount": -1E+1000000000000000000000000}',
        b'{"applicant_name": "Ada\\ud800"}',
        b'{"\\udfff": 1}',
    ],
    ids=["huge-exponent", "huge-negative-exponent", "lone-surrogate-value", "lone-surrogate-key"],
)
async def test_numbers_and_strings_python_cannot_hold_are_400(client: httpx.AsyncClient, body: bytes) -> None:
    assert_problem(await client.post(URL, content=body, headers={"content-type": "application/json"}), 400)
    created = await submit(client, APPROVED)
    response = await client.patch(f"{URL}/{created['id']}", content=body, headers={"content-type": "application/json"})
    assert_problem(response, 400)


def raw_cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        raw_cursor(f"0001-01-01T00:00:00+14:00|{uuid.uuid4()}"),
        raw_cursor(f"9999-12-31T23:59:59-14:00|{uuid.uuid4()}"),
        raw_cursor(f"2026-01-01T00:00:00+01:00|{uuid.uuid4()}"),
        raw_cursor(f"2026-01-01T00:00:00|{uuid.uuid4()}"),
        raw_cursor("x|y"),
        "\x00",
        "é",
    ],
    ids=["year-1-at-plus-14", "year-9999-at-minus-14", "other-offset", "naive", "junk", "nul", "non-ascii"],
)
async def test_cursors_the_api_never_issued_are_400(client: httpx.AsyncClient, cursor: str) -> None:
    response = await client.get(URL, params={"cursor": cursor})
    body = assert_problem(response, 400)
    assert body["errors"] == [{"field": "cursor", "message": "invalid"}]
