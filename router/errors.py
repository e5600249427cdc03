"""Errors a client can see, in one place, already in OpenAI's shape.

Every failure the router reports, whether the client sent bad input or an upstream misbehaved, is a
`RouterError`. It carries the HTTP status and the OpenAI error fields, so the HTTP layer has a single
exception handler and a stream that already started can send the very same object as its last event.
"""

from __future__ import annotations

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
        self.retries = 0

    def body(self) -> dict[str, Any]:
        """The OpenAI error object: `{"error": {"message", "type", "param", "code"}}`."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def encode(self) -> bytes:
        """The JSON body, encoded once for responses and stream events alike."""
        return msgspec.json.encode(self.body())

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
