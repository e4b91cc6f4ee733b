"""The web page for applicants and loan officers: `/` and its static assets under `/static/<version>/`.

The assets are read once when the router is built and served from memory. Their
URL carries a hash of every asset's content, so they can be cached for a year
(`immutable`) and a deploy with changed assets changes every asset URL at once;
ES modules import each other by relative path, which stays inside that version.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import Response

from fastloans_gateway.problems import Problem

WEB_DIR = Path(__file__).resolve().parent / "web"
INDEX = "index.html"
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
    digest = hashlib.sha256()
    for name, body in sorted(files.items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(body).digest())
    version = digest.hexdigest()[:16]
    prefix = f"/static/{version}"
    preloads = "\n".join(
        f'  <link rel="modulepreload" href="{prefix}/{name}">' for name in sorted(files) if name.endswith(".js")
    )
    page = template.decode().replace("{{STATIC}}", prefix).replace("{{MODULEPRELOADS}}", preloads).encode()
    return WebAssets(version=version, index=_asset(INDEX, page), assets={name: _asset(name, body)
                                                                            for name, body in files.items()})


def _asset(name: str, body: bytes) -> Asset:
    media_type = TYPES.get(Path(name).suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Asset(body, media_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def web_router(assets: WebAssets | None = None) -> APIRouter:
    """Routes for the page (`/`, revalidated on each load) and its assets (`/static/<version>/...`, kept a year)."""
    web = assets or load_assets()
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def page(request: Request) -> Response:
        return _send(request, web.index, "no-cache")

    @router.get("/static/{path:path}")
    async def static(request: Request, path: str) -> Response:
        version, _, name = path.partition("/")
        asset = web.assets.get(name)
        if version != web.version or asset is None:
            raise Problem(404, "no such file", headers={"Cache-Control": "no-store"})
        return _send(request, asset, IMMUTABLE)

    return router


def _send(request: Request, asset: Asset, cache_control: str) -> Response:
    headers = {"Cache-Control": cache_control, "ETag": asset.etag}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)
