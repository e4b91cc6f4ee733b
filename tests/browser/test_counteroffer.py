"""A rejected application's page shows the counteroffer, what would change, and a link to its notice."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser.conftest import Tab, unique
from tests.e2e.test_counteroffer import OFFERED
from tests.e2e.test_pipeline import REJECTED, URL


async def test_a_rejected_application_shows_its_counteroffer(tab: Tab, tenant_key: str) -> None:
    page = tab.page
    await tab.sign_in(tenant_key)
    await page.goto("/#/applications/new")
    await tab.fill(unique(OFFERED))
    await page.get_by_role("button", name="Submit application").click()

    await expect(page.get_by_role("status").filter(has_text="Status:")).to_contain_text("Rejected")
    offer = page.get_by_role("region", name="What the policy would approve")
    await expect(offer.locator(".offer-amount")).to_have_text("2,000.00")
    await expect(offer).to_contain_text("would be approved (risk score 50)")
    await expect(offer.locator("li")).to_have_text(
        [
            "Ask for 2,000.00 instead of 5,000.00.",
            "Bring monthly debt payments down to 1,120.00 (from 1,200.00).",
        ]
    )
    notice = page.get_by_role("link", name="Adverse-action notice")
    href = await notice.get_attribute("href")
    assert href is not None and href.startswith(f"{URL}/") and href.endswith("/notice")
    await tab.screenshot("application-counteroffer")


async def test_no_offer_is_said_plainly(tab: Tab, tenant_key: str) -> None:
    page = tab.page
    await tab.sign_in(tenant_key)
    await page.goto("/#/applications/new")
    await tab.fill(unique(REJECTED))
    await page.get_by_role("button", name="Submit application").click()

    await expect(page.get_by_role("status").filter(has_text="Status:")).to_contain_text("Rejected")
    offer = page.get_by_role("region", name="What the policy would approve")
    await expect(offer).to_contain_text("No smaller loan amount would be approved with these details.")
    await expect(offer.locator("li")).to_have_count(0)
