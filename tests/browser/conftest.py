"""Playwright (async API) driving Debian's Chromium against the real local stack.

Chromium is never downloaded by Playwright: `scripts/install-browser.sh` (make
browser-deps) installs the distribution's package. Without it these tests fail,
they do not skip. Every page is checked for script errors, Content Security Policy
violations and requests that leave the local machine.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Page, Request, Route, async_playwright, expect

from tests.conftest import ROOT, MigratedDb, issue_test_key
from tests.e2e.test_pipeline import URL, decided, submit

CHROMIUM = Path(os.environ.get("FASTLOANS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 740}
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# Chromium logs every 4xx answer to fetch() as a console error, and the connection a test cuts on purpose.
HTTP_ERROR_LOG = re.compile(
    r"^Failed to load resource: (the server responded with a status of 4\d\d|net::ERR_CONNECTION_RESET)"
)

expect.set_options(timeout=30_000)


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium; its absence fails the browser tests rather than skipping them."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-browser.sh (make browser-deps) as root")
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    """Headless Chromium for the whole session."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


class Tab:
    """One browser tab on the gateway, with what it logged and fetched."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.requests: list[Request] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on("request", lambda request: self.requests.append(request))

    def _console(self, message: object) -> None:
        text = message.text  # type: ignore[attr-defined]
        if message.type == "error" and not HTTP_ERROR_LOG.match(text):  # type: ignore[attr-defined]
            self.errors.append(text)

    async def only_local(self, route: Route) -> None:
        """Let requests to this machine through; record and block any other."""
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS or route.request.url.startswith("data:"):
            await route.fallback()
        else:
            self.outside.append(route.request.url)
            await route.abort()

    def api_calls(self, method: str) -> list[Request]:
        """The API requests of `method` the page made so far."""
        return [r for r in self.requests if r.method == method and urlsplit(r.url).path.startswith(URL)]

    async def sign_in(self, key: str) -> None:
        """Open the page and sign in with `key`; ends on the applications list."""
        await self.page.goto("/")
        await self.page.get_by_label("API key").fill(key)
        await self.page.get_by_role("button", name="Sign in").click()
        await expect(self.page.get_by_role("heading", level=1, name="Applications")).to_be_visible()

    async def fill(self, data: dict[str, object]) -> None:
        """Fill the application form on the page with `data` (API field names and values)."""
        form = self.page.locator("form.application-form")
        for name, value in data.items():
            control = form.locator(f'[name="{name}"]')
            if await control.evaluate("el => el.tagName") == "SELECT":
                await control.select_option(str(value))
            else:
                await control.fill(str(value))

    async def mark_document(self) -> None:
        """Tag the current document, to prove later that it was never reloaded."""
        await self.page.evaluate("window.__sameDocument = true")

    async def same_document(self) -> bool:
        """Whether the document tagged by `mark_document` is still the one shown."""
        return bool(await self.page.evaluate("window.__sameDocument === true"))

    async def screenshot(self, name: str) -> Path:
        """Save a full-page screenshot under test-output/screenshots/."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


async def open_tab(browser: Browser, api_url: str, viewport: dict[str, int]) -> tuple[object, Tab]:
    """A fresh browser context (no storage) and tab on the gateway."""
    context = await browser.new_context(
        base_url=api_url, viewport=viewport, locale="en-GB", timezone_id="UTC", reduced_motion="reduce"
    )
    tab = Tab(await context.new_page())
    await context.route("**/*", tab.only_local)
    return context, tab


async def checked_tab(browser: Browser, api_url: str, viewport: dict[str, int]) -> AsyncIterator[Tab]:
    """A tab of `viewport` size; afterwards fails the test on script errors, CSP violations or outside requests."""
    context, opened = await open_tab(browser, api_url, viewport)
    yield opened
    await context.close()  # type: ignore[attr-defined]
    assert opened.errors == [], opened.errors
    assert opened.outside == [], opened.outside


@pytest.fixture
async def tab(browser: Browser, api_url: str) -> AsyncIterator[Tab]:
    """A desktop-sized tab."""
    async for opened in checked_tab(browser, api_url, DESKTOP):
        yield opened


@pytest.fixture
async def phone(browser: Browser, api_url: str) -> AsyncIterator[Tab]:
    """A phone-sized tab (375 px wide)."""
    async for opened in checked_tab(browser, api_url, PHONE):
        yield opened


class Gate:
    """Holds the page's long-poll requests (`?wait=`) until released, to see the pending state for sure."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.polling = asyncio.Event()
        self.held: list[str] = []

    async def handle(self, route: Route) -> None:
        """Route handler: wait for `release`, then let the request through to the gateway."""
        if "wait=" not in (urlsplit(route.request.url).query or ""):
            await route.fallback()
            return
        self.held.append(route.request.url)
        self.polling.set()
        await self.open.wait()
        await route.fallback()

    async def wait_for_poll(self) -> None:
        """Return once the page has sent a long poll."""
        await asyncio.wait_for(self.polling.wait(), timeout=30)

    def release(self) -> None:
        """Let held and later long polls through."""
        self.open.set()


@pytest.fixture
async def gate(tab: Tab) -> Gate:
    """A gate on `tab`'s long polls."""
    held = Gate()
    await tab.page.route(f"**{URL}/*", held.handle)
    return held


def unique(data: dict[str, object]) -> dict[str, object]:
    """`data` with an applicant name no other test uses."""
    return {**data, "applicant_name": f"{data['applicant_name']} {uuid.uuid4().hex[:6]}"}


async def create_decided(api_url: str, key: str, data: dict[str, object]) -> dict:
    """Submit an application over the API and wait for its decision."""
    async with httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=40) as http:
        return await decided(http, (await submit(http, data))["id"])


@pytest.fixture
async def fresh_key(migrated_db: MigratedDb) -> str:
    """An API key of a tenant of its own (an empty list to start with)."""
    return await issue_test_key(migrated_db.primary_url, f"web-{uuid.uuid4().hex[:8]}")
