"""CORS on the chat fast path: the headers built once per table, one header lookup per request.

Browsers are a main client, and with `server.cors_allowed_origins` set every chat request used to go
through Litestar's `CORSMiddleware` (and with it the whole framework): a fifth of the throughput. The
answers it gives are fixed per table, though: for each allowed origin the same `Access-Control-*`
headers on every response, and the same preflight answer. `FastCors` builds them at load from the very
`CORSConfig` the app is given (`router.security.http.cors_config`), so the fast path answers exactly as
the middleware would, byte for byte and header for header, in the same order:

- a request without `Origin` gets no CORS headers at all;
- a response to an allowed origin gets the simple headers (`Access-Control-Expose-Headers`, and
  `Access-Control-Allow-Origin: *` when every origin is allowed), then `Access-Control-Allow-Origin:
  <origin>` with `Vary: Origin`, then `Access-Control-Allow-Headers` and `-Methods`; a disallowed origin
  gets the same without the `Allow-Origin` and `Vary` pair (the browser then refuses to hand the answer
  to the page); with `*`, a request that carries a cookie gets its own origin echoed, as Litestar does;
- an `OPTIONS` with `Origin` is a preflight: 204 with the preflight headers when the origin, the
  requested method and every requested header are allowed, else 400 `Disallowed CORS <what>` (plain text,
  no CORS headers), whatever the path.

Origins are matched as Litestar matches them: exactly, or with `*` standing for any text. Exact origins
(the usual case) are one dictionary lookup; patterns are a compiled regular expression, whose answer
headers are then built per request (a handful of tuples), never cached from client input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from litestar.config.cors import CORSConfig
from litestar.constants import DEFAULT_ALLOWED_CORS_HEADERS

Header = tuple[bytes, bytes]

_ORIGIN = b"origin"
_COOKIE = b"cookie"
_REQUEST_METHOD = b"access-control-request-method"
_REQUEST_HEADERS = b"access-control-request-headers"
_ALLOW_ORIGIN = b"access-control-allow-origin"
_VARY = (b"vary", b"Origin")
_TEXT = b"text/plain; charset=utf-8"


def _encoded(headers: Iterable[tuple[str, str]]) -> list[Header]:
    """Header pairs as Litestar's `MutableScopeHeaders` writes them: lower-case names, latin-1."""
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


class FastCors:
    """The CORS answers of one table, prepared from its `CORSConfig`; see the module docstring."""

    __slots__ = (
        "_allow_all",
        "_allowed_methods",
        "_disallowed",
        "_exact",
        "_pattern",
        "_preflight",
        "_request_headers",
        "_simple",
        "_tail",
    )

    def __init__(self, config: CORSConfig) -> None:
        if config.is_allow_all_headers or config.is_allow_all_methods or config.allow_origin_regex:
            raise ValueError("FastCors answers only explicit header and method lists and plain origins")
        self._allow_all = config.is_allow_all_origins
        # what every response to a request with an Origin gets: simple headers first, this pair last
        self._simple = _encoded(config.simple_headers.items())
        self._tail = _encoded(
            [
                ("Access-Control-Allow-Headers", ", ".join(sorted(set(config.allow_headers)))),
                ("Access-Control-Allow-Methods", ", ".join(sorted(set(config.allow_methods)))),
            ]
        )
        self._disallowed = (*self._simple, *self._tail)
        # with `*` every origin gets the same headers (its own echoed only with a cookie): no exact ones
        exact = [] if self._allow_all else [origin for origin in config.allow_origins if "*" not in origin]
        self._exact = {
            origin.encode("latin-1"): (
                *self._simple,
                (_ALLOW_ORIGIN, origin.encode("latin-1")),
                _VARY,
                *self._tail,
            )
            for origin in exact
        }
        patterns = [] if self._allow_all else [origin for origin in config.allow_origins if "*" in origin]
        self._pattern = (
            re.compile("|".join(re.escape(origin).replace(r"\*", ".*") for origin in patterns))
            if patterns
            else None
        )
        self._preflight = _encoded(config.preflight_headers.items())
        self._allowed_methods = frozenset(config.allow_methods)
        self._request_headers = frozenset(config.allow_headers) | {
            name.lower() for name in DEFAULT_ALLOWED_CORS_HEADERS
        }

    @classmethod
    def of(cls, config: CORSConfig | None) -> FastCors | None:
        """The fast answers for `config`; None without CORS (nothing to add to any answer)."""
        return None if config is None else cls(config)

    @staticmethod
    def origin(headers: Sequence[tuple[bytes, bytes]]) -> bytes | None:
        """The request's first `Origin` header (None when absent or empty: no CORS then)."""
        for name, value in headers:
            if name == _ORIGIN:
                return value or None
        return None

    def answer_headers(self, headers: Sequence[tuple[bytes, bytes]]) -> tuple[Header, ...]:
        """What to add to the response to a request with these headers (nothing without an Origin)."""
        origin = None
        cookie = False
        for name, value in headers:
            if name == _ORIGIN:
                if origin is None:
                    origin = value
            elif name == _COOKIE:
                cookie = True
        if not origin:
            return ()
        found = self._exact.get(origin)
        if found is not None:
            return found
        if self._allow_all:
            if not cookie:
                return self._disallowed  # the simple headers carry `Access-Control-Allow-Origin: *`
            echoed = [
                (name, origin) if name == _ALLOW_ORIGIN else (name, value) for name, value in self._simple
            ]
            return (*echoed, _VARY, *self._tail)
        if self._matches(origin):
            return (*self._simple, (_ALLOW_ORIGIN, origin), _VARY, *self._tail)
        return self._disallowed

    def _matches(self, origin: bytes) -> bool:
        return self._pattern is not None and self._pattern.fullmatch(origin.decode("latin-1")) is not None

    def allows(self, origin: bytes) -> bool:
        """Whether `origin` is allowed (Litestar's `is_origin_allowed`)."""
        return self._allow_all or origin in self._exact or self._matches(origin)

    async def preflight(self, scope: Any, send: Any, origin: bytes) -> None:
        """Answer an `OPTIONS` with `Origin` as Litestar's `CORSMiddleware` does (the module docstring)."""
        method = header = None
        for name, value in scope["headers"]:
            if name == _REQUEST_METHOD:
                method = method if method is not None else value
            elif name == _REQUEST_HEADERS:
                header = header if header is not None else value
        failures = []
        if method and method.decode("latin-1") not in self._allowed_methods:
            failures.append("method")
        allowed = self.allows(origin)
        if not allowed:
            failures.append("Origin")
        if header:
            requested = [part.strip() for part in header.decode("latin-1").split(",")]
            if any(part and part.lower() not in self._request_headers for part in requested):
                failures.append("headers")
        if failures:
            body = f"Disallowed CORS {', '.join(failures)}".encode()
            headers = [(b"content-type", _TEXT), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 400, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        headers = list(self._preflight)
        if not self._allow_all:
            headers.append((_ALLOW_ORIGIN, origin))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
