"""Labels, keyboard use, focus, contrast and a phone-width screen."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page, expect

from tests.browser.conftest import Tab, create_decided, unique
from tests.e2e.test_pipeline import APPROVED, REJECTED

UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea, button')]
  .filter((el) => !el.closest('[hidden]'))
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
  .map((el) => el.outerHTML)"""

# WCAG 2.2 contrast of every visible text node's colour against the background it is drawn on.
LOW_CONTRAST = (Path(__file__).parent / "low_contrast.js").read_text()


async def check_page(page: Page) -> None:
    """Every control labelled, every text legible, nothing wider than the screen."""
    assert await page.evaluate(UNLABELLED) == []
    assert await page.evaluate(LOW_CONTRAST) == []
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


async def test_the_pages_work_by_keyboard_with_focus_on_each_new_view(tab: Tab, tenant_key: str) -> None:
    page = tab.page
    await page.goto("/")
    await expect(page.get_by_label("API key")).to_be_focused()
    await page.keyboard.press("Shift+Tab")
    await expect(page.get_by_role("link", name="Fast Loans")).to_be_focused()
    await page.keyboard.press("Shift+Tab")
    await expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_focused()
    await page.keyboard.press("Tab")
    await page.keyboard.type(tenant_key)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1, name="Applications")).to_be_focused()

    new = page.get_by_role("navigation", name="Main").get_by_role("link", name="New application")
    await new.focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1, name="New loan application")).to_be_focused()
    await expect(new).to_have_attribute("aria-current", "page")
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Applicant's full name")).to_be_focused()
    await page.keyboard.type("Keyboard User")
    for name, value in (
        ("Credit score", "760"),
        ("Loan amount", "1500"),
        ("Purpose of the loan", None),
        ("Monthly income", "6000"),
        ("Monthly debt payments", "0"),
        ("Employment status", None),
    ):
        await page.keyboard.press("Tab")
        await expect(page.get_by_label(name)).to_be_focused()
        if value is None:
            await page.keyboard.press("ArrowDown")  # the first real choice
        else:
            await page.keyboard.type(value)
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Submit application")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1, name="Application — Keyboard User")).to_be_focused()
    await expect(page.get_by_role("status").filter(has_text="Status:")).to_contain_text("Approved")
    await expect(page.locator("dl.details")).to_contain_text("1,500.00")


async def test_labels_contrast_and_phone_width(phone: Tab, tenant_key: str, api_url: str) -> None:
    page = phone.page
    await page.goto("/")
    await check_page(page)
    await phone.sign_in(tenant_key)
    rejected = await create_decided(api_url, tenant_key, unique(REJECTED))
    await create_decided(api_url, tenant_key, unique(APPROVED))
    await page.reload()
    await expect(page.get_by_role("table").locator("tbody tr").first).to_be_visible()
    await check_page(page)
    await phone.screenshot("phone-applications")

    await page.goto("/#/applications/new")
    await page.get_by_role("button", name="Submit application").click()
    await expect(page.locator(".error-summary")).to_be_focused()
    await check_page(page)
    await phone.screenshot("phone-new-application-invalid")

    await page.goto(f"/#/applications/{rejected['id']}")
    await expect(page.get_by_role("status").filter(has_text="Status:")).to_contain_text("Rejected")
    await check_page(page)
    await phone.screenshot("phone-application-rejected")
    await page.get_by_role("button", name="Edit application").click()
    await check_page(page)
