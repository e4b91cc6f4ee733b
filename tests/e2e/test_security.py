"""Security of the gateway: keys required, scoped, revocable and stored hashed; per-tenant rate limits; CORS;
security headers; and no applicant data or secrets in any log file or metric of a run."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import asyncpg
import httpx
import pytest

from fastloans.tenants import display_prefix, revoke_key
from tests.conftest import MigratedDb, extra_instances, issue_test_key
from tests.e2e.test_pipeline import APPROVED, REJECTED, URL, decided, submit

ALLOWED_ORIGIN = "https://lender.example"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "strict-transport-security": "max-age=31536000; includeSubDomains",
}


@pytest.fixture(scope="module")
def strict_gateway(infra: object) -> Iterator[str]:
    """A second gateway process with a low rate limit and one allowed CORS origin."""
    env = {"RATE_LIMIT_PER_SECOND": "0.1", "RATE_LIMIT_BURST": "3", "CORS_ALLOW_ORIGINS": ALLOWED_ORIGIN}
    with extra_instances(infra, "gateway", ["gateway-strict"], **env) as (child,):
        yield f"http://127.0.0.1:{child.port}"


def bearer(key: str) -> dict[str, str]:
    """The Authorization header for `key`."""
    return {"Authorization": f"Bearer {key}"}


async def test_every_api_route_requires_a_key(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        spec = (await http.get("/openapi.json")).json()
        operations = [
            (method.upper(), path.replace("{application_id}", str(uuid.uuid4())))
            for path, methods in spec["paths"].items()
            for method in methods
        ]
        assert len([op for op in operations if op[1].startswith("/api/")]) >= 5
        for method, path in operations:
            for headers in ({}, bearer("fl_" + secrets.token_urlsafe(32)), {"Authorization": "Basic Zm9vOmJhcg=="}):
                response = await http.request(method, path, headers=headers, json=APPROVED)
                assert response.status_code == 401, (method, path, response.status_code)
                assert response.headers["www-authenticate"].startswith("Bearer")
                assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/"])
async def test_health_metrics_docs_and_the_web_page_need_no_key(api_url: str, ops_url: str, path: str) -> None:
    base = ops_url if path in ("/healthz", "/readyz", "/metrics") else api_url
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        assert (await http.get(path)).status_code == 200


async def test_keys_are_scoped(api_url: str, migrated_db: MigratedDb) -> None:
    tenant = f"scoped-{uuid.uuid4().hex[:8]}"
    reader = await issue_test_key(migrated_db.primary_url, tenant, ("read",))
    submitter = await issue_test_key(migrated_db.primary_url, tenant, ("submit",))
    admin = await issue_test_key(migrated_db.primary_url, tenant, ("admin",))
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        created = await http.post(URL, json=APPROVED, headers=bearer(submitter))
        assert created.status_code == 202
        one = f"{URL}/{created.json()['id']}"
        assert (await http.post(URL, json=APPROVED, headers=bearer(reader))).status_code == 403
        assert (await http.patch(one, json={"credit_score": 700}, headers=bearer(reader))).status_code == 403
        assert (await http.delete(one, headers=bearer(reader))).status_code == 403
        assert (await http.get(one, headers=bearer(submitter))).status_code == 403
        assert (await http.get(URL, headers=bearer(submitter))).status_code == 403
        assert (await http.get(one, headers=bearer(reader))).status_code == 200
        assert (await http.get(one, headers=bearer(admin))).status_code == 200
        assert (await http.delete(one, headers=bearer(admin))).status_code == 204


async def test_a_revoked_key_stops_working(api_url: str, migrated_db: MigratedDb) -> None:
    key = await issue_test_key(migrated_db.primary_url, f"revoked-{uuid.uuid4().hex[:8]}")
    async with httpx.AsyncClient(base_url=api_url, headers=bearer(key), timeout=30) as http:
        assert (await http.get(URL)).status_code == 200
        conn = await asyncpg.connect(migrated_db.primary_url)
        try:
            assert await revoke_key(conn, display_prefix(key)) == 1
        finally:
            await conn.close()
        response = await http.get(URL)  # the test gateway caches keys for 0 s
        assert response.status_code == 401 and "revoked" in response.json()["detail"]


async def test_keys_are_stored_only_as_hashes(pg: asyncpg.Pool, tenant_key: str) -> None:
    rows = await pg.fetch("SELECT k::text AS everything, key_hash FROM api_keys k")
    assert hashlib.sha256(tenant_key.encode()).digest() in {r["key_hash"] for r in rows}
    assert not [r for r in rows if tenant_key in r["everything"] or tenant_key[11:] in r["everything"]]


async def test_rate_limit_per_tenant_answers_429_with_retry_after(strict_gateway: str, migrated_db: MigratedDb) -> None:
    busy = await issue_test_key(migrated_db.primary_url, f"busy-{uuid.uuid4().hex[:8]}")
    quiet = await issue_test_key(migrated_db.primary_url, f"quiet-{uuid.uuid4().hex[:8]}")
    async with httpx.AsyncClient(base_url=strict_gateway, timeout=30) as http:
        responses = [await http.get(URL, headers=bearer(busy)) for _ in range(8)]
        assert [r.status_code for r in responses[:3]] == [200, 200, 200]  # the burst
        limited = [r for r in responses if r.status_code == 429]
        assert limited, [r.status_code for r in responses]
        for response in limited:
            assert response.headers["content-type"] == "application/problem+json"
            # 3 requests a 30 s window: the next fits 10 s into the following window.
            assert 1 <= int(response.headers["retry-after"]) <= 40
        assert (await http.get(URL, headers=bearer(quiet))).status_code == 200  # other keys are unaffected


async def test_cors_is_closed_by_default(api_url: str, tenant_key: str) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        preflight = await http.options(URL, headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST"})
        simple = await http.get(URL, headers={"Origin": ALLOWED_ORIGIN, **bearer(tenant_key)})
    assert "access-control-allow-origin" not in preflight.headers
    assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers


async def test_cors_allows_only_the_configured_origins(strict_gateway: str) -> None:
    request = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    async with httpx.AsyncClient(base_url=strict_gateway, timeout=30) as http:
        allowed = await http.options(URL, headers={"Origin": ALLOWED_ORIGIN, **request})
        other = await http.options(URL, headers={"Origin": "https://elsewhere.example", **request})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert other.headers.get("access-control-allow-origin") != "https://elsewhere.example"
    assert "access-control-allow-origin" not in other.headers


async def test_security_headers_on_every_response(api_url: str, tenant_key: str) -> None:
    auth = bearer(tenant_key)
    requests = [
        ("GET", "/healthz", {}, None),
        ("GET", "/readyz", {}, None),
        ("GET", "/metrics", {}, None),  # 404 on this port
        ("GET", "/openapi.json", {}, None),
        ("GET", "/docs", {}, None),
        ("GET", "/", {}, None),
        ("GET", "/no/such/page", {}, None),
        ("GET", URL, auth, None),
        ("GET", URL, {}, None),
        ("GET", f"{URL}/{uuid.uuid4()}", auth, None),
        ("POST", URL, auth, {**APPROVED, "credit_score": 1}),
        ("POST", URL, auth, APPROVED),
        ("PUT", URL, auth, APPROVED),
    ]
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        for method, path, headers, body in requests:
            response = await http.request(method, path, headers=headers, json=body)
            present = {name: response.headers.get(name) for name in SECURITY_HEADERS}
            assert present == SECURITY_HEADERS, (method, path, response.status_code)
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"], (method, path)
            if path.startswith("/api/"):
                assert response.headers["cache-control"] == "no-store", (method, path)
        oversized = await http.post(
            URL,
            headers={**auth, "content-type": "application/json"},
            content=b'{"applicant_name": "' + b"x" * 40_000 + b'"}',
        )
        assert oversized.status_code == 413
        assert {name: oversized.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS


@pytest.fixture
async def distinctive_run(client: httpx.AsyncClient, api_url: str) -> AsyncIterator[list[str]]:
    """Applications with distinctive names and amounts, taken through the whole pipeline; yields what to look for."""
    marker = secrets.token_hex(6)
    name, renamed = f"Quillon Marrowby {marker}", f"Isolde Farrant {marker}"
    income, debt = Decimal(f"8{secrets.randbelow(9000) + 1000}.37"), Decimal(f"{secrets.randbelow(900) + 100}.83")
    amount = Decimal(f"{secrets.randbelow(900) + 100}1.29")
    created = [
        await submit(
            client, {**APPROVED, "applicant_name": name, "monthly_income": str(income), "loan_amount": str(amount)}
        ),
        await submit(client, {**REJECTED, "applicant_name": name, "monthly_debt": str(debt)}),
    ]
    await client.patch(f"{URL}/{created[0]['id']}", json={"applicant_name": renamed})
    invalid = await client.post(URL, json={**APPROVED, "applicant_name": name, "credit_score": 9999})
    assert invalid.status_code == 422 and name not in invalid.text  # problem details never echo the input
    fake_key = "fl_" + secrets.token_urlsafe(32)
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        assert (await http.get(URL, headers=bearer(fake_key))).status_code == 401
    await decided(client, created[0]["id"], revision=2)
    await decided(client, created[1]["id"])
    await asyncio.sleep(1)  # let the services flush their log lines
    yield [
        name,
        renamed,
        marker,
        str(income),
        str(debt),
        str(amount),
        fake_key,
        fake_key[11:],
        *[c["id"] for c in created],
    ]


async def test_no_applicant_data_or_keys_in_logs_or_metrics(
    distinctive_run: list[str], infra: object, tenant_key: str
) -> None:
    secrets_and_data = [*distinctive_run[:-2], tenant_key, tenant_key[11:]]
    application_ids = distinctive_run[-2:]
    leaks = []
    for path in sorted(infra.log_dir.glob("**/*")):  # type: ignore[attr-defined]
        if path.is_file():
            text = path.read_bytes().decode("utf-8", "replace")
            leaks += [f"{path.name}: {needle!r}" for needle in secrets_and_data if needle in text]
    async with httpx.AsyncClient(timeout=30) as http:
        for service in infra.ports.services:  # type: ignore[attr-defined]
            port = infra.ports.ops_port(service)  # type: ignore[attr-defined]
            metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            assert "fastloans_" in metrics, service
            # Neither data nor keys nor per-application ids (unbounded label values) in any label.
            leaks += [
                f"{service} /metrics: {needle!r}"
                for needle in [*secrets_and_data, *application_ids]
                if needle in metrics
            ]
    assert not leaks


async def test_head_is_answered_wherever_get_is(api_url: str, tenant_key: str) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        page = await http.get("/")
        assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
        docs_assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', (await http.get("/docs")).text)
        created = await submit(http, APPROVED, **bearer(tenant_key))
        paths = [
            ("/", {}),
            ("/docs", {}),
            ("/openapi.json", {}),
            (assets[0], {}),
            (docs_assets[-1], {}),
            (URL, bearer(tenant_key)),
            (f"{URL}/{created['id']}", bearer(tenant_key)),
            (f"{URL}/{uuid.uuid4()}", bearer(tenant_key)),
            (URL, {}),
            ("/no/such/page", {}),
        ]
        for path, headers in paths:
            get = await http.get(path, headers=headers)
            head = await http.head(path, headers=headers)
            assert head.status_code == get.status_code, (path, head.status_code, get.status_code)
            assert head.content == b"", path
            for name in (
                "content-type",
                "content-length",
                "etag",
                "cache-control",
                "content-security-policy",
                "allow",
                "www-authenticate",
            ):
                if name != "content-length" or path not in (URL, f"{URL}/{created['id']}"):  # the body can differ
                    assert head.headers.get(name) == get.headers.get(name), (path, name)


async def test_405_names_every_method_of_the_path(api_url: str, tenant_key: str) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        for method, path, allowed in [
            ("PUT", URL, "GET, HEAD, POST"),
            ("POST", f"{URL}/{uuid.uuid4()}", "DELETE, GET, HEAD, PATCH"),
            ("POST", "/", "GET, HEAD"),
            ("DELETE", "/docs", "GET, HEAD"),
        ]:
            response = await http.request(method, path, headers=bearer(tenant_key))
            assert response.status_code == 405 and response.headers["allow"] == allowed, (method, path)
            assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("path", [f"{URL}/", f"{URL}/{uuid.uuid4()}/", "/docs/", "/static/"])
async def test_no_redirect_reflects_the_host_header(api_url: str, tenant_key: str, path: str) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        response = await http.get(path, headers={**bearer(tenant_key), "host": "evil.example"})
    assert "evil.example" not in response.headers.get("location", "")
    assert response.status_code == 404 and response.headers["content-type"] == "application/problem+json"


async def test_http_metrics_label_only_the_methods_the_api_serves(api_url: str, ops_url: str, tenant_key: str) -> None:
    crafted = ["PROPFIND", "MKCOL", "LOCK", "PURGE", "M-SEARCH", "SUBSCRIBE", "TRACE", "PUT"]
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        for method in crafted:
            response = await http.request(method, URL, headers=bearer(tenant_key))
            assert 400 <= response.status_code < 500, (method, response.status_code)
        await http.head(URL, headers=bearer(tenant_key))
        metrics = (await http.get(f"{ops_url}/metrics")).text
    labelled = set(re.findall(r'^fastloans_http_requests_total\{[^}]*method="([^"]*)"', metrics, re.MULTILINE))
    assert "other" in labelled and "HEAD" in labelled
    assert labelled <= {"GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS", "other"}, labelled
