"""The HTTP-facing parts of security the app factory plugs in: the CORS allowlist and error redaction."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from litestar.config.cors import CORSConfig

from router.errors import RouterError

CORS_ALLOWED_HEADERS = ["authorization", "x-api-key", "content-type", "x-request-id", "x-session-id"]
CORS_EXPOSED_HEADERS = ["x-request-id", "x-router-route", "x-router-upstream", "retry-after"]


def cors_config(origins: Sequence[str]) -> CORSConfig | None:
    """Litestar's CORS for exactly `server.cors_allowed_origins`; none listed: no CORS headers at all.

    Credentials (cookies) are not allowed: clients authenticate with a header, which browsers only send
    cross-origin after a preflight this configuration answers.
    """
    if not origins:
        return None
    return CORSConfig(
        allow_origins=list(origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=CORS_ALLOWED_HEADERS,
        expose_headers=CORS_EXPOSED_HEADERS,
        allow_credentials=False,
        max_age=600,
    )


Handler = Callable[[Any, Any], Any]


def redacting_handlers(
    handlers: Mapping[type[Exception], Handler], redact: Callable[[str], str] | None
) -> dict[type[Exception], Handler]:
    """The exception handlers, masking known secrets in a RouterError's message before it is answered."""
    if redact is None:
        return dict(handlers)
    mask = redact

    def wrap(handler: Handler) -> Handler:
        def handle(request: Any, exc: Any) -> Any:
            if isinstance(exc, RouterError):
                exc.message = mask(exc.message)
            return handler(request, exc)

        return handle

    return {kind: wrap(handler) for kind, handler in handlers.items()}
