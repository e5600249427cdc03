"""The access-policy interface the HTTP layer calls before doing any work for a request.

`OpenAccess` (no keys configured) lets everything through; key-based policies raise 401/403/429
`RouterError`s. Checks take the raw ASGI headers so the common case costs no header parsing at all.
Authentication (who is it?) comes before the body is read; authorisation (may they use this route?)
once the route is known, which for `/v1/chat/completions` is only after the body named a model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from router.errors import RouterError

Headers = Iterable[tuple[bytes, bytes]]


class Unauthenticated(RouterError):
    """No key, or a key the router does not know (401). Never quotes what the client sent."""

    status = 401
    type = "authentication_error"
    code = "invalid_api_key"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="router"'}


class Forbidden(RouterError):
    """A known key asking for something it was not given (403)."""

    status = 403
    type = "permission_error"
    code = "permission_denied"


class RateLimited(RouterError):
    """A key over its `rate_limit_per_minute` (429, with Retry-After)."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class KeyBusy(RouterError):
    """A key with as many requests in progress as its `max_concurrency` (429, with Retry-After)."""

    status = 429
    type = "rate_limit_error"
    code = "key_concurrency_limit"


Release = Callable[[], None]
"""Ends one request's share of its key's concurrency; called once, when the request really ends."""


class Access:
    """Decides whether a request may proceed. The base class allows everything."""

    def authenticate(self, headers: Headers) -> str | None:
        """The caller's identity (a key's name), or None when no keys are configured; 401 if invalid."""
        return None

    def authorize(self, principal: str | None, route_path: str) -> None:
        """Raise 403 if the caller may not use the route, 429 if it is over its rate limit."""

    def allowed_routes(self, principal: str | None) -> frozenset[str] | None:
        """The route paths the caller may use (for listings), or None for every route."""
        return None

    def begin(self, principal: str | None) -> Release | None:
        """Count a request of the caller as in progress; 429 if its key already has its maximum.

        Returns what ends it (None when nothing is counted); the request's record calls it when the
        request really ends, a stream at its last byte.
        """
        return None

    def check_admin(self, headers: Headers, what: str = "/admin") -> None:
        """Raise unless the caller may use /admin/* (or `what`, named in the error: the OpenAPI document)."""

    def check_status(self, headers: Headers) -> None:
        """Raise unless the caller may read /status, /events, /debug and /metrics."""


class OpenAccess(Access):
    """No keys configured: every request is allowed (the server refuses non-loopback binds then)."""
