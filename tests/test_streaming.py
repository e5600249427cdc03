"""The SSE relay: heartbeats, stalls, truncation, mid-stream errors, cancelling the model on disconnect."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tests.fakes import FakeOllama, FakeOpenAI, FakeUpstream
from tests.support.router_server import RunningRouter, table

STREAM = {"messages": [{"role": "user", "content": "hello"}], "stream": True}


@pytest.fixture(params=["ollama", "openai"])
def fake(request: pytest.FixtureRequest) -> FakeUpstream:
    return request.getfixturevalue(f"fake_{request.param}")  # type: ignore[no-any-return]


def router_for(fake: FakeUpstream, start_router, **defaults: object) -> RunningRouter:  # type: ignore[no-untyped-def]
    kind = "ollama" if isinstance(fake, FakeOllama) else "openai"
    model = "qwen3:32b" if kind == "ollama" else "smollm2"
    return start_router(
        table(
            {"up": {"type": kind, "base_url": fake.base_url}},  # type: ignore[no-any-return]
            [{"path": "/chat/m", "model": model, "upstream": "up"}],
            defaults=dict(defaults),
        )
    )


def read_events(response: httpx.Response) -> list[str]:
    return [line for line in response.iter_lines() if line]


def test_client_disconnect_mid_stream_closes_the_upstream_request(fake: FakeUpstream, start_router) -> None:  # type: ignore[no-untyped-def]
    fake.reply_tokens = 200
    fake.chunk_delay = 0.02
    router = router_for(fake, start_router)
    with httpx.stream("POST", router.url + "/chat/m", json=STREAM) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")  # the answer started
    fake.wait_for(lambda: fake.disconnects == 1, timeout=3)
    assert fake.disconnect_log[0].chunks_sent < 200  # the model stopped early: nobody was reading
    assert fake.completed_streams == 0


def test_heartbeats_keep_a_silent_stream_open(fake: FakeUpstream, start_router) -> None:  # type: ignore[no-untyped-def]
    fake.set_behaviour("stall_mid_stream", after=1, seconds=0.6)
    router = router_for(fake, start_router, heartbeat_interval=0.1, stall_timeout=5)
    with httpx.stream("POST", router.url + "/chat/m", json=STREAM) as response:
        events = read_events(response)
    assert events.count(": keepalive") >= 3
    assert events[-1] == "data: [DONE]"


def test_stall_beyond_stall_timeout_ends_with_an_error_event(fake: FakeUpstream, start_router) -> None:  # type: ignore[no-untyped-def]
    fake.set_behaviour("stall_mid_stream", after=2, seconds=10)
    router = router_for(fake, start_router, heartbeat_interval=0.1, stall_timeout=0.4)
    started = time.monotonic()
    with httpx.stream("POST", router.url + "/chat/m", json=STREAM) as response:
        events = read_events(response)
    assert time.monotonic() - started < 2
    last = json.loads(events[-1].removeprefix("data: "))
    assert last["error"]["code"] == "upstream_stalled"
    assert "data: [DONE]" not in events
    fake.wait_for(lambda: fake.disconnects == 1, timeout=3)  # the stalled generation was dropped too


@pytest.mark.parametrize(
    ("behaviour", "code"),
    [
        ("reset_mid_stream", "upstream_connection_reset"),
        ("malformed_line", "bad_upstream_response"),
        ("error_line", "upstream_error"),
    ],
)
def test_failure_after_the_first_byte_is_a_final_error_event_and_never_retried(
    fake: FakeUpstream,
    start_router,
    behaviour: str,
    code: str,  # type: ignore[no-untyped-def]
) -> None:
    fake.set_behaviour(behaviour, after=2)
    fake.chunk_delay = 0.05  # the first chunks reach the client before the failure arrives
    router = router_for(fake, start_router)
    with httpx.stream("POST", router.url + "/chat/m", json=STREAM) as response:
        assert response.status_code == 200
        events = read_events(response)
    last = json.loads(events[-1].removeprefix("data: "))
    assert last["error"]["code"] == code
    assert "data: [DONE]" not in events
    assert fake.chat_count == 1  # no retry once the client had bytes


def test_upstream_closing_before_the_end_marker_is_not_a_silent_truncation(start_router) -> None:  # type: ignore[no-untyped-def]
    """An OpenAI-style server that just closes after two events, without `data: [DONE]`."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    chunk = json.dumps(
        {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "x"}}]}
    )

    import threading

    def serve_once() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        body = f"data: {chunk}\n\ndata: {chunk}\n\n".encode()
        conn.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n" + body
        )
        conn.close()

    threading.Thread(target=serve_once, daemon=True).start()
    router = start_router(
        table(
            {"up": {"type": "openai", "base_url": f"http://127.0.0.1:{port}/v1"}},
            [{"path": "/chat/m", "model": "m", "upstream": "up"}],
        )
    )
    with httpx.stream("POST", router.url + "/chat/m", json=STREAM) as response:
        events = read_events(response)
    listener.close()
    assert events[:2] == [f"data: {chunk}", f"data: {chunk}"]
    assert json.loads(events[-1].removeprefix("data: "))["error"]["code"] == "upstream_connection_reset"


def test_slow_first_token_is_504_before_the_stream_starts(fake: FakeUpstream, start_router) -> None:  # type: ignore[no-untyped-def]
    fake.set_behaviour("slow_first_token", seconds=3)
    router = router_for(fake, start_router, timeout=0.3)
    started = time.monotonic()
    response = httpx.post(router.url + "/chat/m", json=STREAM)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 2


def test_chunks_are_relayed_as_they_come_not_buffered(fake: FakeUpstream, start_router) -> None:  # type: ignore[no-untyped-def]
    fake.reply_tokens = 5
    fake.chunk_delay = 0.2
    router = router_for(fake, start_router)
    arrivals = []
    with httpx.stream("POST", router.url + "/chat/m", json=STREAM) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                arrivals.append(time.monotonic())
    assert arrivals[-1] - arrivals[1] >= 0.5  # spread over the model's pace, not delivered at the end


def test_openai_sdk_sees_a_mid_stream_error_as_an_exception(fake_openai: FakeOpenAI, start_router) -> None:  # type: ignore[no-untyped-def]
    import openai

    fake_openai.set_behaviour("reset_mid_stream", after=2)
    router = router_for(fake_openai, start_router)
    client = openai.OpenAI(base_url=router.url + "/v1", api_key="x", max_retries=0)
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
