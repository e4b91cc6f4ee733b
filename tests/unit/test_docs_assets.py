"""The API docs page: Swagger UI from the pinned package's files, no inline script, nothing from elsewhere."""

from __future__ import annotations

import hashlib
import re

from fastloans_gateway.web import SWAGGER_UI_FILES, load_docs_assets, swagger_ui_dir

# SHA-256 of swagger-ui-dist 5.32.6's files as published; fastapi-offline 1.7.7 ships them unchanged.
SWAGGER_UI_DIST = {
    "swagger-ui-bundle.js": "4b5a9b35a1adf37f00d39c0bae23cdb37007e2946240ef035137cc85b4d55349",
    "swagger-ui.css": "ca238f7d7c2cf4480c1e77a9c3b9da915ab216e96ffd354e69076560c650c6de",
}


def test_the_swagger_ui_files_are_the_published_ones() -> None:
    assert set(SWAGGER_UI_FILES) == set(SWAGGER_UI_DIST)
    for name, digest in SWAGGER_UI_DIST.items():
        assert hashlib.sha256((swagger_ui_dir() / name).read_bytes()).hexdigest() == digest, name


def test_the_docs_page_names_only_its_own_versioned_files() -> None:
    docs = load_docs_assets(openapi_url="/openapi.json", icon_url="/static/abc/icon.svg")
    page = docs.index.body.decode()
    assert docs.index.media_type.startswith("text/html")
    assert re.findall(r"<script(?![^>]*\ssrc=)", page) == [], "no inline script: the CSP forbids it"
    assert "style=" not in page and "<style" not in page
    urls = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert urls and all(url.startswith("/static/") for url in urls), urls
    served = {f"/static/{docs.version}/{name}" for name in docs.assets}
    assert {url for url in urls if url != "/static/abc/icon.svg"} <= served
    assert 'data-openapi-url="/openapi.json"' in page
    assert set(docs.assets) == {"swagger-ui-bundle.js", "swagger-ui.css", "docs.js"}


def test_the_docs_version_follows_the_content(tmp_path) -> None:
    first = load_docs_assets(openapi_url="/openapi.json", icon_url="/i.svg")
    for name in SWAGGER_UI_FILES:
        extra = b"\n" if name.endswith(".css") else b""
        (tmp_path / name).write_bytes((swagger_ui_dir() / name).read_bytes() + extra)
    changed = load_docs_assets(openapi_url="/openapi.json", icon_url="/i.svg", swagger_ui=tmp_path)
    assert changed.version != first.version and changed.assets["docs.js"] == first.assets["docs.js"]
