"""Adverse-action notices on the real stack: refused until the tenant's settings exist (set with the `fastloans`
command), rendered as HTML and as PDF (read back with pdftotext), stored once per decision (the same hash after
the settings change), no notice for an approval, and the sending time recorded once."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import issue_test_key
from tests.e2e.test_api import assert_problem
from tests.e2e.test_pipeline import APPROVED, URL, decided, submit
from tests.e2e.test_pipeline import REJECTED as REFUSED_AT_ANY_AMOUNT

# Scored 70 by the seed policy (credit score, debt, self-employment, amount): rejected; 1,500.00 is approved.
REJECTED = {
    "applicant_name": "Grace <b>Hopper</b>",
    "credit_score": 620,
    "loan_amount": "3000.00",
    "loan_purpose": "personal",
    "monthly_income": "5000.00",
    "monthly_debt": "2000.00",
    "employment_status": "self-employed",
}
PDF_MAGIC = b"%PDF-"


async def fastloans(infra: object, *args: str) -> str:
    """Run the `fastloans` command against the test stack; its standard output (fails the test on an error)."""
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("fastloans")),
        *args,
        env={**os.environ, **infra.env()},  # type: ignore[attr-defined]
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    """The text of a PDF, by Debian's pdftotext, whitespace collapsed."""
    tool = shutil.which("pdftotext")
    assert tool, "pdftotext is missing: run scripts/install-pdf-deps.sh (make venv does)"
    source = tmp_path / "notice.pdf"
    source.write_bytes(pdf)
    result = subprocess.run([tool, "-enc", "UTF-8", str(source), "-"], capture_output=True, check=True)
    return " ".join(result.stdout.decode().split())


@pytest.fixture
async def notice_client(api_url: str, migrated_db: object) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a tenant of its own, so that its notice settings start unset."""
    tenant = f"notices-{uuid.uuid4().hex[:8]}"
    key = await issue_test_key(migrated_db.primary_url, tenant)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        http.tenant = tenant  # type: ignore[attr-defined]
        yield http


@pytest.mark.parametrize(
    ("facts", "offer"),
    [
        ({**REFUSED_AT_ANY_AMOUNT, "applicant_name": "Grace <b>Hopper</b>"}, None),
        (REJECTED, "1500.00"),
    ],
    ids=["without-an-offer", "with-an-offer"],
)
async def test_a_rejected_applications_notice(
    notice_client: httpx.AsyncClient,
    infra: object,
    pg: asyncpg.Pool,
    tmp_path: Path,
    facts: dict[str, str],
    offer: str | None,
) -> None:
    client = notice_client
    application = await decided(client, (await submit(client, facts))["id"])
    assert application["status"] == "rejected", application
    assert (application.get("counteroffer") or {}).get("loan_amount") == offer, application
    notice_url = f"{URL}/{application['id']}/notice"

    missing = assert_problem(await client.get(notice_url), 409)
    assert [e["field"] for e in missing["errors"]] == ["creditor_name", "address", "supervising_agency", "contact"]
    assert "fastloans tenants notice-settings" in missing["detail"]

    tenant = client.tenant  # type: ignore[attr-defined]
    shown = await fastloans(
        infra,
        "tenants", "notice-settings", "--tenant", tenant, "--creditor-name", "Acme Lending, Inc.",
        "--address", r"100 Main Street\nSpringfield, IL 62701", "--agency", "Consumer Financial Protection Bureau",
        "--contact", "1-800-555-0100",
    )  # fmt: skip
    assert "Acme Lending, Inc." in shown and "100 Main Street / Springfield, IL 62701" in shown

    first = await client.get(notice_url)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"].startswith("text/html")
    digest = hashlib.sha256(first.content).hexdigest()
    assert first.headers["x-notice-sha256"] == digest and first.headers["etag"] == f'"{digest}"'
    html = " ".join(first.text.split())
    reasons = [reason["text"] for reason in application["principal_reasons"]]
    assert reasons and all(reason in html for reason in reasons)
    assert "Grace &lt;b&gt;Hopper&lt;/b&gt;" in html and "Springfield, IL 62701" in html
    assert "Equal Credit Opportunity Act" in html and f"Your credit score: {facts['credit_score']}" in html

    # Stored once: other settings later change nothing in this decision's notice.
    await fastloans(infra, "tenants", "notice-settings", "--tenant", tenant, "--creditor-name", "Renamed Lending")
    again = await client.get(notice_url)
    assert again.status_code == 200 and again.content == first.content
    async with pg.acquire() as conn:
        stored = await conn.fetch(
            "SELECT content_sha256, template_version FROM adverse_action_notices WHERE application_id = $1",
            uuid.UUID(application["id"]),
        )
    assert [row["content_sha256"] for row in stored] == [digest]
    assert stored[0]["template_version"] == first.headers["x-notice-template-version"]

    # The gateway's first PDF also loads WeasyPrint and the fonts: slow on a busy machine.
    pdf = await client.get(notice_url, headers={"Accept": "application/pdf"}, timeout=180)
    assert pdf.status_code == 200, pdf.text
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content.startswith(PDF_MAGIC)
    assert pdf.headers["x-notice-sha256"] == digest
    text = pdf_text(pdf.content, tmp_path)
    assert all(reason in text for reason in reasons), text
    assert "Acme Lending, Inc." in text and "Grace <b>Hopper</b>" in text
    # The offer is printed exactly when the decision has one, in the HTML and in the PDF.
    if offer is not None:
        amount = f"${Decimal(offer):,.2f}"
        assert f"we can offer you a loan of {amount}" in text, text
        assert f"we can offer you a loan of <strong>{amount}</strong>" in html, html
    else:
        assert "we can offer you a loan" not in text, text
        assert "we can offer you a loan" not in html, html

    assert_problem(await client.get(notice_url, headers={"Accept": "application/json"}), 406)


async def test_the_sending_time_is_recorded_once(notice_client: httpx.AsyncClient, infra: object) -> None:
    client = notice_client
    await fastloans(
        infra,
        "tenants", "notice-settings", "--tenant", client.tenant,  # type: ignore[attr-defined]
        "--creditor-name", "Acme", "--address", "1 Main St", "--agency", "CFPB", "--contact", "555-0100",
    )  # fmt: skip
    application = await decided(client, (await submit(client, REJECTED))["id"])
    sent_url = f"{URL}/{application['id']}/notice/sent"
    sent_at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    first = await client.post(sent_url, json={"sent_at": sent_at})
    assert first.status_code == 200, first.text
    record = first.json()
    assert datetime.fromisoformat(record["sent_at"]) == datetime.fromisoformat(sent_at)
    repeated = await client.post(sent_url, json={"sent_at": sent_at})
    assert repeated.status_code == 200 and repeated.json() == record
    without_time = await client.post(sent_url)
    assert without_time.status_code == 200 and without_time.json()["sent_at"] == record["sent_at"]
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    conflict = assert_problem(await client.post(sent_url, json={"sent_at": later}), 409)
    assert "already recorded as sent" in conflict["detail"]
    assert_problem(await client.post(sent_url, json={"sent_at": "yesterday"}), 422, "sent_at")
    future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    assert_problem(await client.post(sent_url, json={"sent_at": future}), 422, "sent_at")


async def test_no_notice_for_an_approval_or_an_unknown_application(notice_client: httpx.AsyncClient) -> None:
    client = notice_client
    application = await decided(client, (await submit(client, APPROVED))["id"])
    assert application["status"] == "approved"
    body = assert_problem(await client.get(f"{URL}/{application['id']}/notice"), 404)
    assert "approved" in body["detail"] and "no adverse-action notice" in body["detail"]
    assert_problem(await client.get(f"{URL}/{uuid.uuid4()}/notice"), 404)
