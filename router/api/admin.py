"""`/admin/*`: operator actions. For now, `POST /admin/reload` (the same path as SIGHUP and file changes)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Request, post
from litestar.handlers import HTTPRouteHandler
from litestar.response.base import ASGIResponse
from litestar.types import ASGIApp

from router.errors import RouterError
from router.reload import ReloadResult
from router.security import Access, OpenAccess

ReloadTrigger = Callable[[str], Awaitable[ReloadResult]]
"""Starts a reload (the argument names the trigger) and says how it went."""


def admin_handlers(
    reload_table: ReloadTrigger | None, redact: Callable[[Any], Any], access: Access | None = None
) -> list[HTTPRouteHandler]:
    """The admin endpoints, usable as `access.check_admin` allows.

    `reload_table` is None when the router has no file to reload; `redact` masks secrets in answers.
    """
    check = (access or OpenAccess()).check_admin

    @post(
        "/admin/reload",
        operation_id="admin_reload",
        tags=["admin"],
        status_code=200,
        summary="Re-read the routing table; an invalid file is refused and the old table kept",
    )
    async def reload(request: Request[Any, Any, Any]) -> ASGIApp:
        check(request.scope["headers"])
        if reload_table is None:
            raise RouterError(
                "this router was started without a config file to reload",
                status=409,
                type="invalid_request_error",
                code="reload_unavailable",
            )
        result = await reload_table("admin")
        if not result.ok:
            error = RouterError(
                "the routing table is invalid; the previous table is still served",
                status=422,
                type="invalid_request_error",
                code="invalid_config",
            )
            body = {**error.body(), "problems": redact(list(result.problems))}
            return ASGIResponse(
                body=msgspec.json.encode(body), media_type="application/json", status_code=422
            )
        answer = redact(result.as_dict())  # a diff may quote credential headers
        return ASGIResponse(body=msgspec.json.encode(answer), media_type="application/json")

    return [reload]
