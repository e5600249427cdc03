"""Relaying a streamed answer to the client in its dialect, safely.

The relay owns what can only happen after the first byte was sent: a heartbeat while the model is silent
(so proxies and browsers keep the connection), the stall timeout, a final error *event* when the
upstream fails mid-answer (the status code is already gone), the dialect's clean end (`data: [DONE]` for
OpenAI), and, whatever happens, closing the upstream connection: when the client goes away, closing it is
what stops the model from generating for nobody. The bytes themselves come from the client dialect's
`StreamEncoder` (`router.dialects.base`), so all of this holds for every front door.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any

from litestar.datastructures import MutableScopeHeaders
from litestar.response.streaming import ASGIStreamingResponse

from router.config.models import RoutePolicy
from router.dialects.base import StreamEncoder
from router.dialects.sse import DONE, KEEPALIVE, frame
from router.errors import OPENAI, ErrorDialect, Redact, RouterError, StreamTooLong, encode_error
from router.upstreams.base import EventStream
from router.upstreams.errors import UpstreamStalled

__all__ = [
    "DONE",
    "KEEPALIVE",
    "SSE_HEADERS",
    "SSEResponse",
    "SSEStreamBody",
    "error_event",
    "frame",
    "relay",
]

log = logging.getLogger("router.streaming")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def error_event(error: BaseException, redact: Redact, dialect: ErrorDialect = OPENAI) -> bytes:
    """The last event of a stream that failed after it started: the same error body a response would carry.

    `redact` masks known secrets: an upstream may quote its own key in an error it sends mid-stream.
    """
    return dialect.stream_event(encode_error(error, redact, dialect).body)


async def relay(
    stream: EventStream,
    first: list[bytes],
    policy: RoutePolicy,
    on_end: Callable[[BaseException | None], None],
    redact: Redact,
    encoder: StreamEncoder,
    errors: ErrorDialect = OPENAI,
) -> AsyncGenerator[bytes, None]:
    """The body of one streamed answer; `on_end` learns how it ended (None, an error, or cancellation).

    `encoder` writes the client's dialect, `errors` its error bodies. `on_end` is the request's end
    (`Exchange.end`): it may be called again by the response, and only the first call counts.
    """
    loop = asyncio.get_running_loop()
    stall, heartbeat = policy.stall_timeout, policy.heartbeat_interval
    keepalive, encode = encoder.heartbeat, encoder.chunks
    outcome: BaseException | None = None
    timer = _ReadTimer(loop)
    try:
        head = encoder.start()
        if first:
            head = head + encode(first) if head else encode(first)
        if head:
            yield head
        last_data = loop.time()
        ends = last_data + policy.max_stream_duration
        while True:
            now = loop.time()
            try:
                batch = await timer.read(stream, min(now + heartbeat, last_data + stall, ends))
            except TimeoutError:
                if loop.time() - last_data >= stall:
                    stalled = UpstreamStalled(
                        f"the model sent nothing for {stall:g}s (the route's stall_timeout); answer cut off"
                    )
                    if not stream.survives(stalled):  # a resumable stream goes on elsewhere (router.resume)
                        raise stalled from None
                    last_data = loop.time()
                    continue
                if loop.time() >= ends:
                    raise too_long(policy) from None
                yield keepalive
                continue
            if batch is None:
                yield encoder.end()
                return
            if batch:
                last_data = loop.time()
                if last_data >= ends:
                    raise too_long(policy)
                data = encode(batch)
                if data:
                    yield data
    except Exception as error:  # the upstream failed, or a bug: either way the client is told, not cut off
        outcome = error
        if not isinstance(error, RouterError):
            log.error("unexpected error relaying a stream", exc_info=error)
        yield encoder.error(encode_error(error, redact, errors))
    except BaseException as error:  # the client went away (cancellation, GeneratorExit)
        outcome = error
        raise
    finally:
        timer.stop()
        stream.close()
        on_end(outcome)


class _ReadTimer:
    """The relay's time limit on each upstream read (heartbeat, stall, duration), as one loop timer per
    stream instead of an `asyncio.timeout` (a timer armed and cancelled, two objects) per chunk.

    The timer is armed at a read's deadline and left alone while chunks keep coming: a later read's
    deadline is later, so it just moves `deadline` forward and the timer, when it fires early, re-arms
    itself for it. It cancels the reading task only while a read is awaited and its deadline has passed;
    the cancellation becomes `TimeoutError` in `read`, exactly as `asyncio.timeout` turns it (and a
    cancellation from elsewhere, such as the client leaving, stays a cancellation). A chunk therefore
    costs two float stores instead of a timer; the timer fires about once per `heartbeat_interval`.
    """

    __slots__ = ("_armed_at", "_fired", "_handle", "_loop", "_task", "deadline")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = 0.0
        self._task: asyncio.Task[Any] | None = None  # the task awaiting a read; None between reads
        self._fired = False
        self.deadline = 0.0

    async def read(self, stream: EventStream, deadline: float) -> list[bytes] | None:
        """`stream.read()`, or TimeoutError once `deadline` (loop time) has passed while it waits."""
        task = asyncio.current_task()
        assert task is not None
        self.deadline = deadline  # one already past still lets a read that needs no wait through
        if self._handle is None or deadline < self._armed_at:
            self._arm(deadline)
        cancelling = task.cancelling()
        self._task = task
        try:
            return await stream.read()
        except asyncio.CancelledError:
            if self._fired:
                self._fired = False
                if task.uncancel() <= cancelling:
                    raise TimeoutError from None
            raise
        finally:
            self._task = None
            if self._fired:  # expired, but the read ended first: take back the cancellation it asked for
                self._fired = False
                task.uncancel()

    def _arm(self, at: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = at
        self._handle = self._loop.call_at(at, self._expired)

    def _expired(self) -> None:
        self._handle = None
        task = self._task
        if task is None:  # between reads: the next read arms the timer again
            return
        if self._loop.time() >= self.deadline:
            self._fired = True
            task.cancel()
        else:
            self._arm(self.deadline)

    def stop(self) -> None:
        """Cancel the timer (the stream is over)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def too_long(policy: RoutePolicy) -> StreamTooLong:
    """The error ending a stream that ran for its route's `max_stream_duration`, however it trickled."""
    return StreamTooLong(
        f"the answer was still streaming after {policy.max_stream_duration:g}s, the route's "
        "max_stream_duration; answer cut off (ask for a shorter answer, or raise the limit)"
    )


class SSEStreamBody(ASGIStreamingResponse):
    """An event stream that always finishes its generator, however the client leaves.

    Litestar cancels the sending task when the client disconnects; an async generator interrupted that way
    is only finalised whenever the garbage collector gets to it. Closing it here runs its cleanup at once.

    It is on the path of every stream's first token, so it does the least work there: its headers are
    encoded once, straight into the list the start message carries (Litestar's initialiser normalises
    each header and checks the body against typing protocols: tens of microseconds a stream), and the
    start goes out without the base class's layers. `headers` is still Litestar's `MutableScopeHeaders`,
    over that list, so headers can be added (CORS) until the response is called.
    """

    def __init__(
        self,
        body: AsyncGenerator[bytes, None],
        headers: dict[str, str],
        media_type: str = "text/event-stream",
    ) -> None:
        # What Litestar's initialiser would set, set directly; the headers in the order it writes them.
        self.headers = MutableScopeHeaders({"headers": _start_headers(headers, media_type)})
        self.iterator = self._body = body
        self.background = None
        self.body = b""
        self.content_length = 0
        self.encoding = "utf-8"
        self.is_head_response = False
        self.status_code = 200
        self._encoded_cookies = ()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """The start message, then the events (an event stream has no cookies nor background tasks)."""
        await send({"type": "http.response.start", "status": 200, "headers": self.headers.headers})
        await self.send_body(send, receive)

    async def send_body(self, send: Any, receive: Any) -> None:
        """Send the events until the generator ends or the client leaves; then end the generator.

        A small watcher waits for the client's `http.disconnect` and cancels the sending, so a silent
        upstream is let go at once rather than at the next chunk. Plain asyncio instead of the anyio task
        group the base class uses: that group is a measurable share of a stream's time to first token.
        The watcher starts once the first chunk is on its way (a relay's first chunk is ready when the
        response starts: the model's first token was awaited before it), so making it is not on that
        path either.
        """
        task = asyncio.current_task()
        assert task is not None
        state = _SendState()

        def on_disconnect(watcher: asyncio.Task[None]) -> None:
            if not watcher.cancelled() and not state.finished:
                state.client_left = True
                task.cancel()

        watcher = None
        try:
            async for chunk in self._body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if watcher is None:
                    watcher = asyncio.get_running_loop().create_task(_until_disconnect(receive))
                    watcher.add_done_callback(on_disconnect)
            state.finished = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not state.client_left:
                raise
            task.uncancel()  # our own cancellation: the client left, which ends the response normally
        finally:
            state.finished = True
            if watcher is not None:
                watcher.cancel()
            await self._body.aclose()


def _start_headers(headers: dict[str, str], media_type: str) -> list[tuple[bytes, bytes]]:
    """The start message's headers as Litestar's response lists them (`{**SSE_HEADERS, **headers}`, then
    the content type unless given), with the SSE ones and the content type encoded once per process."""
    content_type = _CONTENT_TYPES.get(media_type)
    if content_type is None:
        content_type = _CONTENT_TYPES.setdefault(media_type, _content_type(media_type))
    encoded = _encode(headers)
    if _RESERVED.isdisjoint([name for name, _ in encoded]):
        return [*_SSE_START, *encoded, content_type]
    merged = _encode({**SSE_HEADERS, **headers})  # rare (the /events stream): as Litestar merged them
    if all(name != b"content-type" for name, _ in merged):
        merged.append(content_type)
    return merged


def _encode(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """Headers as Litestar's response writes them: lower-case names, latin-1."""
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


def _content_type(media_type: str) -> tuple[bytes, bytes]:
    value = f"{media_type}; charset=utf-8" if media_type.startswith("text/") else media_type
    return (b"content-type", value.encode("latin-1"))


_SSE_START = _encode(SSE_HEADERS)
_RESERVED = frozenset({*(name for name, _ in _SSE_START), b"content-type"})
_CONTENT_TYPES: dict[str, tuple[bytes, bytes]] = {}  # a handful: one per dialect's stream media type


class _SendState:
    __slots__ = ("client_left", "finished")

    def __init__(self) -> None:
        self.client_left = False
        self.finished = False


async def _until_disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class SSEResponse(SSEStreamBody):
    """A streamed answer in the encoder's dialect: the relay of `stream`, which always closes its upstream
    and ends the request.

    A relay that never started (the client left before the first write, or sending the status failed) has
    no cleanup of its own to run, so the response closes the upstream and calls `on_end` itself; closing
    is idempotent, and `on_end` counts its first call only.
    """

    def __init__(
        self,
        stream: EventStream,
        first: list[bytes],
        policy: RoutePolicy,
        on_end: Callable[[BaseException | None], None],
        headers: dict[str, str],
        redact: Redact,
        encoder: StreamEncoder,
        errors: ErrorDialect = OPENAI,
    ) -> None:
        body = relay(stream, first, policy, on_end, redact, encoder, errors)
        super().__init__(body, headers, encoder.media_type)
        self._upstream = stream
        self._on_end = on_end

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Send the response; then make sure the upstream connection is closed and the request ended."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._upstream.close()
            self._on_end(asyncio.CancelledError("the client went away before the answer started"))
