"""The web page and its assets as the gateway serves them: content types, caching, security headers."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import httpx

IMMUTABLE = "public, max-age=31536000, immutable"
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
REFERENCES = re.compile(r'(?:src|href)="(/static/[^"]+)"')
IMPORTS = re.compile(r'(?:^|\s)(?:import|export)\s[^;]*?from\s+"([^"]+)"|import\s+"([^"]+)"', re.MULTILINE)


async def page_assets(http: httpx.AsyncClient) -> dict[str, httpx.Response]:
    """Every asset the page references, and every module those import, fetched once."""
    page = await http.get("/")
    pending = list(dict.fromkeys(REFERENCES.findall(page.text)))
    seen: dict[str, httpx.Response] = {}
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen[path] = response = await http.get(path)
        if path.endswith(".js"):
            for found in IMPORTS.findall(response.text):
                pending.append(urljoin(path, found[0] or found[1]))
    return seen


async def test_the_page_is_html_revalidated_and_locked_down(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url) as http:
        page = await http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    assert page.headers["content-security-policy"] == CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    assert "<style" not in page.text and " style=" not in page.text
    assert re.findall(r"<script(?![^>]*\ssrc=)[^>]*>", page.text) == [], "inline scripts would break the CSP"
    assert "{{" not in page.text


async def test_every_asset_is_served_with_its_type_and_cached_for_a_year(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url) as http:
        assets = await page_assets(http)
        assert {path.rsplit(".", 1)[-1] for path in assets} == {"js", "css", "svg"}
        assert len([p for p in assets if p.endswith(".js")]) >= 5
        for path, response in assets.items():
            assert response.status_code == 200, path
            assert response.headers["content-type"] == TYPES["." + path.rsplit(".", 1)[-1]], path
            assert response.headers["cache-control"] == IMMUTABLE, path
            assert response.headers["x-content-type-options"] == "nosniff"
            if path.endswith((".js", ".css")):
                assert "://" not in response.text, f"{path} refers to another origin"
            again = await http.get(path, headers={"If-None-Match": response.headers["etag"]})
            assert again.status_code == 304 and again.content == b""


async def test_asset_urls_carry_the_content_version_and_nothing_else_is_served(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url) as http:
        assets = await page_assets(http)
        versions = {path.split("/")[2] for path in assets}
        assert len(versions) == 1 and re.fullmatch(r"[0-9a-f]{16}", next(iter(versions)))
        version = versions.pop()
        for path in (
            "/static/0000000000000000/app.css",
            f"/static/{version}/missing.js",
            f"/static/{version}/%2e%2e/web.py",
            f"/static/{version}/index.html",
            "/static/",
        ):
            response = await http.get(path)
            assert response.status_code == 404, path
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["cache-control"] == "no-store"
