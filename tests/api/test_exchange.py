"""Every way a chat request can end, in process: the lease is given back and the breaker told the right
thing, the session turn is stored once (partially when interrupted), and the request is reported once,
after the answer left. The streaming relay's own end states are in tests/test_streaming_relay.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from router.security import Redactor
from router.upstreams.errors import UpstreamReset, UpstreamStatus
from tests.support.asgi import ChatPath, FakeClient, Turns
from tests.support.fake_adapter import Answer, Core, Fail, Stall, Step, build_core

WHOLE = {"messages": [{"role": "user", "content": "hi"}], "session_id": "s1"}
STREAM = {**WHOLE, "stream": True}


async def core_with(script: list[Step], **policy: Any) -> Core:
    route = {"path": "/chat/a", "model": "m", "upstream": "a", "max_retries": 1, **policy}
    return await build_core({"a": script}, [route])


def only_record(path: ChatPath) -> Any:
    [record] = path.records.records  # reported once, whatever the number of ways out that saw the end
    return record


async def test_a_whole_answer_is_reported_after_it_was_sent() -> None:
    core = await core_with([Answer(text="hello there")])
    path = ChatPath(core.registry, sessions=Turns())
    client = FakeClient(WHOLE)
    await path.serve(core.route("/chat/a"), client)
    assert client.status == 200 and b"hello there" in client.body_bytes
    assert client.headers["x-router-upstream"] == "a"
    record = only_record(path)
    assert (record.status, record.outcome, record.prompt_tokens) == (200, "ok", 3)
    assert path.records.sent_at_report == [2]  # start and body were both out before the record was
    assert path.sessions is not None and path.sessions.turns == [("s1", "hello there", False)]
    core.assert_idle()


async def test_an_error_before_the_answer_is_one_error_response_with_its_retries() -> None:
    core = await core_with([Fail(UpstreamStatus("upstream broke", status=500))])
    path = ChatPath(core.registry, sessions=Turns())
    client = FakeClient(WHOLE)
    await path.serve(core.route("/chat/a"), client)
    assert client.status == 502
    assert json.loads(client.body_bytes)["error"]["code"] == "upstream_error"
    record = only_record(path)
    assert (record.status, record.outcome, record.retries) == (502, "upstream_error", 1)
    assert path.sessions is not None and path.sessions.turns == []  # a failed request stores no turn
    core.assert_idle()


async def test_secrets_are_masked_in_the_response_but_the_error_is_not_rewritten() -> None:
    error = UpstreamStatus("bad key sk-secret-123", status=400)
    core = await core_with([Fail(error)])
    path = ChatPath(core.registry, Redactor(["sk-secret-123"]))
    client = FakeClient(WHOLE)
    await path.serve(core.route("/chat/a"), client)
    assert json.loads(client.body_bytes)["error"]["message"] == "bad key [REDACTED]"
    assert error.message == "bad key sk-secret-123"  # the value raised is left as it was


async def test_secrets_are_masked_in_a_stream_s_error_event() -> None:
    error = UpstreamReset("reset, key sk-secret-123")
    core = await core_with([Answer(chunks=("a", "b"), error=error)])
    path = ChatPath(core.registry, Redactor(["sk-secret-123"]))
    client = FakeClient(STREAM)
    await path.serve(core.route("/chat/a"), client)
    last = json.loads(client.events()[-1].removeprefix("data: "))
    assert last["error"]["message"] == "reset, key [REDACTED]"
    assert error.message == "reset, key sk-secret-123"


async def test_a_clean_stream_records_the_whole_turn_once() -> None:
    core = await core_with([Answer(chunks=("a", "b", "c"))])
    path = ChatPath(core.registry, sessions=Turns())
    client = FakeClient(STREAM)
    await path.serve(core.route("/chat/a"), client)
    assert client.events()[-1] == "data: [DONE]"
    assert only_record(path).outcome == "ok"
    assert path.sessions is not None and path.sessions.turns == [("s1", "abc", False)]
    assert core.adapters["a"].streams[0].closed
    core.assert_idle()


async def test_a_stream_failing_midway_tells_the_breaker_and_keeps_the_partial_turn() -> None:
    core = await core_with([Answer(chunks=("a", "b"), error=UpstreamReset("reset"))])
    path = ChatPath(core.registry, sessions=Turns())
    client = FakeClient(STREAM)
    await path.serve(core.route("/chat/a"), client)
    assert "data: [DONE]" not in client.events()
    assert only_record(path).outcome == "upstream_error"
    await stored_in_background()  # an interrupted turn is stored without anyone waiting for it
    assert path.sessions is not None and path.sessions.turns == [("s1", "ab", True)]
    assert core.upstream("a").breaker.snapshot().consecutive_failures == 1
    assert len(core.adapters["a"].calls) == 1  # never retried after the first byte
    core.assert_idle()


async def test_a_client_leaving_mid_stream_lets_the_upstream_go_without_blaming_it() -> None:
    core = await core_with([Answer(chunks=tuple("abcdefgh"), delay=0.05)])
    path = ChatPath(core.registry, sessions=Turns())
    client = FakeClient(STREAM, leave_after=2)
    await asyncio.wait_for(path.serve(core.route("/chat/a"), client), 2)
    stream = core.adapters["a"].streams[0]
    assert stream.closed and stream.reads < 8  # stopped early: nobody was reading
    record = only_record(path)
    assert (record.status, record.outcome) == (200, "client_cancelled")
    assert path.sessions is not None
    [(_, partial, interrupted)] = path.sessions.turns
    assert interrupted and partial and partial != "abcdefgh"
    assert core.upstream("a").breaker.snapshot().consecutive_failures == 0
    core.assert_idle()


async def test_a_connection_broken_as_the_response_starts_still_ends_everything() -> None:
    core = await core_with([Answer(chunks=("a", "b"))])
    path = ChatPath(core.registry, sessions=Turns())
    client = FakeClient(STREAM, break_on_start=True)
    with pytest.raises(OSError):
        await path.serve(core.route("/chat/a"), client)
    assert core.adapters["a"].streams[0].closed
    assert only_record(path).outcome == "client_cancelled"
    await stored_in_background()  # an interrupted turn is stored without anyone waiting for it
    assert path.sessions is not None and path.sessions.turns == [("s1", "a", True)]
    core.assert_idle()


async def test_a_request_cancelled_while_waiting_for_the_model_is_499_and_holds_nothing() -> None:
    core = await core_with([Stall()], timeout=30)
    path = ChatPath(core.registry)
    task = asyncio.ensure_future(path.serve(core.route("/chat/a"), FakeClient(WHOLE)))
    await core.adapters["a"].until_called()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    record = only_record(path)
    assert (record.status, record.outcome) == (499, "client_cancelled")
    core.assert_idle()


async def stored_in_background() -> None:
    """Let the background task that stores an interrupted turn run (it needs no I/O with `Turns`)."""
    for _ in range(3):
        await asyncio.sleep(0)
