"""Submitting, watching the decision arrive, editing and withdrawing, in a real browser on the real stack."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid

import httpx
from playwright.async_api import Route, expect

from tests.browser.conftest import Gate, Tab, create_decided, unique
from tests.conftest import ROOT
from tests.e2e.test_pipeline import APPROVED, REJECTED, URL

APPLICATION_HASH = re.compile(r"#/applications/[0-9a-f-]{36}$")
# The README's picture; refreshed by `UPDATE_DOCS_IMAGES=1 pytest tests/browser` (it changes with every run).
DOCS_IMAGE = ROOT / "docs" / "images" / "application-page.png"


def application_id(url: str) -> str:
    return url.rsplit("/", 1)[-1]


async def test_an_approved_application_is_decided_live(tab: Tab, gate: Gate, tenant_key: str) -> None:
    page = tab.page
    await tab.sign_in(tenant_key)
    await tab.mark_document()
    await page.get_by_role("link", name="New application").first.click()
    await expect(page.get_by_role("heading", level=1)).to_be_focused()
    data = APPROVED
    await tab.fill(data)
    await tab.screenshot("new-application")
    await page.get_by_role("button", name="Submit application").click()

    await expect(page).to_have_url(APPLICATION_HASH)
    status = page.get_by_role("status").filter(has_text="Status:")
    await expect(status).to_contain_text("Pending")
    await expect(page.locator(".decision")).to_contain_text("being scored and decided")
    await gate.wait_for_poll()  # the page is long-polling for the decision
    await tab.screenshot("application-pending")
    gate.release()

    await expect(status).to_contain_text("Approved")
    await expect(status).to_contain_text("risk score 20")
    await expect(page.locator(".risk-score")).to_have_text("20")
    reasons = page.get_by_role("table", name="How the risk score was reached")
    await expect(reasons.locator("tbody tr")).to_have_count(2)
    await expect(reasons).to_contain_text("Credit score below the level required for our lowest-risk terms")
    await expect(reasons).to_contain_text("Amount of credit requested is high in relation to income")
    await expect(reasons).to_contain_text("Credit score: 750")
    await expect(reasons.locator("tbody td.num")).to_have_text(["+10", "+10"])
    details = page.locator("dl.details")
    await expect(details).to_contain_text("seed-1")
    await expect(details).to_contain_text(data["applicant_name"])
    await expect(details.locator("time")).to_have_count(3)
    assert await tab.same_document()
    [post] = tab.api_calls("POST")
    assert uuid.UUID(post.headers["idempotency-key"])
    assert all("wait=25" in url for url in gate.held)
    shot = await tab.screenshot("application-approved")
    if os.environ.get("UPDATE_DOCS_IMAGES") == "1" or not DOCS_IMAGE.exists():
        DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_IMAGE)


async def test_a_rejected_application_shows_the_principal_reasons(tab: Tab, tenant_key: str) -> None:
    page = tab.page
    await tab.sign_in(tenant_key)
    await tab.mark_document()
    await page.goto("/#/applications/new")
    await tab.fill(unique(REJECTED))
    await page.get_by_role("button", name="Submit application").click()

    status = page.get_by_role("status").filter(has_text="Status:")
    await expect(status).to_contain_text("Rejected")
    await expect(page.locator(".risk-score")).to_have_text("115")
    principal = page.get_by_role("region", name="Main reasons for this decision").locator("li")
    await expect(principal).to_have_count(4)
    await expect(principal.first).to_contain_text("+30 points")
    await expect(page.get_by_role("table", name="How the risk score was reached")).to_contain_text(
        "Purpose of the loan (debt consolidation) indicates an existing debt burden"
    )
    assert await tab.same_document()
    await tab.screenshot("application-rejected")


async def test_invalid_input_is_explained_next_to_each_field_before_anything_is_sent(tab: Tab, tenant_key: str) -> None:
    page = tab.page
    await tab.sign_in(tenant_key)
    await page.goto("/#/applications/new")
    await tab.fill(
        {
            **APPROVED,
            "applicant_name": "  ",
            "credit_score": "900",
            "loan_amount": "12.345",
            "monthly_income": "0",
            "monthly_debt": "-1",
        }
    )
    await page.get_by_role("button", name="Submit application").click()

    summary = page.locator(".error-summary")
    await expect(summary).to_be_focused()
    await expect(summary.get_by_role("link")).to_have_count(5)
    expected = {
        "applicant_name": "Enter the applicant's full name.",
        "credit_score": "Enter a whole number from 300 to 850.",
        "loan_amount": "Use at most two decimal places.",
        "monthly_income": "Enter an amount greater than 0.",
        "monthly_debt": "Enter an amount in numbers",
    }
    for name, message in expected.items():
        field = page.locator(f'.field[data-field="{name}"]')
        await expect(field.locator(".field-error")).to_contain_text(message)
        await expect(field.locator(f'[name="{name}"]')).to_have_attribute("aria-invalid", "true")
    await expect(page.locator('.field[data-field="loan_purpose"] .field-error')).to_be_hidden()
    assert tab.api_calls("POST") == []
    await tab.screenshot("new-application-invalid")

    credit = page.get_by_label("Credit score")
    await credit.fill("720")
    await expect(page.locator('.field[data-field="credit_score"] .field-error')).to_be_hidden()
    await expect(credit).not_to_have_attribute("aria-invalid", "true")
    await page.get_by_label("Applicant's full name").fill("x" * 201)
    await page.get_by_label("Applicant's full name").press("Tab")
    await expect(page.locator('.field[data-field="applicant_name"] .field-error')).to_contain_text(
        "at most 200 characters"
    )


async def test_a_field_error_from_the_server_is_shown_next_to_that_field(tab: Tab, tenant_key: str) -> None:
    page = tab.page

    async def below_range(route: Route) -> None:
        # Stands for any rule only the server checks: the server answers 422 for a score the form let through.
        body = json.loads(route.request.post_data or "{}")
        await route.fallback(post_data=json.dumps({**body, "credit_score": 299}))

    await tab.sign_in(tenant_key)
    await page.route(f"**{URL}", below_range)
    await page.goto("/#/applications/new")
    await tab.fill(unique(APPROVED))
    await page.get_by_role("button", name="Submit application").click()

    field = page.locator('.field[data-field="credit_score"]')
    await expect(field.locator(".field-error")).to_contain_text("greater than or equal to 300")
    await expect(field.get_by_label("Credit score")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator(".error-summary")).to_be_focused()
    await expect(page.locator(".field-error:visible")).to_have_count(1)
    await expect(page.get_by_role("heading", level=1)).to_have_text("New loan application")
    [post] = tab.api_calls("POST")
    response = await post.response()
    assert response is not None and response.status == 422
    assert response.headers["content-type"] == "application/problem+json"
    await tab.screenshot("new-application-server-error")


async def test_a_retry_after_a_lost_answer_creates_one_application(tab: Tab, fresh_key: str, api_url: str) -> None:
    page = tab.page
    lost: list[int] = []

    async def lose_first_answer(route: Route) -> None:
        if route.request.method == "POST" and not lost:
            response = await route.fetch()  # the gateway stores the application...
            lost.append(response.status)
            await route.abort("connectionreset")  # ...but the answer never reaches the page
        else:
            await route.fallback()

    await tab.sign_in(fresh_key)
    await page.route(f"**{URL}", lose_first_answer)
    await page.goto("/#/applications/new")
    data = unique(APPROVED)
    await tab.fill(data)
    submit = page.get_by_role("button", name="Submit application")
    await submit.click()
    await expect(page.get_by_role("alert")).to_contain_text("could not be reached")
    await submit.dblclick()
    await expect(page).to_have_url(APPLICATION_HASH)

    posts = tab.api_calls("POST")
    assert lost == [202]
    assert len(posts) == 2, [p.url for p in posts]
    assert posts[0].headers["idempotency-key"] == posts[1].headers["idempotency-key"]
    replay = await posts[1].response()
    assert replay is not None and replay.headers.get("idempotent-replayed") == "true"
    async with httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {fresh_key}"}) as http:
        listed = (await http.get(URL, params={"limit": 100})).json()["items"]
    assert [item["id"] for item in listed] == [application_id(page.url)]


async def test_an_edit_is_decided_again_live(tab: Tab, gate: Gate, tenant_key: str, api_url: str) -> None:
    page = tab.page
    created = await create_decided(api_url, tenant_key, unique(APPROVED))
    await tab.sign_in(tenant_key)
    await page.goto(f"/#/applications/{created['id']}")
    await tab.mark_document()
    status = page.get_by_role("status").filter(has_text="Status:")
    await expect(status).to_contain_text("Approved")

    edit = page.get_by_role("button", name="Edit application")
    await edit.click()
    await expect(edit).to_have_attribute("aria-expanded", "true")
    form = page.locator("#edit-application")
    await expect(form.get_by_label("Applicant's full name")).to_be_focused()
    await expect(form.get_by_label("Credit score")).to_have_value("750")
    await expect(form.get_by_label("Loan amount")).to_have_value("2000.00")
    await form.get_by_role("button", name="Save changes").click()
    await expect(form.get_by_role("alert")).to_contain_text("Nothing has changed")
    assert tab.api_calls("PATCH") == []

    changes = {k: REJECTED[k] for k in REJECTED if k != "applicant_name"}
    await tab.fill(changes)
    await form.get_by_role("button", name="Save changes").click()
    await expect(status).to_contain_text("Pending")
    await expect(status).to_contain_text("revision 2")
    await expect(page.get_by_role("heading", name="Decision")).to_be_focused()
    await gate.wait_for_poll()
    gate.release()
    await expect(status).to_contain_text("Rejected")
    await expect(status).to_contain_text("revision 2, risk score 115")
    await expect(page.locator("dl.details")).to_contain_text("Debt consolidation")
    [patch] = tab.api_calls("PATCH")
    assert json.loads(patch.post_data or "{}") == {
        "credit_score": 580,
        "loan_amount": "8000.00",
        "loan_purpose": "debt_consolidation",
        "monthly_income": "4000.00",
        "monthly_debt": "2000.00",
        "employment_status": "unemployed",
    }
    assert await tab.same_document()
    await tab.screenshot("application-edited")


async def test_withdrawing_asks_first_then_removes_the_application(tab: Tab, tenant_key: str, api_url: str) -> None:
    page = tab.page
    created = await create_decided(api_url, tenant_key, unique(APPROVED))
    await tab.sign_in(tenant_key)
    await page.goto(f"/#/applications/{created['id']}")
    withdraw = page.get_by_role("button", name="Withdraw application")
    await withdraw.click()
    confirm = page.get_by_role("button", name="Yes, withdraw it")
    await expect(confirm).to_be_focused()
    await tab.screenshot("application-withdraw-confirm")
    await page.get_by_role("button", name="Keep the application").click()
    await expect(withdraw).to_be_focused()
    assert tab.api_calls("DELETE") == []

    await withdraw.click()
    await confirm.click()
    await expect(page.get_by_role("heading", level=1, name="Applications")).to_be_visible()
    await expect(page.locator(".notice-success")).to_contain_text(f"{created['applicant_name']} was withdrawn")
    await expect(page.get_by_role("link", name=created["applicant_name"])).to_have_count(0)
    async with httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {tenant_key}"}) as http:
        assert (await http.get(f"{URL}/{created['id']}")).status_code == 404
    await page.goto(f"/#/applications/{created['id']}")
    await expect(page.get_by_role("alert")).to_contain_text("does not exist or has been withdrawn")
