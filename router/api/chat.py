"""Answering one chat request: authenticate, parse, resolve the route, dispatch, reply whole or streamed.

Handlers hand over the request and a way to find its route, and get back a ready ASGI response.
Responses are Litestar's low-level ASGI responses with pre-encoded bodies, because the answer is already
JSON bytes from the upstream: encoding it again would be work for nothing on every request. Everything
the request did is written into one `RequestRecord`, finished exactly once, when the answer really ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
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

log = logging.getLogger("router.sessions")


class Sessions(Protocol):
    """Server-side conversations (see `router.sessions`, `router.state`): history in, the finished turn out.

    Awaited, because the store may be shared between processes (Redis): a RouterError (503) then says the
    shared store cannot be reached, and the turn is refused rather than answered without its history.
    """

    async def history(self, session_id: str, owner: str | None) -> list[dict[str, Any]]:
        """The stored messages of a session (empty for a new one); RouterError if not the owner's."""
        ...

    async def record_turn(
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
    admit: Callable[[str | None], Awaitable[None]] | None = None  # shared rate limits (router.state)


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
        parsed, body = parse_chat_request(await request.body())
        route = resolve(parsed)
        record.route, record.model, record.stream = route.path, route.model, parsed.stream
        services.access.authorize(record.principal, route.path)
        if services.admit is not None:
            await services.admit(record.principal)
        turn = None
        sessions = services.sessions
        if sessions is not None:  # with sessions off, a session id costs nothing and changes nothing
            session_id = parsed.session_id or _header(scope["headers"], SESSION_HEADER)
            if session_id:
                sent = body["messages"]
                past = await sessions.history(session_id, record.principal)
                body = {**body, "messages": [*past, *sent]}
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

    async def save(self, stats: AnswerStats) -> None:
        """Store a complete turn before the client has the end of the answer, so its next turn, on any
        process, finds it; a failure reaches the client (503, or an error event) instead of forking it."""
        sessions, self.sessions = self.sessions, None  # once
        if sessions is not None:
            answer = "".join(stats.text or ())
            await sessions.record_turn(self.session_id, self.owner, self.sent, answer, False)

    def close(self, stats: AnswerStats, interrupted: bool) -> None:
        """Store what there is of an answer that did not end cleanly (in the background: nobody waits)."""
        sessions, self.sessions = self.sessions, None
        if sessions is not None:
            answer = "".join(stats.text or ())
            record = sessions.record_turn(self.session_id, self.owner, self.sent, answer, interrupted)
            task = asyncio.get_running_loop().create_task(_logged(record, self.session_id))
            _BACKGROUND.add(task)
            task.add_done_callback(_BACKGROUND.discard)


_BACKGROUND: set[asyncio.Task[None]] = set()


async def _logged(record: Awaitable[None], session_id: str) -> None:
    try:
        await record
    except Exception as error:
        log.warning("session %s: interrupted turn not recorded: %s", session_id, error)


class _SavingStream(EventStream):
    """A stream whose clean end first stores the session turn, so `[DONE]` means "saved" too."""

    def __init__(self, inner: EventStream, turn: _Turn) -> None:
        self.inner, self.turn, self.stats = inner, turn, inner.stats

    async def read(self) -> list[bytes] | None:
        batch = await self.inner.read()
        if batch is None:
            await self.turn.save(self.stats)
        return batch

    def close(self) -> None:
        self.inner.close()


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
        if turn is not None:
            stream = _SavingStream(stream, turn)

        def on_end(error: BaseException | None) -> None:
            lease.finish(error)
            _take(record, stream.stats)
            record.finish(200, error)
            if turn is not None:
                turn.close(stream.stats, interrupted=error is not None)

        return SSEResponse(stream, first, lease.route.config.policy, on_end, headers, services.redact)
    (data, stats), lease = await dispatch(
        route, request, body, record.request_id, services.registry, _complete, collect_text=collect
    )
    lease.finish(None)
    headers = _served_by(lease, record)
    _take(record, stats)
    if turn is not None:
        await turn.save(stats)
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
