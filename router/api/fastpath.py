"""The chat routes served straight from ASGI, skipping the framework's per-request machinery.

Chat requests are the product: every microsecond spent on them is paid on every request. Litestar still
builds and documents these routes (they are in the app and its OpenAPI document, and serve any request
this path declines), but a plain `POST` to a route path or to `/v1/chat/completions` is handed to
`handle_chat` here with nothing in between: no request object, no routing trie, no handler signature
model, no middleware. Profiles of a relay at 50 clients put that machinery at about a tenth of the
router's time. Errors come out exactly as the app's exception handlers would write them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from litestar.response.base import ASGIResponse

from router.api.chat import ChatServices, Resolve, handle_chat
from router.errors import RouterError

log = logging.getLogger("router.api")
_CONTENT_LENGTH = b"content-length"


class BodyTooLarge(RouterError):
    """413, worded as the app words it."""

    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RawRequest:
    """What `handle_chat` needs of a request: its ASGI scope and its body, read once, bounded."""

    __slots__ = ("_limit", "_receive", "scope")

    def __init__(self, scope: Any, receive: Any, limit: int) -> None:
        self.scope = scope
        self._receive = receive
        self._limit = limit

    async def body(self) -> bytes:
        """The whole body; 413 as soon as it is known to exceed the limit."""
        for name, value in self.scope["headers"]:
            if name == _CONTENT_LENGTH and value.isdigit() and int(value) > self._limit:
                raise _too_large()
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] != "http.request":
                raise RouterError("the client went away while sending its request", status=400)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._limit:
                raise _too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large() -> BodyTooLarge:
    return BodyTooLarge("the request body is larger than the router accepts (server.max_body_bytes)")


class ChatFastPath:
    """Finds the chat handler for a request, or declines (None) so the app serves it."""

    def __init__(
        self,
        resolvers: dict[str, Resolve],
        services: ChatServices,
        max_body: int,
        redact: Callable[[str], str] | None,
    ) -> None:
        self.resolvers = resolvers
        self.services = services
        self.max_body = max_body
        self.redact = redact

    def match(self, scope: Any) -> Resolve | None:
        """The route resolver for a POST to a chat path; None for anything else."""
        if scope["method"] != "POST":
            return None
        return self.resolvers.get(scope["path"])

    async def serve(self, scope: Any, receive: Any, send: Any, resolve: Resolve) -> None:
        """Answer one chat request; every failure becomes the same OpenAI error the app would send."""
        try:
            response = await handle_chat(RawRequest(scope, receive, self.max_body), self.services, resolve)
        except RouterError as error:
            response = self._error(error)
        except Exception:
            log.exception("unexpected error on POST %s", scope["path"])
            response = self._error(
                RouterError(
                    "the router failed unexpectedly; the error is logged", status=500, code="internal_error"
                )
            )
        await response(scope, receive, send)

    def _error(self, error: RouterError) -> ASGIResponse:
        if self.redact is not None:
            error.message = self.redact(error.message)
        return ASGIResponse(
            body=error.encode(),
            status_code=error.status,
            media_type="application/json",
            headers=error.headers(),
        )
