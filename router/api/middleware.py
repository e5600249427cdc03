"""Request ids: taken from the client or made up, returned on every response, passed upstream, logged.

A bare ASGI middleware rather than a framework one: it runs on every request, so it does the least work
that can be done (one header scan, one tuple appended).
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

_HEADER = b"x-request-id"
_SAFE_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


def request_id_of(scope: Scope) -> str:
    """The id the middleware put in the scope (for handlers and logs)."""
    return scope["state"]["request_id"]  # type: ignore[no-any-return]


# Request ids are UUID-shaped because some upstreams insist: llama-cpp-python's server answers 400 to any
# X-Request-ID that is not a UUID. A random per-process prefix plus a counter is unique and much cheaper
# than uuid4() on every request.
_PREFIX = str(uuid.uuid4())[:24].encode()
_COUNTER = itertools.count(int.from_bytes(os.urandom(5), "big"))


def _new_id() -> bytes:
    return b"%s%012x" % (_PREFIX, next(_COUNTER) & 0xFFFFFFFFFFFF)


def assign_request_id(scope: Scope) -> bytes:
    """The request's id (the client's `X-Request-ID` if it is safe to echo and pass on, else a new one),
    put in the scope for handlers and logs; returned encoded, for the response's header."""
    rid = None
    for name, value in scope["headers"]:
        if name == _HEADER:
            rid = value if _SAFE_ID.fullmatch(value) else None
            break
    rid = rid or _new_id()
    scope.setdefault("state", {})["request_id"] = rid.decode()
    return rid


def request_id_header(rid: bytes) -> tuple[bytes, bytes]:
    """The response header that returns the id (`assign_request_id`) to the client."""
    return (_HEADER, rid)


class RequestIdMiddleware:
    """Adds `X-Request-ID` to every HTTP response and exposes it as `scope['state']['request_id']`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = assign_request_id(scope)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: Any = message.setdefault("headers", [])
                if isinstance(headers, list):
                    headers.append((_HEADER, rid))
                else:
                    message["headers"] = [*headers, (_HEADER, rid)]
            await send(message)

        await self.app(scope, receive, send_with_id)
