"""Answering one chat request: authenticate, parse, resolve the route, dispatch, reply whole or streamed.

Handlers hand over the request and a way to find its route, and get back a ready ASGI response.
Responses are Litestar's low-level ASGI responses with pre-encoded bodies, because the answer is already
JSON bytes from the upstream: encoding it again would be work for nothing on every request. Everything
the request did is written into one `RequestRecord`, finished exactly once, when the answer really ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from litestar.response.base import ASGIResponse

from router.api.middleware import request_id_of
from router.api.request import ChatRequest, parse_chat_request
from router.dispatch import Lease, dispatch
from router.errors import RouterError
from router.observability import Observer, RequestRecord
from router.registry import Registry
from router.security import Access
from router.streaming import SSEResponse
from router.table import Route
from router.upstreams.base import AnswerStats, ChatCall, EventStream, Limits, UpstreamAdapter

SESSION_HEADER = b"x-session-id"


class Sessions(Protocol):
    """Server-side conversations (see `router.sessions`): history in, the finished turn out."""

    def history(self, session_id: str, owner: str | None) -> list[dict[str, Any]]:
        """The stored messages of a session (empty for a new one); RouterError if not the owner's."""
        ...

    def record_turn(
        self, session_id: str, owner: str | None, sent: list[dict[str, Any]], answer: str, interrupted: bool
    ) -> None:
        """Append what the client sent and what the model answered (partially, when interrupted)."""
        ...


@dataclass(frozen=True, slots=True)
class ChatServices:
    """What answering needs besides the route: live state, access policy, observers, sessions."""

    registry: Registry
    observer: Observer
    access: Access
    sessions: Sessions | None = None
    redact: Callable[[str], str] | None = None  # masks known secrets in error events of streams


Resolve = Callable[[ChatRequest], Route]


class Incoming(Protocol):
    """What answering needs of an HTTP request: Litestar's `Request`, or the fast path's bare one."""

    @property
    def scope(self) -> Any: ...

    async def body(self) -> bytes: ...


async def handle_chat(request: Incoming, services: ChatServices, resolve: Resolve) -> ASGIResponse:
    """The whole life of a chat request up to its response; the record is finished on every path."""
    scope = request.scope
    record = RequestRecord(request_id_of(scope), services.observer)
    try:
        record.principal = services.access.authenticate(scope["headers"])
        record.release = services.access.begin(record.principal)  # 429 past the key's max_concurrency
        parsed, body = parse_chat_request(await request.body())
        route = resolve(parsed)
        record.route, record.model, record.stream = route.path, route.model, parsed.stream
        services.access.authorize(record.principal, route.path)
        turn = None
        sessions = services.sessions
        if sessions is not None:  # with sessions off, a session id costs nothing and changes nothing
            session_id = parsed.session_id or _header(scope["headers"], SESSION_HEADER)
            if session_id:
                sent = body["messages"]
                body = {**body, "messages": [*sessions.history(session_id, record.principal), *sent]}
                turn = _Turn(sessions, session_id, record.principal, sent)
        return await answer(route, parsed, body, record, services, turn)
    except RouterError as error:
        record.retries = error.retries
        record.finish(error.status, error)
        raise
    except asyncio.CancelledError as error:
        record.finish(499, error)
        raise
    except Exception as error:
        record.finish(500, error)
        raise


def _header(headers: Any, name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1") or None
    return None


@dataclass(slots=True)
class _Turn:
    """A session turn waiting for its answer."""

    sessions: Sessions | None
    session_id: str
    owner: str | None
    sent: list[dict[str, Any]]

    def close(self, stats: AnswerStats, interrupted: bool) -> None:
        if self.sessions is not None:
            answer = "".join(stats.text or ())
            self.sessions.record_turn(self.session_id, self.owner, self.sent, answer, interrupted)


async def _complete(adapter: UpstreamAdapter, call: ChatCall, limits: Limits) -> tuple[bytes, AnswerStats]:
    return await adapter.complete(call, limits)


async def _open_stream(
    adapter: UpstreamAdapter, call: ChatCall, limits: Limits
) -> tuple[EventStream, list[bytes]]:
    return await adapter.open_stream(call, limits)


def _served_by(lease: Lease, record: RequestRecord) -> dict[str, str]:
    record.upstream, record.route, record.retries = lease.upstream_name, lease.route.path, lease.retries
    return {"X-Router-Route": lease.route.path, "X-Router-Upstream": lease.upstream_name}


def _take(record: RequestRecord, stats: AnswerStats) -> None:
    record.prompt_tokens, record.completion_tokens = stats.prompt_tokens, stats.completion_tokens


async def answer(
    route: Route,
    request: ChatRequest,
    body: dict[str, Any],
    record: RequestRecord,
    services: ChatServices,
    turn: _Turn | None = None,
) -> ASGIResponse:
    """The response for `request` on `route` (or on one of its fallbacks)."""
    collect = turn is not None
    if request.stream:
        (stream, first), lease = await dispatch(
            route, request, body, record.request_id, services.registry, _open_stream, collect_text=collect
        )
        record.first_token_at = time.perf_counter()
        headers = _served_by(lease, record)

        def on_end(error: BaseException | None) -> None:
            lease.finish(error)
            _take(record, stream.stats)
            record.finish(200, error)
            if turn is not None:
                turn.close(stream.stats, interrupted=error is not None)
                turn.sessions = None  # once

        return SSEResponse(stream, first, lease.route.config.policy, on_end, headers, services.redact)
    (data, stats), lease = await dispatch(
        route, request, body, record.request_id, services.registry, _complete, collect_text=collect
    )
    lease.finish(None)
    headers = _served_by(lease, record)
    _take(record, stats)
    if turn is not None:
        turn.close(stats, interrupted=False)
    return WholeAnswer(data, headers, record)


class WholeAnswer(ASGIResponse):
    """A complete answer whose request record is finished once the client has it.

    Logging and metrics then happen after the answer left, not on the client's clock: at one client that
    is a visible part of the latency the router adds.
    """

    def __init__(self, body: bytes, headers: dict[str, str], record: RequestRecord) -> None:
        super().__init__(body=body, media_type="application/json", headers=headers)
        self.record = record

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.record.finish(200, None)
