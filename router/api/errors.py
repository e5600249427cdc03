"""Every error leaves the router in OpenAI's shape, whoever raised it.

One place maps exceptions to responses (Litestar's exception handlers): the router's own errors carry
their status and fields; Litestar's (unknown path, wrong method, body too large, bad content) are
translated so clients only ever parse one error format.
"""

from __future__ import annotations

import logging

from litestar import Request, Response
from litestar.exceptions import HTTPException

from router.echo import shown
from router.errors import RouterError

log = logging.getLogger("router.api")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}
_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}


def _response(error: RouterError, request: Request) -> Response[bytes]:
    headers = error.headers()
    return Response(error.encode(), status_code=error.status, media_type="application/json", headers=headers)


def router_error_handler(request: Request, exc: RouterError) -> Response[bytes]:
    """The router's own errors already know their status and body."""
    return _response(exc, request)


def http_exception_handler(request: Request, exc: HTTPException) -> Response[bytes]:
    """Litestar's HTTP errors, reworded into OpenAI errors."""
    status = exc.status_code
    if status == 404:
        message = f"no route at {shown(request.url.path)}; GET /v1/models lists the routes"
    elif status == 413:
        message = "the request body is larger than the router accepts (server.max_body_bytes)"
    elif status == 405:
        message = f"{request.method} is not allowed on {shown(request.url.path)}"
    else:
        message = shown(exc.detail, 500)  # Litestar's words may quote what the client sent
    error = RouterError(
        message,
        status=status,
        type=_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
        code=_CODES.get(status),
    )
    return _response(error, request)


def unexpected_error_handler(request: Request, exc: Exception) -> Response[bytes]:
    """A bug: log it with its traceback, tell the client without leaking internals."""
    log.exception("unexpected error on %s %s", request.method, shown(request.url.path))
    error = RouterError(
        "the router failed unexpectedly; the error is logged", status=500, code="internal_error"
    )
    return _response(error, request)


EXCEPTION_HANDLERS = {
    RouterError: router_error_handler,
    HTTPException: http_exception_handler,
    Exception: unexpected_error_handler,
}
