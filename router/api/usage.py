"""`GET /usage`: token and request use per client key and route, today and the days before (admin key).

The counters are the shared state's (`router.state.usage`), so every process of every replica answers
the same figures when `state.backend` is `redis`; with `memory` they are this process's.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get
from litestar.handlers import HTTPRouteHandler
from litestar.response.base import ASGIResponse
from litestar.types import ASGIApp

from router.errors import InvalidRequest
from router.security import Access
from router.state.usage import KEEP_DAYS, UsageLedger


def usage_handlers(ledger: UsageLedger, access: Access) -> list[HTTPRouteHandler]:
    """`GET /usage?days=N` (1 to KEEP_DAYS, default all kept), for admin keys only: use is per tenant."""

    @get(
        "/usage",
        operation_id="usage",
        tags=["admin"],
        summary="Requests and tokens per client key and route, per UTC day, and each key's quotas",
    )
    async def usage(request: Request[Any, Any, Any]) -> ASGIApp:
        access.check_admin(request.scope["headers"], "/usage")
        raw = request.query_params.get("days", str(KEEP_DAYS))
        if not raw.isdigit() or not 1 <= int(raw) <= KEEP_DAYS:
            raise InvalidRequest(f"days must be a whole number from 1 to {KEEP_DAYS}", param="days")
        document = await ledger.report(int(raw))
        return ASGIResponse(body=msgspec.json.encode(document), media_type="application/json")

    return [usage]
