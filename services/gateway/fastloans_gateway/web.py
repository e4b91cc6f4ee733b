"""The web page for applicants and loan officers: `/` and its static assets under `/static/<version>/`;
and, when enabled, the API docs page `/docs` with Swagger UI's files under a version of their own.

The assets are read once when the router is built and served from memory. Their
URL carries a hash of every asset's content, so they can be cached for a year
(`immutable`) and a deploy with changed assets changes every asset URL at once;
ES modules import each other by relative path, which stays inside that version.
The docs page loads nothing from elsewhere and runs no inline script, so it is
served under the same Content-Security-Policy as every other response.
"""

from __future__ import annotations

import hashlib
import html
import importlib.util
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import Response

from fastloans_gateway.problems import Problem

WEB_DIR = Path(__file__).resolve().parent / "web"
INDEX = "index.html"
DOCS_DIR = Path(__file__).resolve().parent / "apidocs"
DOCS_PAGE = "docs.html"
# The Swagger UI dist files the docs page uses, from the pinned fastapi-offline package (swagger-ui-dist 5.32.6).
SWAGGER_UI_PACKAGE = "fastapi_offline"
SWAGGER_UI_FILES = ("swagger-ui-bundle.js", "swagger-ui.css")
IMMUTABLE = "public, max-age=31536000, immutable"
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".html": "text/html; charset=utf-8",
}


@dataclass(frozen=True)
class Asset:
    """One static file held in memory."""

    body: bytes
    media_type: str
    etag: str


@dataclass(frozen=True)
class WebAssets:
    """The page and its assets, and the content version in their URLs."""

    version: str
    index: Asset
    assets: dict[str, Asset]


def load_assets(directory: Path = WEB_DIR) -> WebAssets:
    """Read every file under `directory`, hash their contents, and render the page with versioned URLs."""
    files = {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    }
    template = files.pop(INDEX)
    version = _version(files)
    prefix = f"/static/{version}"
    preloads = "\n".join(
        f'  <link rel="modulepreload" href="{prefix}/{name}">' for name in sorted(files) if name.endswith(".js")
    )
    page = template.decode().replace("{{STATIC}}", prefix).replace("{{MODULEPRELOADS}}", preloads).encode()
    return WebAssets(
        version=version, index=_asset(INDEX, page), assets={name: _asset(name, body) for name, body in files.items()}
    )


def swagger_ui_dir() -> Path:
    """Where the pinned package keeps Swagger UI's dist files (found without importing the package)."""
    spec = importlib.util.find_spec(SWAGGER_UI_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{SWAGGER_UI_PACKAGE} is not installed: the API docs need its Swagger UI files")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def load_docs_assets(
    *, openapi_url: str, icon_url: str, directory: Path = DOCS_DIR, swagger_ui: Path | None = None
) -> WebAssets:
    """The docs page, its start script and Swagger UI's files, with a content version of their own."""
    swagger_ui = swagger_ui or swagger_ui_dir()
    files = {name: (swagger_ui / name).read_bytes() for name in SWAGGER_UI_FILES}
    files.update(
        {
            path.name: path.read_bytes()
            for path in sorted(directory.iterdir())
            if path.is_file() and not path.name.startswith(".")
        }
    )
    template = files.pop(DOCS_PAGE)
    version = _version(files)
    page = (
        template.decode()
        .replace("{{STATIC}}", f"/static/{version}")
        .replace("{{ICON}}", html.escape(icon_url))
        .replace("{{OPENAPI}}", html.escape(openapi_url))
        .encode()
    )
    return WebAssets(
        version=version,
        index=_asset(DOCS_PAGE, page),
        assets={name: _asset(name, body) for name, body in files.items()},
    )


def _version(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name, body in sorted(files.items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(body).digest())
    return digest.hexdigest()[:16]


def _asset(name: str, body: bytes) -> Asset:
    media_type = TYPES.get(Path(name).suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Asset(body, media_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def web_router(assets: WebAssets | None = None, *, docs_openapi_url: str | None = None) -> APIRouter:
    """Routes for the page (`/`, revalidated on each load) and its assets (`/static/<version>/...`, kept a year);
    with `docs_openapi_url`, also the API docs page (`/docs`) on that OpenAPI document."""
    web = assets or load_assets()
    versions = {web.version: web.assets}
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def page(request: Request) -> Response:
        return _send(request, web.index, "no-cache")

    if docs_openapi_url is not None:
        docs = load_docs_assets(openapi_url=docs_openapi_url, icon_url=f"/static/{web.version}/icon.svg")
        versions[docs.version] = docs.assets

        @router.get("/docs")
        async def docs_page(request: Request) -> Response:
            return _send(request, docs.index, "no-cache")

    @router.get("/static/{path:path}")
    async def static(request: Request, path: str) -> Response:
        version, _, name = path.partition("/")
        asset = versions.get(version, {}).get(name)
        if asset is None:
            raise Problem(404, "no such file", headers={"Cache-Control": "no-store"})
        return _send(request, asset, IMMUTABLE)

    return router


def _send(request: Request, asset: Asset, cache_control: str) -> Response:
    headers = {"Cache-Control": cache_control, "ETag": asset.etag}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)
