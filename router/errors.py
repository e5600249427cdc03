"""Errors a client can see, as values, and the one function that writes them for the client.

Every failure the router reports, whether the client sent bad input or an upstream misbehaved, is a
`RouterError`: a value with the HTTP status and the error fields, never changed after it is raised.
`encode_error` turns any exception into what the client receives (status, headers, body), masking known
secrets as it writes; the fast path, the app's exception handlers and a stream's final error event all
call it, so an error reads the same whichever way it leaves. A client dialect is a parameter of the
encoder: OpenAI's is the only one today.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from router.policies.retry import format_retry_after


class RouterError(Exception):
    """A failure with a client-visible status and an OpenAI error body."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if code is not None:
            self.code = code
        self.param = param
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        """The OpenAI error object, unredacted: for bodies that add fields of their own (admin's problems)."""
        return _openai_object(self, self.message)

    def headers(self) -> dict[str, str]:
        """Headers that go with the status (Retry-After tells well-behaved SDKs when to come back)."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": format_retry_after(max(1.0, self.retry_after))}


class InvalidRequest(RouterError):
    """The client's request cannot be served as written; `param` names the offending field."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class NotFound(RouterError):
    """No route answers to that path or model name."""

    status = 404
    type = "not_found_error"
    code = "model_not_found"


class RouteUnavailable(RouterError):
    """The route is known but cannot take traffic now (unhealthy, breaker open, no replica left)."""

    status = 503
    type = "server_error"
    code = "upstream_unavailable"


class Overloaded(RouterError):
    """The upstream's concurrency limit and wait queue are full: come back later rather than pile up."""

    status = 429
    type = "rate_limit_error"
    code = "queue_full"


class StreamTooLong(RouterError):
    """A stream reached its route's `max_stream_duration`: ended with this as its last event.

    Not an upstream fault (a long answer is not a broken server), so the breaker does not hear of it;
    what it bounds is a stream kept alive for ever by an upstream that trickles empty chunks.
    """

    status = 504
    type = "timeout"
    code = "stream_too_long"


class BodyTooLarge(RouterError):
    """413: the body exceeds `server.max_body_bytes`, whether the fast path or the app noticed."""

    status = 413
    type = "invalid_request_error"
    code = "request_too_large"

    def __init__(self) -> None:
        super().__init__("the request body is larger than the router accepts (server.max_body_bytes)")


class InternalError(RouterError):
    """500: a bug. The traceback goes to the log; the client learns nothing of the internals."""

    status = 500
    type = "server_error"
    code = "internal_error"

    def __init__(self) -> None:
        super().__init__("the router failed unexpectedly; the error is logged")


Redact = Callable[[str], str]
"""Masks known secrets in a text (`router.security.Redactor`; an empty one returns the text unchanged)."""


@dataclass(frozen=True, slots=True)
class ErrorDialect:
    """How one client dialect writes an error: as a response body, and as the last event of a stream."""

    name: str
    media_type: str
    body: Callable[[RouterError, str], bytes]  # (error, its message already redacted) -> body
    stream_event: Callable[[bytes], bytes]  # a body -> the stream event that carries it


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """What the client receives for an error: ready to send as a response, or (body) as a stream event."""

    status: int
    headers: dict[str, str]
    media_type: str
    body: bytes


def _openai_object(error: RouterError, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": error.type, "param": error.param, "code": error.code}}


def _openai_body(error: RouterError, message: str) -> bytes:
    return msgspec.json.encode(_openai_object(error, message))


def _sse_data(body: bytes) -> bytes:
    return b"data: " + body + b"\n\n"


OPENAI = ErrorDialect("openai", "application/json", _openai_body, _sse_data)
"""OpenAI's `{"error": {"message", "type", "param", "code"}}`; mid-stream, a final `data:` event."""

_INTERNAL = InternalError()


def encode_error(error: BaseException, redact: Redact, dialect: ErrorDialect = OPENAI) -> ErrorReply:
    """The client's view of `error`: a RouterError as it says, anything else as a 500 that leaks nothing.

    The message is masked while it is written (an upstream may quote its own key in an error it sends);
    the error itself is left as it was raised, for the log and for whoever else holds it.
    """
    known = error if isinstance(error, RouterError) else _INTERNAL
    return ErrorReply(
        known.status, known.headers(), dialect.media_type, dialect.body(known, redact(known.message))
    )
