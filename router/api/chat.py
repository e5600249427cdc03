"""Answering one chat request: authenticate, parse, resolve the route, dispatch, reply whole or streamed.

Handlers hand over the request and its front door (`router.dialects.base.Door`: the client's dialect and
a way to find the route), and get back a ready ASGI response. The dialect translates the request into
the internal model (OpenAI chat) and the answer back; everything in between is the same for all.
Responses are low-level ASGI apps with pre-encoded bodies (a whole answer's bare `WholeAnswer`, a stream's
`router.streaming.SSEStreamBody`), because the answer is already JSON bytes from the upstream: encoding it
again would be work for nothing on every request. What the
request holds lives in one `Exchange`, which every way out ends (once): the handler's error paths, the
whole answer once sent, the stream's relay and response.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from litestar.types import ASGIApp

from router.api.exchange import Exchange, Sessions, Turn, TurnSavingStream, whole_answer_head
from router.api.middleware import request_id_of
from router.dialects.base import ClientDialect, Door, Inbound, Resolve
from router.dispatch import Attempt, dispatch
from router.errors import InvalidRequest, Redact, RouterError
from router.observability import Observer
from router.observability.telemetry import Telemetry
from router.registry import Registry
from router.resume import ResumingStream
from router.security import Access
from router.streaming import SSEResponse
from router.table import Route
from router.upstreams.base import AnswerStats, ChatCall, EventStream, Limits, UpstreamAdapter

SESSION_HEADER = b"x-session-id"

__all__ = ["ChatServices", "Door", "Incoming", "Resolve", "Sessions", "WholeAnswer", "answer", "handle_chat"]


@dataclass(frozen=True, slots=True)
class ChatServices:
    """What answering needs besides the route: live state, access policy, observers, sessions."""

    registry: Registry
    observer: Observer
    access: Access
    redact: Redact  # masks known secrets in the error events of streams (`Redactor()` masks nothing)
    sessions: Sessions | None = None
    admit: Callable[[str | None], Awaitable[None]] | None = None  # shared rate limits (router.state)
    telemetry: Telemetry | None = None  # tracing: its `tracer` is None when off (decided per table)
    quota: Callable[[str | None], Awaitable[None]] | None = None  # daily quotas (router.state.usage)


class Incoming(Protocol):
    """What answering needs of an HTTP request: Litestar's `Request`, or the fast path's bare one."""

    @property
    def scope(self) -> Any: ...

    async def body(self) -> bytes: ...


async def handle_chat(request: Incoming, services: ChatServices, door: Door) -> ASGIApp:
    """The whole life of a chat request up to its response; its exchange is ended on every path.

    Errors are raised (as they are): the caller writes them in `door.dialect.errors`' shape.
    """
    scope = request.scope
    exchange = Exchange(request_id_of(scope), services.observer)
    record = exchange.record
    telemetry = services.telemetry
    tracer = telemetry.tracer if telemetry is not None else None
    if tracer is not None:
        exchange.trace = tracer.start(scope["headers"], record, scope["path"])
    dialect = door.dialect
    record.dialect = dialect.name
    try:
        headers = scope["headers"]
        record.principal = services.access.authenticate(headers)
        record.release = services.access.begin(record.principal)  # 429 past the key's max_concurrency
        inbound = dialect.parse(await request.body(), headers)
        parsed = inbound.request
        route = door.resolve(parsed)
        record.route, record.model, record.stream = route.path, route.model, parsed.stream
        if exchange.trace is not None:
            exchange.trace.resolved(route, parsed)
        services.access.authorize(record.principal, route.path)
        if _ROUTE_KIND[dialect.kind] != route.config.kind:
            raise _wrong_kind(route, dialect.kind)
        if services.admit is not None:
            await services.admit(record.principal)
        if services.quota is not None:  # requests_per_day / tokens_per_day (router.state.usage)
            await services.quota(record.principal)
        record.admitted = True
        sessions = services.sessions
        if inbound.context is not None:  # a dialect's own stored conversations (Responses)
            await dialect.join_conversation(inbound, sessions, record.principal)
        # with sessions off, a session id costs nothing and changes nothing; only chat has messages
        if sessions is not None and dialect.kind == "chat":
            session_id = parsed.session_id or _header(headers, SESSION_HEADER)
            if session_id:
                body = inbound.body
                sent = body["messages"]
                past = await sessions.history(session_id, record.principal)
                inbound.body = {**body, "messages": [*past, *sent]}
                exchange.turn = Turn(sessions, session_id, record.principal, sent)
        exchange.messages = prompt_messages(inbound.body)
        return await answer(route, inbound, dialect, exchange, services)
    except RouterError as error:
        exchange.end(error, error.status)
        raise
    except asyncio.CancelledError as error:
        exchange.end(error, 499)
        raise
    except Exception as error:
        exchange.end(error, 500)
        raise


def _header(headers: Any, name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1") or None
    return None


# Plain functions returning the adapter's own coroutine (awaited by `dispatch`): no coroutine of their own.
def _complete(
    adapter: UpstreamAdapter, call: ChatCall, limits: Limits
) -> Awaitable[tuple[bytes, AnswerStats]]:
    return adapter.complete(call, limits)


def _open_stream(
    adapter: UpstreamAdapter, call: ChatCall, limits: Limits
) -> Awaitable[tuple[EventStream, list[bytes]]]:
    return adapter.open_stream(call, limits)


def _complete_text(
    adapter: UpstreamAdapter, call: ChatCall, limits: Limits
) -> Awaitable[tuple[bytes, AnswerStats]]:
    return adapter.complete_text(call, limits)


def _open_text_stream(
    adapter: UpstreamAdapter, call: ChatCall, limits: Limits
) -> Awaitable[tuple[EventStream, list[bytes]]]:
    return adapter.open_text_stream(call, limits)


def _embed(adapter: UpstreamAdapter, call: ChatCall, limits: Limits) -> Awaitable[tuple[bytes, AnswerStats]]:
    return adapter.embed(call, limits)


# A dialect's call kind -> the adapter calls for a whole and a streamed answer (embeddings never stream:
# their dialects parse `stream` as false), and the route kind that serves it.
_ATTEMPTS: dict[str, tuple[Attempt[tuple[bytes, AnswerStats]], Attempt[tuple[EventStream, list[bytes]]]]] = {
    "chat": (_complete, _open_stream),
    "completions": (_complete_text, _open_text_stream),
    "embeddings": (_embed, _open_stream),
}
_ROUTE_KIND = {"chat": "chat", "completions": "chat", "embeddings": "embeddings"}
_ASKED = {
    "chat": "a chat request",
    "completions": "a text completion request",
    "embeddings": "an embeddings request",
}


def _wrong_kind(route: Route, kind: str) -> InvalidRequest:
    """400: the route serves the other kind of call (an embeddings model cannot chat, and the reverse)."""
    if route.config.kind == "embeddings":
        what = "embeddings only: send an `input` to POST /v1/embeddings (or to the route's own path)"
    else:
        what = "chat: send chat requests to /v1/chat/completions, text completions to /v1/completions"
    return InvalidRequest(
        f"{_ASKED[kind]} cannot be served by route {route.path} (model {route.model}), which serves {what}",
        param="model",
        code="wrong_route_kind",
    )


async def answer(
    route: Route, inbound: Inbound, dialect: ClientDialect, exchange: Exchange, services: ChatServices
) -> ASGIApp:
    """The response for `inbound` on `route` (or on one of its fallbacks the caller may use), in `dialect`."""
    request, body = inbound.request, inbound.body
    record = exchange.record
    collect = exchange.turn is not None
    allowed = services.access.allowed_routes(record.principal) if route.fallbacks else None
    registry = services.registry
    whole, streamed = _ATTEMPTS[dialect.kind]
    if request.stream:
        (stream, first), lease = await dispatch(
            route,
            request,
            body,
            record.request_id,
            registry,
            streamed,
            record,
            allowed,
            collect,
            trace=exchange.trace,
        )
        record.first_token_at = time.perf_counter()
        policy = lease.route.config.policy
        if route.resume is not None and dialect.kind == "chat":  # a break after the first byte goes on
            stream = ResumingStream(
                stream, first, lease, route, request, body, exchange, registry, streamed, allowed, collect
            )
        headers = exchange.serve(lease, stream.stats)
        if exchange.turn is not None:
            stream = TurnSavingStream(stream, exchange)
        encoder = dialect.stream(inbound)
        return SSEResponse(
            stream, first, policy, exchange.end, headers, services.redact, encoder, dialect.errors
        )
    (data, stats), lease = await dispatch(
        route,
        request,
        body,
        record.request_id,
        registry,
        whole,
        record,
        allowed,
        collect,
        trace=exchange.trace,
    )
    headers = exchange.serve(lease, stats)
    try:
        await exchange.save_turn()
        answered = dialect.answer(data, inbound)
        await dialect.settle(inbound)
    finally:
        exchange.upstream_done(None)
    return WholeAnswer(answered, headers, exchange)


class WholeAnswer:
    """A complete answer whose exchange ends once the client has it.

    Logging and metrics then happen after the answer left, not on the client's clock: at one client that
    is a visible part of the latency the router adds. A bare ASGI app with its head built at once
    (`whole_answer_head`): the same status and headers Litestar's `ASGIResponse` sends, without its
    header container, which was about a quarter of the router's own work on a whole answer.
    """

    __slots__ = ("body", "exchange", "headers")

    def __init__(self, body: bytes, headers: dict[str, str], exchange: Exchange) -> None:
        self.body = body
        self.headers = whole_answer_head(headers, len(body))
        self.exchange = exchange

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.headers})
            await send({"type": "http.response.body", "body": self.body, "more_body": False})
        finally:
            self.exchange.end(None)


def prompt_messages(body: dict[str, Any]) -> list[Any]:
    """What a request sends as its prompt, as messages, for a token estimate when the upstream gives no
    count: a chat's `messages`, a completion's `prompt` (or prompts), an embedding's `input`."""
    messages = body.get("messages")
    if isinstance(messages, list):
        return messages
    text = body.get("prompt", body.get("input"))
    texts = text if isinstance(text, list) else [text]
    return [{"content": item} for item in texts if isinstance(item, str)]
