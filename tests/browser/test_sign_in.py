"""Signing in with an API key: kept in the tab's sessionStorage only, never in a URL."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.browser.conftest import DESKTOP, Tab, open_tab


async def test_an_unknown_key_is_refused_and_a_valid_one_signs_in(tab: Tab, tenant_key: str) -> None:
    page = tab.page
    await page.goto("/")
    key = page.get_by_label("API key")
    await expect(key).to_be_focused()
    await expect(key).to_have_attribute("type", "password")
    await tab.screenshot("sign-in")

    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#api-key-error")).to_have_text("Enter your API key.")
    await key.fill("fl_not-a-real-key")
    await key.press("Enter")
    await expect(page.locator("#api-key-error")).to_contain_text("unknown or has been revoked")
    await expect(key).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_role("navigation", name="Main")).to_be_hidden()

    await key.fill(tenant_key)
    await key.press("Enter")
    await expect(page.get_by_role("heading", level=1, name="Applications")).to_be_focused()
    assert await page.evaluate("sessionStorage.getItem('fastloans.apiKey')") == tenant_key
    assert await page.evaluate("localStorage.length") == 0
    assert await page.context.cookies() == []
    assert all(tenant_key not in request.url for request in tab.requests)
    authorised = [r for r in tab.api_calls("GET") if r.headers.get("authorization") == f"Bearer {tenant_key}"]
    assert authorised


async def test_the_key_stays_in_its_tab_and_sign_out_forgets_it(
    browser: Browser, api_url: str, tab: Tab, tenant_key: str
) -> None:
    await tab.sign_in(tenant_key)
    other = await tab.page.context.new_page()
    await other.goto("/")
    await expect(other.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    await other.close()

    context, fresh = await open_tab(browser, api_url, DESKTOP)
    try:
        await fresh.page.goto("/#/applications/new")
        await expect(fresh.page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    finally:
        await context.close()  # type: ignore[attr-defined]

    await tab.page.get_by_role("button", name="Sign out").click()
    await expect(tab.page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    await expect(tab.page.get_by_role("status").filter(has_text="You have signed out")).to_be_visible()
    assert await tab.page.evaluate("sessionStorage.length") == 0
