"""The HTTP-facing part of security the app factory plugs in: the CORS allowlist.

Error messages are masked where they are written, by `router.errors.encode_error`.
"""

from __future__ import annotations

from collections.abc import Sequence

from litestar.config.cors import CORSConfig

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
