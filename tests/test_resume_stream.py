"""ResumingStream in process, against scripted upstreams: what it refuses to resume, and what it holds.

tests/test_resume.py shows resuming end to end over sockets; these pin down the rules (no resume after
reasoning, after the finish reason, or past the token budget) and that every lease is let go, in
milliseconds.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from router.dispatch import Lease, dispatch
from router.errors import RouterError
from router.observability import RequestRecord
from router.protocol.openai_chat import parse_chat_request
from router.resume import ResumingStream
from router.upstreams.base import AnswerStats, ChatCall, EventStream, Limits, UpstreamAdapter
from router.upstreams.errors import UpstreamReset
from tests.support.fake_adapter import Answer, Core, build_core

BODY = b'{"messages": [{"role": "user", "content": "hi"}], "stream": true, "max_tokens": 8}'
ROUTES = [
    {
        "path": "/chat/m",
        "model": "m",
        "upstreams": [{"name": "a"}, {"name": "b"}],
        "resume": {"enabled": True},
    }
]
CONTINUES = {"a": {"continuation": "llama_cpp"}, "b": {"continuation": "llama_cpp"}}


def payload(delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-first",
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return msgspec.json.encode(chunk)


class Scripted(EventStream):
    """The first attempt: some payloads, then a break."""

    def __init__(self, payloads: list[bytes]) -> None:
        self.stats = AnswerStats()
        self.payloads = payloads
        self.closed = False

    async def read(self) -> list[bytes] | None:
        if self.payloads:
            return [self.payloads.pop(0)]
        raise UpstreamReset("connection reset mid-answer")

    def close(self) -> None:
        self.closed = True


class Answering:
    """What the stream needs of its request (the exchange's part)."""

    def __init__(self, lease: Lease) -> None:
        self.record = RequestRecord("rid")
        self.stats: AnswerStats | None = None
        self.messages: list[Any] = [{"role": "user", "content": "hi"}]
        self.trace = None
        self.lease: Lease | None = lease
        self.broken: list[BaseException] = []

    def attempt_broke(self, error: BaseException) -> None:
        assert self.lease is not None
        self.lease.finish(error)
        self.lease = None
        self.broken.append(error)

    def continue_on(self, lease: Lease) -> None:
        self.lease = lease


async def open_stream(
    adapter: UpstreamAdapter, call: ChatCall, limits: Limits
) -> tuple[EventStream, list[bytes]]:
    return await adapter.open_stream(call, limits)


async def resuming(core: Core, first: list[bytes]) -> tuple[ResumingStream, Answering, Scripted]:
    """A resumable stream whose first attempt (on replica a) relays `first`, then breaks."""
    request, body = parse_chat_request(BODY)
    scripted = Scripted(list(first[1:]))

    async def attempt(
        adapter: UpstreamAdapter, call: ChatCall, limits: Limits
    ) -> tuple[EventStream, list[bytes]]:
        return scripted, first[:1]

    (stream, head), lease = await dispatch(
        core.route("/chat/m"), request, body, "rid", core.registry, attempt, RequestRecord("rid")
    )
    answering = Answering(lease)
    wrapped = ResumingStream(
        stream,
        head,
        lease,
        core.route("/chat/m"),
        request,
        body,
        answering,
        core.registry,
        open_stream,
        None,
        False,
    )
    return wrapped, answering, scripted


async def read_all(stream: ResumingStream) -> list[bytes]:
    out: list[bytes] = []
    while (batch := await stream.read()) is not None:
        out += batch
    return out


async def test_a_resume_frees_every_lease_and_counts_the_broken_attempt() -> None:
    core = await build_core(
        {"a": [Answer()], "b": [Answer(chunks=("lo", " there"))]}, ROUTES, upstream_settings=CONTINUES
    )
    stream, answering, scripted = await resuming(core, [payload({"role": "assistant", "content": "hel"})])
    chunks = [msgspec.json.decode(c) for c in await read_all(stream)]
    stream.close()
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["lo", " there"]
    assert {c.get("id") for c in chunks} == {"chatcmpl-first"}  # the first attempt's id, kept
    assert scripted.closed and isinstance(answering.broken[0], UpstreamReset)
    assert core.log == ["b"]
    sent = core.adapters["b"].calls[0]
    assert sent.body["messages"][-1] == {"role": "assistant", "content": "hel"}
    assert sent.max_tokens == 8 - 1  # "hel" is estimated as one token
    assert answering.stats is stream.stats and stream.stats.completion_tokens == 1 + 2
    assert answering.record.completion_estimated and answering.record.upstreams == ["a", "b"]
    assert answering.lease is not None
    answering.lease.finish(None)
    core.assert_idle()
    assert core.upstream("a").breaker.snapshot().consecutive_failures == 1  # the break was blamed


@pytest.mark.parametrize(
    ("first", "why"),
    [
        ([payload({"role": "assistant", "reasoning_content": "let me think"})], "reasoning"),
        (
            [payload({"role": "assistant", "content": "x", "tool_calls": [{"index": 0, "id": "c"}]})],
            "tool call",
        ),
        ([payload({"role": "assistant", "content": "done"}), payload({}, "stop")], "finish reason"),
        ([payload({"role": "assistant", "content": "a long answer: " + "x" * 40})], "token budget spent"),
    ],
)
async def test_never_resumed(first: list[bytes], why: str) -> None:
    core = await build_core({"a": [Answer()], "b": [Answer()]}, ROUTES, upstream_settings=CONTINUES)
    stream, answering, _ = await resuming(core, first)
    with pytest.raises(RouterError) as caught:
        await read_all(stream)
    stream.close()
    assert isinstance(caught.value, UpstreamReset), why
    assert core.log == [], why  # b was never asked
    if answering.lease is not None:
        answering.lease.finish(caught.value)
    core.assert_idle()


async def test_closing_during_a_resume_cancels_it_and_frees_its_lease() -> None:
    import asyncio

    core = await build_core({"a": [Answer()], "b": [Answer()]}, ROUTES, upstream_settings=CONTINUES)
    gate = asyncio.Event()

    async def slow_open(
        adapter: UpstreamAdapter, call: ChatCall, limits: Limits
    ) -> tuple[EventStream, list[bytes]]:
        await gate.wait()
        return await adapter.open_stream(call, limits)

    stream, answering, _ = await resuming(core, [payload({"role": "assistant", "content": "hel"})])
    stream._open_stream = slow_open
    reading = asyncio.ensure_future(stream.read())
    await asyncio.sleep(0.01)
    assert not reading.done() and answering.lease is None  # the broken lease is freed, the resume waits
    reading.cancel()
    stream.close()
    await asyncio.sleep(0.01)
    core.assert_idle()
