"""Answering one chat request: authenticate, parse, resolve the route, dispatch, reply whole or streamed.

Handlers hand over the request and a way to find its route, and get back a ready ASGI response.
Responses are Litestar's low-level ASGI responses with pre-encoded bodies, because the answer is already
JSON bytes from the upstream: encoding it again would be work for nothing on every request. What the
request holds lives in one `Exchange`, which every way out ends (once): the handler's error paths, the
whole answer once sent, the stream's relay and response.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from litestar.response.base import ASGIResponse

from router.api.exchange import Exchange, Sessions, Turn, TurnSavingStream
from router.api.middleware import request_id_of
from router.dispatch import dispatch
from router.errors import Redact, RouterError
from router.observability import Observer
from router.protocol.openai_chat import ChatRequest, parse_chat_request
from router.registry import Registry
from router.security import Access
from router.streaming import SSEResponse
from router.table import Route
from router.upstreams.base import AnswerStats, ChatCall, EventStream, Limits, UpstreamAdapter

SESSION_HEADER = b"x-session-id"

__all__ = ["ChatServices", "Incoming", "Resolve", "Sessions", "WholeAnswer", "answer", "handle_chat"]


@dataclass(frozen=True, slots=True)
class ChatServices:
    """What answering needs besides the route: live state, access policy, observers, sessions."""

    registry: Registry
    observer: Observer
    access: Access
    redact: Redact  # masks known secrets in the error events of streams (`Redactor()` masks nothing)
    sessions: Sessions | None = None
    admit: Callable[[str | None], Awaitable[None]] | None = None  # shared rate limits (router.state)
    quota: Callable[[str | None], Awaitable[None]] | None = None  # daily quotas (router.state.usage)


Resolve = Callable[[ChatRequest], Route]


class Incoming(Protocol):
    """What answering needs of an HTTP request: Litestar's `Request`, or the fast path's bare one."""

    @property
    def scope(self) -> Any: ...

    async def body(self) -> bytes: ...


async def handle_chat(request: Incoming, services: ChatServices, resolve: Resolve) -> ASGIResponse:
    """The whole life of a chat request up to its response; its exchange is ended on every path."""
    scope = request.scope
    exchange = Exchange(request_id_of(scope), services.observer)
    record = exchange.record
    try:
        record.principal = services.access.authenticate(scope["headers"])
        record.release = services.access.begin(record.principal)  # 429 past the key's max_concurrency
        parsed, body = parse_chat_request(await request.body())
        route = resolve(parsed)
        record.route, record.model, record.stream = route.path, route.model, parsed.stream
        services.access.authorize(record.principal, route.path)
        if services.admit is not None:
            await services.admit(record.principal)
        if services.quota is not None:  # requests_per_day / tokens_per_day (router.state.usage)
            await services.quota(record.principal)
        record.admitted = True
        sessions = services.sessions
        if sessions is not None:  # with sessions off, a session id costs nothing and changes nothing
            session_id = parsed.session_id or _header(scope["headers"], SESSION_HEADER)
            if session_id:
                sent = body["messages"]
                past = await sessions.history(session_id, record.principal)
                body = {**body, "messages": [*past, *sent]}
                exchange.turn = Turn(sessions, session_id, record.principal, sent)
        exchange.messages = body["messages"]
        return await answer(route, parsed, body, exchange, services)
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


async def _complete(adapter: UpstreamAdapter, call: ChatCall, limits: Limits) -> tuple[bytes, AnswerStats]:
    return await adapter.complete(call, limits)


async def _open_stream(
    adapter: UpstreamAdapter, call: ChatCall, limits: Limits
) -> tuple[EventStream, list[bytes]]:
    return await adapter.open_stream(call, limits)


async def answer(
    route: Route, request: ChatRequest, body: dict[str, Any], exchange: Exchange, services: ChatServices
) -> ASGIResponse:
    """The response for `request` on `route` (or on one of its fallbacks the caller may use)."""
    record = exchange.record
    collect = exchange.turn is not None
    allowed = services.access.allowed_routes(record.principal) if route.fallbacks else None
    registry = services.registry
    if request.stream:
        (stream, first), lease = await dispatch(
            route, request, body, record.request_id, registry, _open_stream, record, allowed, collect
        )
        record.first_token_at = time.perf_counter()
        headers = exchange.serve(lease, stream.stats)
        if exchange.turn is not None:
            stream = TurnSavingStream(stream, exchange)
        return SSEResponse(stream, first, lease.route.config.policy, exchange.end, headers, services.redact)
    (data, stats), lease = await dispatch(
        route, request, body, record.request_id, registry, _complete, record, allowed, collect
    )
    headers = exchange.serve(lease, stats)
    try:
        await exchange.save_turn()
    finally:
        exchange.upstream_done(None)
    return WholeAnswer(data, headers, exchange)


class WholeAnswer(ASGIResponse):
    """A complete answer whose exchange ends once the client has it.

    Logging and metrics then happen after the answer left, not on the client's clock: at one client that
    is a visible part of the latency the router adds.
    """

    def __init__(self, body: bytes, headers: dict[str, str], exchange: Exchange) -> None:
        super().__init__(body=body, media_type="application/json", headers=headers)
        self.exchange = exchange

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.exchange.end(None)
