"""The access-policy interface the HTTP layer calls before doing any work for a request.

`OpenAccess` (no keys configured) lets everything through; key-based policies raise 401/403/429
`RouterError`s. Checks take the raw ASGI headers so the common case costs no header parsing at all.
Authentication (who is it?) comes before the body is read; authorisation (may they use this route?)
once the route is known, which for `/v1/chat/completions` is only after the body named a model.
"""

from __future__ import annotations

from collections.abc import Iterable

Headers = Iterable[tuple[bytes, bytes]]


class Access:
    """Decides whether a request may proceed. The base class allows everything."""

    def authenticate(self, headers: Headers) -> str | None:
        """The caller's identity (a key's name), or None when no keys are configured; 401 if invalid."""
        return None

    def authorize(self, principal: str | None, route_path: str) -> None:
        """Raise 403 if the caller may not use the route, 429 if it is over its rate limit."""

    def check_admin(self, headers: Headers) -> None:
        """Raise unless the caller may use /admin/*."""

    def check_status(self, headers: Headers) -> None:
        """Raise unless the caller may read /status, /events and /metrics."""


class OpenAccess(Access):
    """No keys configured: every request is allowed (the server refuses non-loopback binds then)."""
