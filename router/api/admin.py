"""`/admin/*`: operator actions. For now, `POST /admin/reload` (the same path as SIGHUP and file changes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from litestar import post
from litestar.handlers import HTTPRouteHandler
from litestar.response.base import ASGIResponse
from litestar.types import ASGIApp

from router.errors import RouterError

if TYPE_CHECKING:
    from router.runtime import Runtime


def admin_handlers(runtime: Runtime) -> list[HTTPRouteHandler]:
    """The admin endpoints bound to this runtime."""

    @post(
        "/admin/reload",
        operation_id="admin_reload",
        tags=["admin"],
        status_code=200,
        summary="Re-read the routing table; an invalid file is refused and the old table kept",
    )
    async def reload() -> ASGIApp:
        if runtime.reloader is None:
            raise RouterError(
                "this router was started without a config file to reload",
                status=409,
                type="invalid_request_error",
                code="reload_unavailable",
            )
        result = await runtime.reloader.reload("admin")
        if not result.ok:
            error = RouterError(
                "the routing table is invalid; the previous table is still served",
                status=422,
                type="invalid_request_error",
                code="invalid_config",
            )
            body = {**error.body(), "problems": list(result.problems)}
            return ASGIResponse(
                body=msgspec.json.encode(body), media_type="application/json", status_code=422
            )
        return ASGIResponse(body=msgspec.json.encode(result.as_dict()), media_type="application/json")

    return [reload]
