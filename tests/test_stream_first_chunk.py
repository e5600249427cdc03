"""What the first-token path was thinned to, held to what it replaced.

The SSE response writes its start message itself: it must carry exactly the headers Litestar's streaming
response listed. The relay's read timer (one loop timer per stream instead of `asyncio.timeout` per
chunk) must time reads out as `asyncio.timeout` did: at the deadline, not before; a cancellation from
elsewhere stays a cancellation; a read that needs no wait gets through even past its deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from litestar.response.streaming import ASGIStreamingResponse

from router.streaming import SSE_HEADERS, SSEStreamBody, _ReadTimer
from router.upstreams.base import AnswerStats, EventStream


async def _events() -> AsyncGenerator[bytes, None]:
    yield b"data: 1\n\n"


async def _start_of(response: Any) -> dict[str, Any]:
    sent: list[dict[str, Any]] = []
    over = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message["more_body"]:
            over.set()

    async def receive() -> dict[str, Any]:  # the client leaves once it has the whole answer
        await over.wait()
        return {"type": "http.disconnect"}

    await response({"type": "http"}, receive, send)
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert sent[1]["body"] == b"data: 1\n\n"
    return sent[0]


HEADER_SETS = [
    {"X-Router-Route": "/chat/a", "X-Router-Upstream": "up", "X-Router-Overhead-Ms": "0.120"},
    {},
    SSE_HEADERS,  # the /events stream passes these again
    {"cache-control": "no-store", "X-Other": "1"},
    {"Content-Type": "text/plain"},
]


@pytest.mark.parametrize("headers", HEADER_SETS)
@pytest.mark.parametrize("media_type", ["text/event-stream", "application/x-ndjson"])
def test_sse_start_carries_what_litestar_listed(headers: dict[str, str], media_type: str) -> None:
    async def run() -> None:
        ours = await _start_of(SSEStreamBody(_events(), dict(headers), media_type))
        theirs = await _start_of(
            ASGIStreamingResponse(
                iterator=_events(), headers={**SSE_HEADERS, **headers}, media_type=media_type
            )
        )
        assert ours == theirs

    asyncio.run(run())


def test_headers_can_be_added_before_the_start() -> None:
    async def run() -> None:
        response = SSEStreamBody(_events(), {"X-A": "1"})
        response.headers.headers.append((b"access-control-allow-origin", b"http://a.test"))
        start = await _start_of(response)
        assert start["headers"][-1] == (b"access-control-allow-origin", b"http://a.test")
        assert start["status"] == 200

    asyncio.run(run())


class Scripted(EventStream):
    """A stream whose reads wait as long as the test says (None: forever)."""

    def __init__(self, waits: list[float | None]) -> None:
        self.waits = waits
        self.stats = AnswerStats()

    async def read(self) -> list[bytes] | None:
        wait = self.waits.pop(0)
        if wait is None:
            await asyncio.Event().wait()
        elif wait:
            await asyncio.sleep(wait)
        return [b"x"]

    def close(self) -> None:
        pass


def test_fast_reads_share_one_timer() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        timer = _ReadTimer(loop)
        stream = Scripted([0.0] * 20)
        handles = set()
        for _ in range(20):
            assert await timer.read(stream, loop.time() + 5) == [b"x"]
            handles.add(id(timer._handle))
        assert len(handles) == 1, "a later deadline must not re-arm the timer"
        timer.stop()
        assert timer._handle is None

    asyncio.run(run())


def test_a_read_times_out_at_its_own_deadline_not_an_earlier_one() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        timer = _ReadTimer(loop)
        assert await timer.read(Scripted([0.0]), loop.time() + 0.05) == [b"x"]  # arms the timer at +0.05
        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            await timer.read(Scripted([None]), loop.time() + 0.3)
        took = time.perf_counter() - started
        assert 0.28 <= took < 2.0, took
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
        # an earlier deadline than the armed one re-arms it
        timer._arm(loop.time() + 10)
        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            await timer.read(Scripted([None]), loop.time() + 0.05)
        assert time.perf_counter() - started < 1.0
        timer.stop()

    asyncio.run(run())


def test_a_past_deadline_still_lets_a_ready_read_through() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        timer = _ReadTimer(loop)
        assert await timer.read(Scripted([0.0]), loop.time() - 1) == [b"x"]
        await asyncio.sleep(0.01)  # the due timer fires between reads: nothing to cancel
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
        with pytest.raises(TimeoutError):
            await timer.read(Scripted([None]), loop.time() - 1)
        timer.stop()

    asyncio.run(run())


def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        timer = _ReadTimer(loop)

        async def reader() -> None:
            await timer.read(Scripted([None]), loop.time() + 0.05)

        task = loop.create_task(reader())
        await asyncio.sleep(0.01)
        task.cancel()  # the client left while the model was silent
        with pytest.raises(asyncio.CancelledError):
            await task
        # both at once: the timer's deadline is due and the task is cancelled from elsewhere
        task = loop.create_task(reader())
        deadline = time.perf_counter() + 5
        while not timer._fired and not task.done() and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0)  # turn by turn: the moment between the timer firing and the reader waking
        assert timer._fired and not task.done(), "the timer expired and the reader has not seen it yet"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        timer.stop()

    asyncio.run(run())
