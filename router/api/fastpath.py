"""The chat routes served straight from ASGI, skipping the framework's per-request machinery.

Chat requests are the product: every microsecond spent on them is paid on every request. Litestar still
builds and documents these routes (they are in the app and its OpenAPI document, and serve any request
this path declines), but a plain `POST` to a front door (a route path, `/v1/chat/completions`, and every
other dialect's door: the table `router.app.front_doors`) is handed to `handle_chat` here with nothing in
between: no request object, no routing trie, no handler signature
model, no middleware; profiles of the router under load showed that machinery as a sizeable share of
its time (README, Performance). Errors come out of the same writer as the app's
(`router.api.errors.error_reply`), in the door's dialect.

CORS (`server.cors_allowed_origins`) is answered here too, from headers built once per table
(`router.security.cors.FastCors`): a preflight to a front door is answered at once, and every answer
(whole, streamed, or an error) gets its `Access-Control-*` headers added to the same start message; one
scan of the request's headers is all a request pays for it. Litestar's `CORSMiddleware` still answers
whatever the fast path declines, alike.
"""

from __future__ import annotations

from typing import Any

from litestar.response.base import ASGIResponse

from router.api.chat import ChatServices, WholeAnswer, handle_chat
from router.api.errors import error_reply
from router.api.middleware import RequestIdMiddleware, assign_request_id, request_id_header
from router.dialects.base import Door
from router.errors import BodyTooLarge, Redact, RouterError
from router.security.cors import FastCors

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

    def __init__(
        self,
        doors: dict[str, Door],
        services: ChatServices,
        max_body: int,
        redact: Redact,
        cors: FastCors | None = None,
    ) -> None:
        self.doors = doors
        self.services = services
        self.max_body = max_body
        self.redact = redact
        self.cors = cors  # None: CORS is off (no Access-Control-* headers at all)
        self._preflight = RequestIdMiddleware(self._answer_preflight)  # rare: the app's way is fine

    def match(self, scope: Any) -> Door | None:
        """The front door of a POST to a chat path (or of a CORS preflight to one); None for anything else."""
        method = scope["method"]
        if method == "POST":
            return self.doors.get(scope["path"])
        if method == "OPTIONS" and self.cors is not None and self.cors.origin(scope["headers"]) is not None:
            return self.doors.get(scope["path"])
        return None

    async def serve(self, scope: Any, receive: Any, send: Any, door: Door) -> None:
        """Answer one chat request; every failure becomes the same error the app would send.

        The request id is assigned and returned here, in the answer's own headers, rather than by
        `RequestIdMiddleware` around it (a layer and a wrapped `send` on every message of every stream).
        """
        cors = self.cors
        if cors is not None and scope["method"] == "OPTIONS":
            await self._preflight(scope, receive, send)
            return
        rid = assign_request_id(scope)
        try:
            response = await handle_chat(RawRequest(scope, receive, self.max_body), self.services, door)
        except Exception as error:
            reply = error_reply(error, self.redact, "POST", scope["path"], door.dialect.errors)
            response = ASGIResponse(
                body=reply.body, status_code=reply.status, media_type=reply.media_type, headers=reply.headers
            )
        headers = _raw_headers(response)
        if cors is not None:
            extra = cors.answer_headers(scope["headers"])
            if extra:  # after the answer's own headers, as Litestar's middleware puts them
                headers.extend(extra)
        headers.append(request_id_header(rid))  # last, where the middleware puts it on the app's answers
        await response(scope, receive, send)

    async def _answer_preflight(self, scope: Any, receive: Any, send: Any) -> None:
        cors = self.cors
        origin = cors.origin(scope["headers"]) if cors is not None else None
        assert cors is not None and origin is not None, "match() hands over preflights only"
        await cors.preflight(scope, send, origin)


def _raw_headers(response: Any) -> list[tuple[bytes, bytes]]:
    """The raw header list a response will send: a whole answer keeps it bare (`WholeAnswer.headers`),
    Litestar's responses and the event streams inside their header container."""
    if isinstance(response, WholeAnswer):
        return response.headers
    return response.headers.headers  # type: ignore[no-any-return]
