"""Every error leaves the router in OpenAI's shape, whoever raised it.

Exceptions become responses here and only here: `error_reply` reads a framework exception as a
`RouterError` value (Litestar's unknown path, wrong method, body too large, bad content; a bug becomes a
logged 500) and writes it with `router.errors.encode_error`. Litestar's exception handlers and the chat
fast path both call it, so clients only ever parse one error format: their own dialect's (OpenAI's,
or the one of the front door the request was sent to: Anthropic's on `/v1/messages`, ...).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException

from router.echo import shown
from router.errors import OPENAI, BodyTooLarge, ErrorDialect, ErrorReply, Redact, RouterError, encode_error

log = logging.getLogger("router.api")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}
_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    415: "unsupported_media_type",
}


def as_router_error(exc: BaseException, method: str, path: str) -> BaseException:
    """A Litestar HTTP error reworded as a RouterError; anything else as it is (a bug: logged here)."""
    if isinstance(exc, RouterError):
        return exc
    if not isinstance(exc, HTTPException):
        log.error("unexpected error on %s %s", method, shown(path), exc_info=exc)
        return exc  # encode_error answers it with a 500 that leaks nothing
    status = exc.status_code
    if status == 413:
        return BodyTooLarge()
    if status == 404:
        message = f"no route at {shown(path)}; GET /v1/models lists the routes"
    elif status == 405:
        message = f"{method} is not allowed on {shown(path)}"
    else:
        message = shown(exc.detail, 500)  # Litestar's words may quote what the client sent
    return RouterError(
        message,
        status=status,
        type=_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
        code=_CODES.get(status),
    )


def error_reply(
    exc: BaseException, redact: Redact, method: str, path: str, dialect: ErrorDialect = OPENAI
) -> ErrorReply:
    """What the client receives for any exception raised while serving `method path`, in `dialect`."""
    return encode_error(as_router_error(exc, method, path), redact, dialect)


def exception_handlers(
    redact: Redact, dialects: Mapping[str, ErrorDialect] | None = None
) -> dict[int | type[Exception], Callable[[Any, Any], Response[Any]]]:
    """Litestar's exception handlers: every exception goes through `error_reply`.

    `dialects` maps front-door paths to their error dialect (OpenAI's everywhere else), so a client of
    `/v1/messages` reads a 413 or a 405 the framework raised in its own shape.
    """
    by_path = dict(dialects or {})

    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        path = request.url.path
        reply = error_reply(exc, redact, request.method, path, by_path.get(path, OPENAI))
        return Response(
            reply.body, status_code=reply.status, media_type=reply.media_type, headers=reply.headers
        )

    return {Exception: handle}
