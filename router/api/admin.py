"""`/admin/*`: operator actions. For now, `POST /admin/reload` (the same path as SIGHUP and file changes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Request, post
from litestar.handlers import HTTPRouteHandler
from litestar.response.base import ASGIResponse
from litestar.types import ASGIApp

from router.errors import RouterError
from router.security import Access, OpenAccess

if TYPE_CHECKING:
    from router.runtime import Runtime


def admin_handlers(runtime: Runtime, access: Access | None = None) -> list[HTTPRouteHandler]:
    """The admin endpoints bound to this runtime, usable as `access.check_admin` allows."""
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
            body = {**error.body(), "problems": runtime.redactor.value(list(result.problems))}
            return ASGIResponse(
                body=msgspec.json.encode(body), media_type="application/json", status_code=422
            )
        answer = runtime.redactor.value(result.as_dict())  # a diff may quote credential headers
        return ASGIResponse(body=msgspec.json.encode(answer), media_type="application/json")

    return [reload]
