"""The API docs page: Swagger UI served from the gateway itself, running under the strict Content-Security-Policy."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.async_api import expect

from tests.browser.conftest import Tab
from tests.e2e.test_pipeline import URL

RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation",
  (event) => window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`));
"""


async def test_docs_render_and_try_a_request_with_no_csp_violation(tab: Tab, tenant_key: str) -> None:
    page = tab.page
    await page.add_init_script(RECORD_CSP_VIOLATIONS)
    response = await page.goto("/docs")
    assert response is not None and "script-src 'self';" in response.headers["content-security-policy"]
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Fast Loans API")
    await expect(page.get_by_text("Submit a loan application")).to_be_visible()
    await tab.screenshot("api-docs")

    await page.locator("button.authorize").first.click()
    await page.locator("#auth-bearer-value").fill(tenant_key)
    await page.locator(".modal-ux button.authorize").click()
    await page.locator(".modal-ux button.btn-done").click()
    listing = page.locator(f'.opblock-get:has(.opblock-summary-path[data-path="{URL}"])')
    await listing.locator(".opblock-summary").click()
    await listing.get_by_role("button", name="Try it out").click()
    await listing.get_by_role("button", name="Execute").click()
    await expect(listing.locator(".live-responses-table tbody .response-col_status").first).to_have_text("200")

    assert await page.evaluate("window.__cspViolations") == []
    loaded = {urlsplit(request.url).path for request in tab.requests}
    assert "/openapi.json" in loaded and any(path.endswith("/swagger-ui-bundle.js") for path in loaded)
    assert all(urlsplit(request.url).hostname in ("127.0.0.1", "localhost") for request in tab.requests)
