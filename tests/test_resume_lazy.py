"""A resumable stream that does not break does not parse its chunks; one that breaks reads them then.

The first attempt's chunks are kept unparsed (within `resume.keep_raw_bytes`) and read only when a break
asks whether the answer may be resumed, so an unbroken stream pays a list extend per batch for resume.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

import router.resume
from router.dispatch import dispatch
from router.observability import RequestRecord
from router.protocol.openai_chat import parse_chat_request
from router.resume import ResumingStream
from router.upstreams.base import AnswerStats, ChatCall, EventStream, Limits, UpstreamAdapter
from router.upstreams.errors import UpstreamReset
from tests.support.fake_adapter import Answer, Core, build_core
from tests.test_resume_stream import BODY, CONTINUES, Answering, open_stream, payload, read_all


def routes(keep_raw_bytes: int | None = None) -> list[dict[str, Any]]:
    resume: dict[str, Any] = {"enabled": True}
    if keep_raw_bytes is not None:
        resume["keep_raw_bytes"] = keep_raw_bytes
    return [{"path": "/chat/m", "model": "m", "upstreams": [{"name": "a"}, {"name": "b"}], "resume": resume}]


class Relayed(EventStream):
    """The first attempt: its payloads one per read, then the end (`breaks`: a reset instead)."""

    def __init__(self, payloads: list[bytes], breaks: bool) -> None:
        self.stats = AnswerStats()
        self.payloads = payloads
        self.breaks = breaks

    async def read(self) -> list[bytes] | None:
        if self.payloads:
            return [self.payloads.pop(0)]
        if self.breaks:
            raise UpstreamReset("connection reset mid-answer")
        return None

    def close(self) -> None:
        pass


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every payload resuming parses to note what was relayed."""
    seen: list[bytes] = []
    real = router.resume._read_chunk

    def counting(payload: bytes) -> Any:
        seen.append(payload)
        return real(payload)

    monkeypatch.setattr(router.resume, "_read_chunk", counting)
    return seen


async def first_attempt(core: Core, first: list[bytes], breaks: bool) -> tuple[ResumingStream, Answering]:
    request, body = parse_chat_request(BODY)
    relayed = Relayed(list(first[1:]), breaks)

    async def attempt(
        adapter: UpstreamAdapter, call: ChatCall, limits: Limits
    ) -> tuple[EventStream, list[bytes]]:
        return relayed, first[:1]

    route = core.route("/chat/m")
    (stream, head), lease = await dispatch(
        route, request, body, "rid", core.registry, attempt, RequestRecord("rid")
    )
    answering = Answering(lease)
    wrapped = ResumingStream(
        stream, head, lease, route, request, body, answering, core.registry, open_stream, None, False
    )
    return wrapped, answering


def words(n: int) -> list[bytes]:
    return [payload({"role": "assistant", "content": "w"} if i == 0 else {"content": "w"}) for i in range(n)]


async def test_an_unbroken_stream_parses_none_of_its_chunks(decoded: list[bytes]) -> None:
    core = await build_core({"a": [Answer()], "b": [Answer()]}, routes(), upstream_settings=CONTINUES)
    first = [*words(50), payload({}, "stop")]
    stream, answering = await first_attempt(core, first, breaks=False)
    assert await read_all(stream) == first[1:]  # relayed untouched (the head went out with the open)
    stream.close()
    assert decoded == []
    assert answering.stats is None and answering.record.resumes == 0
    assert answering.lease is not None
    answering.lease.finish(None)
    core.assert_idle()


async def test_a_break_reads_the_kept_chunks_and_continues_the_whole_text(decoded: list[bytes]) -> None:
    core = await build_core(
        {"a": [Answer()], "b": [Answer(chunks=("!",))]}, routes(), upstream_settings=CONTINUES
    )
    first = words(6)
    stream, answering = await first_attempt(core, first, breaks=True)
    out = [msgspec.json.decode(c) for c in await read_all(stream)]
    stream.close()
    assert decoded == first  # each read once, at the break
    assert core.adapters["b"].calls[0].body["messages"][-1] == {"role": "assistant", "content": "wwwwww"}
    assert [c["choices"][0]["delta"].get("content") for c in out][:6] == ["w"] * 5 + ["!"]
    assert {c.get("id") for c in out} == {"chatcmpl-first"}
    assert answering.record.upstreams == ["a", "b"]
    assert answering.lease is not None
    answering.lease.finish(None)
    core.assert_idle()


async def test_past_keep_raw_bytes_the_chunks_are_read_as_they_go(
    decoded: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(router.resume, "_CHECK_EVERY", 4)  # the kept bytes are summed every 4 payloads
    first = words(24)  # 24 characters: 6 tokens of the 8 allowed
    bound = 5 * (len(first[1]) + 64)  # five chunks' worth: past it at the second sum, at 8 kept
    core = await build_core(
        {"a": [Answer()], "b": [Answer(chunks=("!",))]}, routes(bound), upstream_settings=CONTINUES
    )
    stream, answering = await first_attempt(core, first, breaks=True)
    kept: list[int] = []
    read_before_the_break = 0
    while (batch := await stream.read()) is not None:
        assert batch
        kept.append(len(stream._raw or ()))
        if len(kept) == 20:
            read_before_the_break = len(decoded)
    assert max(kept) < 8  # never more than the bound and one sum's worth held
    assert read_before_the_break == 16  # read in blocks of 8 as the stream went
    stream.close()
    assert decoded == first  # each read exactly once, in order
    assert core.adapters["b"].calls[0].body["messages"][-1]["content"] == "w" * 24
    assert answering.lease is not None
    answering.lease.finish(None)
    core.assert_idle()


async def test_once_a_resume_is_ruled_out_nothing_more_is_kept(decoded: list[bytes]) -> None:
    core = await build_core({"a": [Answer()], "b": [Answer()]}, routes(0), upstream_settings=CONTINUES)
    call = {"role": "assistant", "tool_calls": [{"index": 0, "id": "c"}]}
    first = [payload(call), *words(20)]
    stream, answering = await first_attempt(core, first, breaks=True)
    with pytest.raises(UpstreamReset):
        await read_all(stream)
    stream.close()
    assert decoded == first[:1]  # keep_raw_bytes 0 reads at once; after the tool call, nothing
    assert stream._raw is None and core.log == []
    assert answering.lease is not None
    answering.lease.finish(UpstreamReset("x"))
    core.assert_idle()
