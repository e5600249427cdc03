"""The chat page: `GET /` and its files under `/static/`, straight from `router/web/` (no build step).

Route paths are POST-only and can never be `/` (the config reserves it), so the page shadows no route;
`/static/...` is GET-only, so a route that happened to live under it would still answer its POSTs.
It serves exactly the files `router/web/` held at start-up: any other path is a 404 before the file
system is asked (a NUL byte or a name too long for it would otherwise fail there, as a 500).

The page is served with a strict Content-Security-Policy: scripts, styles and connections only from the
router itself, no inline script, no plugins, no framing. Model output is sanitised before it reaches the
DOM (marked + DOMPurify, see `web/markdown.js`); the policy is the second wall if that ever failed,
and it also keeps answers from loading remote images (a way to leak a conversation to a third party).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import get
from litestar.connection import ASGIConnection
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import NotFoundException
from litestar.handlers import BaseRouteHandler, HTTPRouteHandler
from litestar.response.base import ASGIResponse
from litestar.router import Router
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
STATIC_PATH = "/static"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def web_handlers(web_dir: Path = WEB_DIR) -> list[HTTPRouteHandler | Router]:
    """`GET /` (the page) and the static files it loads."""
    page = (web_dir / "index.html").read_bytes()
    files = frozenset(path.relative_to(web_dir).as_posix() for path in web_dir.rglob("*") if path.is_file())
    prefix = STATIC_PATH + "/"

    def known_file(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if connection.scope["path"].removeprefix(prefix) not in files:
            raise NotFoundException()

    @get("/", include_in_schema=False, name="web:page")
    async def index() -> ASGIApp:
        return ASGIResponse(body=page, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    static = create_static_files_router(
        path=STATIC_PATH,
        directories=[web_dir],
        name="web:static",
        cache_control=CacheControlHeader(no_cache=True),  # revalidate: an upgrade shows up at once
        include_in_schema=False,
        guards=[known_file],
    )
    return [index, static]
