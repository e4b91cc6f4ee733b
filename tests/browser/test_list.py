"""The tenant's recent applications: status filter, paging, links to each application."""

from __future__ import annotations

import asyncio
import re

from playwright.async_api import expect

from tests.browser.conftest import Tab, create_decided, unique
from tests.e2e.test_pipeline import APPROVED, REJECTED


async def test_the_list_filters_by_status_pages_and_links_to_each_application(
    tab: Tab, fresh_key: str, api_url: str
) -> None:
    page = tab.page
    made = await asyncio.gather(
        *(create_decided(api_url, fresh_key, unique(APPROVED)) for _ in range(4)),
        *(create_decided(api_url, fresh_key, unique(REJECTED)) for _ in range(3)),
    )
    names = {a["applicant_name"]: a for a in made}
    await tab.sign_in(fresh_key)
    rows = page.get_by_role("table").locator("tbody tr")
    await expect(rows).to_have_count(7)
    await expect(page.get_by_role("status").filter(has_text="Showing")).to_have_text(
        "Showing 7 applications, newest first."
    )
    await tab.screenshot("applications")

    await page.get_by_label("Status").select_option("rejected")
    await expect(page).to_have_url(re.compile(r"#/applications\?status=rejected$"))
    await expect(rows).to_have_count(3)
    await expect(rows.locator(".badge")).to_have_text(["Rejected"] * 3)
    await tab.screenshot("applications-rejected")

    await page.get_by_label("Status").select_option("")
    await page.get_by_label("Rows per page").select_option("5")
    await expect(rows).to_have_count(5)
    first_page = await rows.locator("td:first-child").all_inner_texts()
    await expect(page.get_by_role("link", name="Previous page")).to_have_count(0)
    await page.get_by_role("link", name="Next page").click()
    await expect(rows).to_have_count(2)
    second_page = await rows.locator("td:first-child").all_inner_texts()
    assert set(first_page) | set(second_page) == set(names) and not set(first_page) & set(second_page)
    await expect(page.get_by_role("link", name="Next page")).to_have_count(0)
    await page.get_by_role("link", name="Previous page").click()
    await expect(rows).to_have_count(5)
    assert await rows.locator("td:first-child").all_inner_texts() == first_page

    target = names[first_page[0]]
    await page.get_by_role("link", name=target["applicant_name"]).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Application — {target['applicant_name']}")
    await expect(page.locator(".risk-score")).to_have_text(str(target["risk_score"]))
    await page.go_back()
    await expect(rows).to_have_count(5)


async def test_an_empty_filter_says_so(tab: Tab, fresh_key: str) -> None:
    await tab.sign_in(fresh_key)
    await tab.page.get_by_label("Status").select_option("referred")
    await expect(tab.page.get_by_role("status").filter(has_text="No")).to_have_text("No referred applications yet.")
    await expect(tab.page.get_by_role("table")).to_have_count(0)
