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
            wait = min(heartbeat, last_data + stall - now, ends - now)
            try:
                async with asyncio.timeout(max(wait, 0.0)):
                    batch = await stream.read()
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
        stream.close()
        on_end(outcome)


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
    """

    def __init__(
        self,
        body: AsyncGenerator[bytes, None],
        headers: dict[str, str],
        media_type: str = "text/event-stream",
    ) -> None:
        super().__init__(iterator=body, headers={**SSE_HEADERS, **headers}, media_type=media_type)
        self._body = body

    async def send_body(self, send: Any, receive: Any) -> None:
        """Send the events until the generator ends or the client leaves; then end the generator.

        A small watcher waits for the client's `http.disconnect` and cancels the sending, so a silent
        upstream is let go at once rather than at the next chunk. Plain asyncio instead of the anyio task
        group the base class uses: that group is a measurable share of a stream's time to first token.
        """
        task = asyncio.current_task()
        assert task is not None
        state = _SendState()

        def on_disconnect(watcher: asyncio.Task[None]) -> None:
            if not watcher.cancelled() and not state.finished:
                state.client_left = True
                task.cancel()

        watcher = asyncio.get_running_loop().create_task(_until_disconnect(receive))
        watcher.add_done_callback(on_disconnect)
        try:
            async for chunk in self._body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            state.finished = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not state.client_left:
                raise
            task.uncancel()  # our own cancellation: the client left, which ends the response normally
        finally:
            state.finished = True
            watcher.cancel()
            await self._body.aclose()


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
