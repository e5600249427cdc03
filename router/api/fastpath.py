"""The chat routes served straight from ASGI, skipping the framework's per-request machinery.

Chat requests are the product: every microsecond spent on them is paid on every request. Litestar still
builds and documents these routes (they are in the app and its OpenAPI document, and serve any request
this path declines), but a plain `POST` to a front door (a route path, `/v1/chat/completions`, and every
other dialect's door: the table `router.app.front_doors`) is handed to `handle_chat` here with nothing in
between: no request object, no routing trie, no handler signature
model, no middleware; profiles of the router under load showed that machinery as a sizeable share of
its time (README, Performance). Errors come out of the same writer as the app's
(`router.api.errors.error_reply`), in the door's dialect.
"""

from __future__ import annotations

from typing import Any

from litestar.response.base import ASGIResponse

from router.api.chat import ChatServices, handle_chat
from router.api.errors import error_reply
from router.dialects.base import Door
from router.errors import BodyTooLarge, Redact, RouterError

_CONTENT_LENGTH = b"content-length"


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
                raise BodyTooLarge()
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] != "http.request":
                raise RouterError("the client went away while sending its request", status=400)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._limit:
                raise BodyTooLarge()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class ChatFastPath:
    """Finds the front door of a request, or declines (None) so the app serves it."""

    def __init__(self, doors: dict[str, Door], services: ChatServices, max_body: int, redact: Redact) -> None:
        self.doors = doors
        self.services = services
        self.max_body = max_body
        self.redact = redact

    def match(self, scope: Any) -> Door | None:
        """The front door of a POST to a chat path; None for anything else."""
        if scope["method"] != "POST":
            return None
        return self.doors.get(scope["path"])

    async def serve(self, scope: Any, receive: Any, send: Any, door: Door) -> None:
        """Answer one chat request; every failure becomes the same error the app would send."""
        try:
            response = await handle_chat(RawRequest(scope, receive, self.max_body), self.services, door)
        except Exception as error:
            reply = error_reply(error, self.redact, "POST", scope["path"], door.dialect.errors)
            response = ASGIResponse(
                body=reply.body, status_code=reply.status, media_type=reply.media_type, headers=reply.headers
            )
        await response(scope, receive, send)
