"""The live operations page: `GET /ops` (the page) and `GET /ops/series` (its numbers).

The page itself is a static file like the chat page, with the same Content-Security-Policy: it holds no
data, so a browser can open it without a key. Everything it shows comes from endpoints behind the status
access check (`auth.public_status`, or the admin key when keys are configured): `/ops/series` here, and
`/status`, `/events` and `/usage`. The page sends the key the chat page stores in the browser.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import msgspec
from litestar import Request, get
from litestar.handlers import HTTPRouteHandler
from litestar.response.base import ASGIResponse
from litestar.types import ASGIApp

from router.api.web import PAGE_HEADERS, WEB_DIR
from router.errors import InvalidRequest
from router.observability.series import OpsSeries
from router.security import Access

OPS_PATH = "/ops"
SERIES_PATH = "/ops/series"


def ops_handlers(series: OpsSeries, access: Access, web_dir: Path = WEB_DIR) -> list[HTTPRouteHandler]:
    """`/ops` and `/ops/series` for one table version (its access policy guards the numbers)."""
    page = (web_dir / "ops.html").read_bytes()

    @get(OPS_PATH, include_in_schema=False, name="web:ops")
    async def ops_page() -> ASGIApp:
        return ASGIResponse(body=page, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    @get(
        SERIES_PATH,
        operation_id="ops_series",
        tags=["ops"],
        summary="The last minutes of requests/s, latency, tokens/s and load per route, and recent reloads",
        description="Sampled every second while someone reads it; `?since=<time>` gives only newer samples.",
    )
    async def ops_series(request: Request[Any, Any, Any]) -> ASGIApp:
        access.check_status(request.scope["headers"])
        series.watched()
        since = _since(request.query_params.get("since"))
        return ASGIResponse(
            body=msgspec.json.encode(series.document(since)),
            media_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    return [ops_page, ops_series]


def _since(value: str | None) -> float | None:
    """`?since=<epoch seconds>`: only the samples after it (the page asks for what it has not seen)."""
    if value is None:
        return None
    try:
        since = float(value)
    except ValueError:
        raise InvalidRequest(
            "`since` must be a time in seconds since the epoch, as in the series' `time`", param="since"
        ) from None
    return since if math.isfinite(since) else None
