"""The review queue in a real browser, on a pipeline of its own that runs the `seed-with-review` policy: a referred
application is claimed, overridden and approved by a supervisor, and the applicant's page shows the reviewer's
decision; a claim held by another reviewer (409) and one's own override (403, four eyes) are refused on the page."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, expect

from fastloans.tenants import issue_key
from tests.browser.conftest import DESKTOP, PHONE, Tab, checked_tab
from tests.browser.test_accessibility import check_page
from tests.e2e.test_pipeline import decided, submit
from tests.e2e.test_reviews import BORDERLINE, Pipeline, until_status
from tests.e2e.test_reviews import pipeline as pipeline  # the module's pipeline fixture: seed-with-review

ACTORS = {
    None: ("submit", "read"),
    "reviewer-1": ("review",),
    "reviewer-2": ("review",),
    "reviewer-3": ("review", "supervise"),
    "supervisor-1": ("supervise",),
}


@pytest.fixture
async def keys(pipeline: Pipeline, migrated_db: Any) -> dict[str | None, str]:
    """A new tenant's keys: the applicant's (None), two reviewers, a reviewer who also supervises, a supervisor."""
    tenant = f"web-reviews-{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(migrated_db.primary_url)
    try:
        return {
            actor: (await issue_key(conn, tenant, scopes=scopes, actor=actor)).key for actor, scopes in ACTORS.items()
        }
    finally:
        await conn.close()


@pytest.fixture
def tabs(browser: Browser, pipeline: Pipeline) -> Any:
    """Opens checked tabs on the pipeline's gateway: `async with tabs(viewport) as tab`."""

    @asynccontextmanager
    async def opened(viewport: dict[str, int] = DESKTOP) -> AsyncIterator[Tab]:
        tabs = checked_tab(browser, pipeline.api_url, viewport)
        tab = await anext(tabs)
        try:
            yield tab
        finally:
            with pytest.raises(StopAsyncIteration):
                await anext(tabs)  # closes the context and checks for script errors and outside requests

    return opened


async def referred_application(pipeline: Pipeline, key: str) -> dict[str, Any]:
    """The borderline application, submitted by the applicant and referred by the policy (its case opened)."""
    data = {**BORDERLINE, "applicant_name": f"Ada Lovelace {uuid.uuid4().hex[:6]}"}
    async with httpx.AsyncClient(base_url=pipeline.api_url, headers={"Authorization": f"Bearer {key}"}) as http:
        application = await decided(http, (await submit(http, data))["id"])
    assert application["status"] == "referred" and application["review_case_id"], application
    return application


async def sign_in(tab: Tab, key: str, heading: str = "Review queue") -> None:
    """Sign in with a reviewer's or supervisor's key: the page starts on the queue."""
    await tab.page.goto("/")
    await tab.page.get_by_label("API key").fill(key)
    await tab.page.get_by_role("button", name="Sign in").click()
    await expect(tab.page.get_by_role("heading", level=1, name=heading)).to_be_focused()


async def open_case(tab: Tab, application: dict[str, Any]) -> None:
    """From the queue, open the application's case by its link."""
    case_id = application["review_case_id"]
    await tab.page.get_by_role("link", name=f"Case {case_id[:8]}").click()
    heading = tab.page.get_by_role("heading", level=1)
    await expect(heading).to_have_text(f"Review case — {application['applicant_name']}")


async def test_a_referred_application_is_claimed_overridden_approved_and_shown_to_the_applicant(
    tabs: Any, keys: dict[str | None, str], pipeline: Pipeline
) -> None:
    application = await referred_application(pipeline, keys[None])
    case_id = application["review_case_id"]

    async with tabs() as maker:
        page = maker.page
        await sign_in(maker, keys["reviewer-3"])
        nav = page.get_by_role("navigation", name="Main")
        await expect(nav.get_by_role("link", name="Review queue")).to_have_attribute("aria-current", "page")
        await expect(nav.get_by_role("link", name="Awaiting approval")).to_be_visible()
        await expect(nav.get_by_role("link", name="Applications")).to_be_hidden()  # no read scope
        await expect(page.locator(".lead")).to_contain_text("Signed in as reviewer-3 (review and supervise)")
        listed = page.get_by_role("row").filter(has=page.get_by_role("link", name=f"Case {case_id[:8]}"))
        await expect(listed).to_contain_text("Open")
        await expect(listed).to_contain_text(re.compile(r"(29 days \d+ hours?|30 days 0 hours) left"))
        await expect(listed).to_contain_text("Reject")  # the recommendation
        await expect(listed).not_to_contain_text("Escalated")

        await open_case(maker, application)
        packet = page.get_by_role("region", name="Decision packet")
        await expect(packet).to_contain_text("refer-borderline")
        await expect(packet.locator("dd").nth(2)).to_have_text("1")  # one point above an approval
        await expect(packet.locator("ul.to-approve li")).to_have_count(2)  # loan amount, monthly debt
        await expect(page.get_by_role("region", name="The policy's decision")).to_contain_text("referred")
        await expect(page.get_by_role("region", name="Application")).to_contain_text("1,900.00")
        history = page.get_by_role("region", name="History").locator("tbody tr")
        await expect(history).to_have_count(1)
        await expect(history).to_contain_text("system")
        await expect(page.get_by_role("button", name="Record decision")).to_have_count(0)  # not claimed yet

        await page.get_by_role("button", name="Claim this case").click()
        await expect(page.get_by_role("status").filter(has_text="You hold the claim")).to_be_focused()
        await expect(page.locator(".status-panel")).to_contain_text("reviewer-3 until")

        # The reason codes offered are those the API allows: of the factors the policy scored (not employment).
        reasons = page.get_by_role("group", name="Reason codes").get_by_role("checkbox")
        offered = {await box.get_attribute("value") for box in await reasons.all()}
        assert "DEBT_TO_INCOME_HIGH" in offered and "PURPOSE_BUSINESS" in offered
        assert not {code for code in offered if code.startswith("EMPLOYMENT_")}

        # An override needs a note: the page says so before sending anything.
        await page.get_by_role("radio", name=re.compile("^Approve")).check()
        await page.get_by_role("button", name="Record decision").click()
        summary = page.locator(".error-summary")
        await expect(summary).to_be_focused()
        await expect(summary).to_contain_text("Explain the override")
        assert not [r for r in maker.requests if r.method == "POST" and r.url.endswith("/decision")]
        await page.get_by_label("Note").fill("Stable business income for six years")
        await page.get_by_role("button", name="Record decision").click()
        await expect(page.get_by_role("status").filter(has_text="awaits a supervisor")).to_be_visible()
        await expect(page.locator(".status-panel")).to_contain_text("Awaiting approval")
        await expect(page.get_by_role("region", name="Reviewer's decision")).to_contain_text("Stable business income")
        await maker.screenshot("review-case-awaiting-approval")

        # Four eyes: the maker also supervises, but the server refuses their own approval, and the page says so.
        await expect(page.get_by_text("You made this decision")).to_be_visible()
        await page.get_by_role("button", name="Approve the decision").click()
        alert = page.get_by_role("alert")
        await expect(alert).to_contain_text("Not allowed:")
        await expect(alert).to_contain_text("needs a second person")
        await expect(page.locator(".status-panel")).to_contain_text("Awaiting approval")

    async with tabs() as supervisor:
        page = supervisor.page
        await sign_in(supervisor, keys["supervisor-1"])
        await page.get_by_role("navigation", name="Main").get_by_role("link", name="Awaiting approval").click()
        await expect(page.get_by_role("heading", level=1, name="Awaiting approval")).to_be_focused()
        await open_case(supervisor, application)
        await expect(page.get_by_role("button", name="Claim this case")).to_have_count(0)  # supervise only
        await page.get_by_role("button", name="Approve the decision").click()
        await expect(page.get_by_role("status").filter(has_text="Approved: the decision is final")).to_be_visible()
        await expect(page.locator(".status-panel")).to_contain_text("Decided")
        await expect(page.get_by_role("region", name="Reviewer's decision")).to_contain_text("supervisor-1")
        actions = page.get_by_role("region", name="History").locator("tbody tr td:nth-child(4)")
        await expect(actions).to_have_text(["Opened", "Claimed", "Decided", "Approved"])
        await supervisor.screenshot("review-case-decided")

    # The reviewer's decision went through the outbox and Kafka to the recorder; the applicant's page shows it.
    async with httpx.AsyncClient(base_url=pipeline.api_url, headers={"Authorization": f"Bearer {keys[None]}"}) as http:
        shown = await until_status(http, application["id"], "approved")
    assert shown["decided_by"] == "review"
    async with tabs() as applicant:
        page = applicant.page
        await sign_in(applicant, keys[None], heading="Applications")
        nav = page.get_by_role("navigation", name="Main")
        await expect(nav.get_by_role("link", name="Review queue")).to_be_hidden()
        await page.goto(f"/#/applications/{application['id']}")
        await expect(page.get_by_role("status").filter(has_text="Status:")).to_contain_text("Approved")
        await expect(page.get_by_role("region", name="Decided on review by a loan officer")).to_be_visible()
        await expect(page.locator("dl.details")).to_contain_text("A loan officer (review)")
        await applicant.screenshot("application-approved-on-review")


async def test_a_claim_held_by_another_reviewer_is_refused_and_a_rejection_follows_the_recommendation(
    tabs: Any, keys: dict[str | None, str], pipeline: Pipeline
) -> None:
    application = await referred_application(pipeline, keys[None])
    async with tabs() as first, tabs() as second:
        await sign_in(first, keys["reviewer-1"])
        await sign_in(second, keys["reviewer-2"])
        await open_case(first, application)
        await open_case(second, application)  # read before the other's claim
        await first.page.get_by_role("button", name="Claim this case").click()
        await expect(first.page.get_by_role("status").filter(has_text="You hold the claim")).to_be_visible()

        await second.page.get_by_role("button", name="Claim this case").click()
        alert = second.page.get_by_role("alert")
        await expect(alert).to_be_focused()
        await expect(alert).to_contain_text("Refused: another reviewer holds this case")
        await expect(alert).to_contain_text("the case is claimed by reviewer-1 until")  # the server's 409
        await expect(second.page.locator(".status-panel")).to_contain_text("reviewer-1 until")  # reloaded
        await expect(second.page.get_by_role("button", name="Record decision")).to_have_count(0)
        await second.screenshot("review-case-claimed-by-another")

        page = first.page
        await page.get_by_role("radio", name=re.compile("^Reject")).check()
        await page.get_by_role("button", name="Record decision").click()
        await expect(page.locator(".error-summary")).to_contain_text("at least one reason code")
        await page.get_by_role("checkbox", name=re.compile("DEBT_TO_INCOME_HIGH")).check()
        await page.get_by_role("checkbox", name=re.compile("CREDIT_SCORE_LOW")).check()
        await page.get_by_role("button", name="Record decision").click()
        await expect(page.get_by_role("status").filter(has_text="Decision recorded and final")).to_be_visible()
        await expect(page.locator(".status-panel")).to_contain_text("Decided")
        await expect(page.get_by_text("Nothing more happens to it")).to_be_visible()

    async with httpx.AsyncClient(base_url=pipeline.api_url, headers={"Authorization": f"Bearer {keys[None]}"}) as http:
        shown = await until_status(http, application["id"], "rejected")
    assert (shown["decided_by"], [r["reason_code"] for r in shown["principal_reasons"]]) == (
        "review",
        ["DEBT_TO_INCOME_HIGH", "CREDIT_SCORE_LOW"],
    )


async def test_the_queue_marks_escalated_cases_and_is_accessible_at_phone_width(
    tabs: Any, keys: dict[str | None, str], pipeline: Pipeline, migrated_db: Any
) -> None:
    application = await referred_application(pipeline, keys[None])
    waited = await referred_application(pipeline, keys[None])
    conn = await asyncpg.connect(migrated_db.primary_url)
    try:  # as if it had waited past its escalation date (the deadline itself unchanged)
        await conn.execute(
            "UPDATE review_cases SET escalate_at = now() - interval '1 hour' WHERE id = $1",
            uuid.UUID(waited["review_case_id"]),
        )
    finally:
        await conn.close()
    async with tabs(PHONE) as phone:
        page = phone.page
        await sign_in(phone, keys["reviewer-1"])
        case_link = page.get_by_role("link", name=f"Case {application['review_case_id'][:8]}")
        await expect(case_link).to_be_visible()
        rows = page.locator("table.cases tbody tr")
        await expect(rows).to_have_count(2)
        late = rows.filter(has=page.get_by_role("link", name=f"Case {waited['review_case_id'][:8]}"))
        await expect(late.locator(".badge-escalated")).to_have_text("Escalated")
        await expect(rows.filter(has=case_link).locator(".badge-escalated")).to_have_count(0)
        await expect(page.get_by_role("status").filter(has_text="Showing")).to_contain_text("1 escalated")
        await check_page(page)
        await phone.screenshot("phone-review-queue")
        await open_case(phone, application)
        await page.get_by_role("button", name="Claim this case").click()
        await expect(page.get_by_role("button", name="Record decision")).to_be_visible()
        await check_page(page)
        await page.get_by_role("button", name="Request information").click()
        await expect(page.get_by_role("alert")).to_contain_text("at least one item")
        await page.get_by_label("What the applicant should send").fill("Bank statements\nProof of income")
        await page.get_by_role("button", name="Request information").click()
        await expect(page.get_by_role("status").filter(has_text="Information requested")).to_be_visible()
        await expect(page.locator(".status-panel")).to_contain_text("Waiting for information")
        await expect(page.locator(".status-panel")).to_contain_text("(clock stopped)")
        await expect(page.get_by_role("region", name="Information requested").locator("li")).to_have_text(
            ["Bank statements", "Proof of income"]
        )
        await check_page(page)
        await phone.screenshot("phone-review-case")
