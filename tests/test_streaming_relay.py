"""The SSE relay in process, on scripted streams: how it ends (clean, error event, stall, client gone),
what it tells its owner, and that the upstream is always closed. tests/test_streaming.py shows the same
over real sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator

from router.config.models import RoutePolicy
from router.dialects.openai_chat import OPENAI_CHAT
from router.security import Redactor
from router.streaming import DONE, KEEPALIVE, relay
from router.upstreams.base import ChatCall
from router.upstreams.errors import BadUpstreamResponse, UpstreamStalled
from tests.support.fake_adapter import Answer, FakeStream, chunk

CALL = ChatCall(
    body={}, model="m", stream=True, max_tokens=None, include_usage=False, options={}, request_id="r"
)


class Ends:
    """The relay's `on_end`, remembering every call."""

    def __init__(self) -> None:
        self.outcomes: list[BaseException | None] = []

    def __call__(self, outcome: BaseException | None) -> None:
        self.outcomes.append(outcome)


def start(answer: Answer, **policy: float) -> tuple[FakeStream, Ends, AsyncGenerator[bytes, None]]:
    stream = FakeStream(answer, CALL)
    ends = Ends()
    first = [chunk(answer.chunks[0])]
    return (
        stream,
        ends,
        relay(stream, first, RoutePolicy(**policy), ends, Redactor(), OPENAI_CHAT.stream(None)),
    )  # type: ignore[arg-type]


async def drain(body: AsyncGenerator[bytes, None]) -> list[bytes]:
    return [event async for event in body]


async def test_a_clean_stream_ends_with_done_and_tells_its_owner_once() -> None:
    stream, ends, body = start(Answer(chunks=("a", "b", "c")))
    events = await drain(body)
    assert events[0].startswith(b"data: ") and events[-1] == DONE
    assert len(events) == 4
    assert ends.outcomes == [None] and stream.closed


async def test_a_failure_mid_stream_is_a_final_error_event_without_done() -> None:
    error = BadUpstreamResponse("garbage line")
    stream, ends, body = start(Answer(chunks=("a", "b"), error=error))
    events = await drain(body)
    assert DONE not in events
    last = json.loads(events[-1].removeprefix(b"data: "))
    assert last["error"]["code"] == "bad_upstream_response"
    assert ends.outcomes == [error] and stream.closed


async def test_a_bug_mid_stream_is_an_internal_error_event_that_leaks_nothing() -> None:
    error = ValueError("internal detail")
    stream, ends, body = start(Answer(chunks=("a", "b"), error=error))
    events = await drain(body)
    last = json.loads(events[-1].removeprefix(b"data: "))
    assert last["error"]["code"] == "internal_error" and "internal detail" not in events[-1].decode()
    assert DONE not in events
    assert ends.outcomes == [error] and stream.closed


async def test_a_silent_model_gets_heartbeats_then_a_stall_error() -> None:
    stream, ends, body = start(Answer(chunks=("a",), stall=True), heartbeat_interval=0.02, stall_timeout=0.1)
    events = await asyncio.wait_for(drain(body), 2)
    assert events.count(KEEPALIVE) >= 2
    assert json.loads(events[-1].removeprefix(b"data: "))["error"]["code"] == "upstream_stalled"
    [outcome] = ends.outcomes
    assert isinstance(outcome, UpstreamStalled) and stream.closed


async def test_a_client_that_leaves_closes_the_upstream_and_is_reported_as_gone() -> None:
    stream, ends, body = start(Answer(chunks=tuple("abcdef"), delay=0.01))
    assert (await anext(body)).startswith(b"data: ")
    await anext(body)
    await body.aclose()  # what the response does when the client disconnects
    [outcome] = ends.outcomes
    assert isinstance(outcome, GeneratorExit) and stream.closed
    assert stream.reads < 6


async def test_a_client_that_leaves_while_the_model_is_silent_is_let_go_at_once() -> None:
    stream, ends, body = start(Answer(chunks=("a",), stall=True), heartbeat_interval=5, stall_timeout=10)

    async def consume() -> None:
        async for _ in body:
            pass

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.02)
    task.cancel()  # the disconnect watcher cancels the sending task
    await asyncio.gather(task, return_exceptions=True)
    [outcome] = ends.outcomes
    assert isinstance(outcome, asyncio.CancelledError) and stream.closed
