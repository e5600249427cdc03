"""The fakes themselves, exercised over real loopback sockets."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from tests.fakes import (
    BEHAVIOURS,
    FakeOllama,
    FakeOpenAI,
    FakeUpstream,
    async_wait_for,
    split_words,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["ollama", "openai"])
def fake(request: pytest.FixtureRequest) -> FakeUpstream:
    """Either fake, for tests that hold for both dialects."""
    return request.getfixturevalue(f"fake_{request.param}")


def chat_url(fake: FakeUpstream) -> str:
    return fake.root_url + fake.chat_path


def chat_body(fake: FakeUpstream, stream: bool, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": fake.models[0], "messages": [{"role": "user", "content": "say hello"}]}
    body["stream"] = stream
    body.update(extra)
    return body


def parse_stream(fake: FakeUpstream, text: str) -> list[Any]:
    """NDJSON lines or SSE data payloads, parsed; `[DONE]` kept as the string."""
    if isinstance(fake, FakeOllama):
        return [json.loads(line) for line in text.split("\n") if line]
    events = [e for e in text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events), events
    return [e[6:] if e[6:] == "[DONE]" else json.loads(e[6:]) for e in events]


def content_of(fake: FakeUpstream, items: list[Any]) -> str:
    if isinstance(fake, FakeOllama):
        return "".join(i["message"]["content"] for i in items if "message" in i)
    return "".join(
        c["delta"].get("content") or "" for i in items if isinstance(i, dict) for c in i.get("choices", [])
    )


async def read_frames(fake: FakeUpstream, response: aiohttp.ClientResponse, n: int) -> list[bytes]:
    """Read `n` frames (lines / events) of a stream as they arrive."""
    sep = b"\n" if isinstance(fake, FakeOllama) else b"\n\n"
    frames: list[bytes] = []
    buffer = b""
    while len(frames) < n:
        buffer += await response.content.readany()
        while sep in buffer and len(frames) < n:
            frame, buffer = buffer.split(sep, 1)
            frames.append(frame)
    return frames


@pytest.fixture
async def session() -> Any:
    # force_close: every request on a fresh connection, so tests do not depend on pooling.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        yield s


# ---- formats --------------------------------------------------------------------------------------


async def test_ollama_stream_is_ndjson_and_default(
    fake_ollama: FakeOllama, session: aiohttp.ClientSession
) -> None:
    body = chat_body(fake_ollama, True)
    del body["stream"]  # Ollama streams when `stream` is absent
    async with session.post(chat_url(fake_ollama), json=body) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/x-ndjson"
        items = parse_stream(fake_ollama, await r.text())
    assert [i["done"] for i in items] == [False] * 5 + [True]
    assert content_of(fake_ollama, items) == "tok0 tok1 tok2 tok3 tok4"
    last = items[-1]
    assert last["done_reason"] == "stop" and last["eval_count"] == 5 and last["prompt_eval_count"] == 2
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration", "created_at"):
        assert key in last
    await fake_ollama.async_wait_for(
        lambda: fake_ollama.completed_streams == 1
    )  # the handler may finish just after the client
    assert fake_ollama.last_request.json == body


async def test_ollama_non_stream_and_num_predict(
    fake_ollama: FakeOllama, session: aiohttp.ClientSession
) -> None:
    body = chat_body(fake_ollama, False, options={"num_predict": 2})
    async with session.post(chat_url(fake_ollama), json=body) as r:
        data = await r.json()
    assert data["done"] is True and data["done_reason"] == "length" and data["eval_count"] == 2
    assert data["message"] == {"role": "assistant", "content": "tok0 tok1"}
    await fake_ollama.async_wait_for(
        lambda: fake_ollama.completed_streams == 0 and fake_ollama.completed_requests == 1
    )  # the handler may finish just after the client


async def test_ollama_probes_and_unknown_model(
    fake_ollama: FakeOllama, session: aiohttp.ClientSession
) -> None:
    root = fake_ollama.root_url
    async with session.get(root + "/") as r:
        assert await r.text() == "Ollama is running"
    async with session.get(root + "/api/tags") as r:
        assert [m["name"] for m in (await r.json())["models"]] == ["qwen3:32b", "qwen2:7b"]
    async with session.get(root + "/api/version") as r:
        assert "version" in await r.json()
    async with session.post(chat_url(fake_ollama), json={"model": "nope", "stream": False}) as r:
        assert r.status == 404
        assert await r.json() == {"error": 'model "nope" not found, try pulling it first'}
    await (await session.post(chat_url(fake_ollama), json=chat_body(fake_ollama, False))).release()
    async with session.get(root + "/api/ps") as r:
        assert [m["name"] for m in (await r.json())["models"]] == ["qwen3:32b"]
    fake_ollama.models = ["llama3:8b"]
    async with session.get(root + "/api/tags") as r:
        assert [m["name"] for m in (await r.json())["models"]] == ["llama3:8b"]
    assert fake_ollama.probe_count["/api/tags"] == 2 and fake_ollama.probe_count["/"] == 1


async def test_openai_stream_sse(fake_openai: FakeOpenAI, session: aiohttp.ClientSession) -> None:
    assert fake_openai.base_url.endswith("/v1")
    body = chat_body(fake_openai, True, stream_options={"include_usage": True})
    async with session.post(fake_openai.base_url + "/chat/completions", json=body) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        items = parse_stream(fake_openai, await r.text())
    assert items[-1] == "[DONE]"
    chunks = items[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7}
    assert content_of(fake_openai, items) == "tok0 tok1 tok2 tok3 tok4"
    assert len({c["id"] for c in chunks}) == 1

    async with session.post(
        fake_openai.base_url + "/chat/completions", json=chat_body(fake_openai, True)
    ) as r:
        items = parse_stream(fake_openai, await r.text())
    assert items[-1] == "[DONE]" and items[-2]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in i for i in items[:-1])


async def test_openai_non_stream_limits_and_reply_text(
    fake_openai: FakeOpenAI, session: aiohttp.ClientSession
) -> None:
    url = fake_openai.base_url + "/chat/completions"
    async with session.post(url, json=chat_body(fake_openai, False, max_tokens=3)) as r:
        data = await r.json()
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"]["content"] == "tok0 tok1 tok2"
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 3

    markdown = "# Title\n\n- one\n- **two**\n\n```py\nprint(1)\n```\n"
    fake_openai.reply_text = markdown
    async with session.post(url, json=chat_body(fake_openai, True)) as r:
        items = parse_stream(fake_openai, await r.text())
    assert content_of(fake_openai, items) == markdown
    async with session.post(url, json=chat_body(fake_openai, False)) as r:
        assert (await r.json())["choices"][0]["message"]["content"] == markdown
    async with session.post(url, json=chat_body(fake_openai, False, model="gpt-9")) as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "model_not_found"


async def test_openai_probes_and_api_key(fake_openai: FakeOpenAI, session: aiohttp.ClientSession) -> None:
    async with session.get(fake_openai.base_url + "/models") as r:
        data = await r.json()
    assert data["object"] == "list" and [m["id"] for m in data["data"]] == ["smollm2"]
    async with session.get(fake_openai.root_url + "/health") as r:
        assert await r.json() == {"status": "ok"}
    fake_openai.api_key = "sk-test"
    async with session.get(fake_openai.base_url + "/models") as r:
        assert r.status == 401 and (await r.json())["error"]["type"] == "authentication_error"
    headers = {"Authorization": "Bearer sk-test"}
    async with session.get(fake_openai.base_url + "/models", headers=headers) as r:
        assert r.status == 200
    assert fake_openai.probe_count == {"/v1/models": 3, "/health": 1}


def test_split_words_round_trips() -> None:
    for text in ["", "  ", "a", " a b\n\nc  ", "# T\n\n- x\n"]:
        assert "".join(split_words(text)) == text


# ---- failure behaviours ---------------------------------------------------------------------------


async def test_status_behaviours(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set_behaviour("status", code=500)
    async with session.post(chat_url(fake), json=chat_body(fake, True)) as r:
        assert r.status == 500 and "error" in await r.json()
    fake.set_behaviour("status", code=429, retry_after=7)
    async with session.post(chat_url(fake), json=chat_body(fake, False)) as r:
        assert r.status == 429 and r.headers["Retry-After"] == "7"
    fake.set_behaviour("status", code=503, body="overloaded", headers={"X-Why": "busy"})
    async with session.post(chat_url(fake), json=chat_body(fake, False)) as r:
        assert (r.status, await r.text(), r.headers["X-Why"]) == (503, "overloaded", "busy")


async def test_html_and_garbage(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set_behaviour("html")
    async with session.post(chat_url(fake), json=chat_body(fake, False)) as r:
        assert r.status == 502 and r.content_type == "text/html" and "<html>" in await r.text()
    fake.set_behaviour("html", code=200)
    async with session.post(chat_url(fake), json=chat_body(fake, True)) as r:
        assert r.status == 200 and r.content_type == "text/html"
    fake.set_behaviour("garbage")
    async with session.post(chat_url(fake), json=chat_body(fake, False)) as r:
        assert r.status == 200
        with pytest.raises(ValueError):
            json.loads(await r.read())


async def test_malformed_line_then_continues(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set_behaviour("malformed_line", after=2)
    async with session.post(chat_url(fake), json=chat_body(fake, True)) as r:
        text = await r.text()
    with pytest.raises(ValueError):
        parse_stream(fake, text)
    frames = [f for f in text.split("\n") if f] if isinstance(fake, FakeOllama) else text.split("\n\n")[:-1]
    head = 0 if isinstance(fake, FakeOllama) else 1  # the OpenAI role chunk comes first
    assert "not json" in frames[head + 2]
    good = frames[: head + 2] + frames[head + 3 :]
    assert content_of(fake, parse_stream(fake, "\n\n".join(good) + "\n\n")) == "tok0 tok1 tok2 tok3 tok4"
    await fake.async_wait_for(
        lambda: fake.completed_streams == 1
    )  # the handler may finish just after the client
    async with session.post(chat_url(fake), json=chat_body(fake, False)) as r:
        with pytest.raises(ValueError):
            json.loads(await r.read())


async def test_error_line(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set_behaviour("error_line", after=1, message="boom")
    async with session.post(chat_url(fake), json=chat_body(fake, True)) as r:
        items = parse_stream(fake, await r.text())
    last = items[-1]
    assert last["error"] == "boom" if isinstance(fake, FakeOllama) else last["error"]["message"] == "boom"
    assert content_of(fake, items) == "tok0"
    async with session.post(chat_url(fake), json=chat_body(fake, False)) as r:
        assert r.status == 500


async def test_reset_mid_stream(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set_behaviour("reset_mid_stream", after=2)
    received = b""
    with pytest.raises(aiohttp.ClientError):
        async with session.post(chat_url(fake), json=chat_body(fake, True)) as r:
            assert r.status == 200
            async for data in r.content.iter_any():
                received += data
    assert b"tok1" in received and b"tok2" not in received
    with pytest.raises(aiohttp.ClientError):
        async with session.post(chat_url(fake), json=chat_body(fake, False)) as r:
            await r.read()
    await async_wait_for(lambda: fake.in_flight == 0)
    assert fake.disconnects == 0  # the fake cut the line itself: not a client disconnect


async def test_reset_before_response(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set_behaviour("reset_before_response")
    with pytest.raises(aiohttp.ClientError):
        async with session.post(chat_url(fake), json=chat_body(fake, True)) as r:
            await r.read()
    assert fake.chat_count == 1 and fake.disconnects == 0


async def test_slow_first_token(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set_behaviour("slow_first_token", seconds=0.3)
    started = time.monotonic()
    async with session.post(chat_url(fake), json=chat_body(fake, True)) as r:
        assert time.monotonic() - started >= 0.3  # even the headers waited
        await r.read()
    fake.set_behaviour("slow_first_token", seconds=0.3, headers_first=True)
    started = time.monotonic()
    async with session.post(chat_url(fake), json=chat_body(fake, False)) as r:
        assert time.monotonic() - started < 0.25
        await r.read()
        assert time.monotonic() - started >= 0.3
    # a client that gives up during the wait is a disconnect, and the wait ends with it
    fake.set_behaviour("slow_first_token", seconds=30)
    with pytest.raises(asyncio.TimeoutError):
        await session.post(
            chat_url(fake), json=chat_body(fake, False), timeout=aiohttp.ClientTimeout(total=0.2)
        )
    await async_wait_for(lambda: fake.disconnects == 1, timeout=2)
    assert fake.in_flight == 0


async def test_stall_mid_stream_ends_when_client_leaves(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    fake.set_behaviour("stall_mid_stream", after=2, seconds=30)
    head = 0 if isinstance(fake, FakeOllama) else 1
    async with session.post(chat_url(fake), json=chat_body(fake, True)) as r:
        frames = await read_frames(fake, r, head + 2)
        assert b"tok1" in frames[-1]
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(r.content.readany(), 0.2)
    # leaving the `async with` closed the connection
    await async_wait_for(lambda: fake.disconnects == 1, timeout=2)
    assert fake.disconnect_log[0].chunks_sent == 2 and fake.disconnect_log[0].stream
    await async_wait_for(lambda: fake.in_flight == 0)
    assert fake.completed_streams == 0


async def test_disconnect_recorded_and_completed_counted(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    fake.chunk_delay = 0.05
    async with session.post(chat_url(fake), json=chat_body(fake, True)) as r:
        await read_frames(fake, r, 1)
    await async_wait_for(lambda: fake.disconnects == 1, timeout=2)
    assert fake.completed_streams == 0
    fake.chunk_delay = 0
    async with session.post(chat_url(fake), json=chat_body(fake, True)) as r:
        await r.read()
    await fake.async_wait_for(
        lambda: fake.completed_streams == 1 and fake.disconnects == 1
    )  # the handler may finish just after the client


async def test_fail_n_times_then_normal(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.fail_n_times(2)
    statuses = []
    for _ in range(3):
        async with session.post(chat_url(fake), json=chat_body(fake, False)) as r:
            statuses.append(r.status)
    assert statuses == [500, 500, 200]
    fake.fail_n_times(1, "status", code=503)
    async with session.post(chat_url(fake), json=chat_body(fake, False)) as r:
        assert r.status == 503
    assert fake.queued_failures == 0


async def test_probe_status_is_independent_of_chat(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    fake.probe_status = 500
    for path in fake.probe_routes():
        async with session.get(fake.root_url + path) as r:
            assert r.status == 500
    async with session.post(chat_url(fake), json=chat_body(fake, False)) as r:
        assert r.status == 200
    fake.probe_status = None
    fake.set_behaviour("status", code=500)
    probe = next(iter(fake.probe_routes()))
    async with session.get(fake.root_url + probe) as r:
        assert r.status == 200


# ---- hostile behaviours ---------------------------------------------------------------------------


async def test_endless_body_and_line_never_end_until_the_client_leaves(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    for name, stream in (("endless_body", False), ("endless_body", True), ("endless_line", True)):
        fake.clear_records()
        fake.set_behaviour(name, chunk_bytes=4096)
        async with session.post(chat_url(fake), json=chat_body(fake, stream)) as r:
            assert r.status == 200
            received = b""
            while len(received) < 512 * 1024:  # far more than any answer of five tokens
                received += await r.content.readany()
            r.close()
        if name == "endless_line":
            head, _, endless = received.rpartition(b"\n")
            assert b"tok1" in head and b"tok2" not in head  # two good chunks, then no line end ever
        else:
            endless = received
        assert b"\n" not in endless and endless.count(b"a") > 400 * 1024
        await fake.async_wait_for(lambda: fake.disconnects == 1)
        assert fake.endless_bytes >= 512 * 1024


async def test_endless_behaviours_stop_at_their_safety_bound(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    fake.set_behaviour("flood", after=1, chunk_bytes=1024, max_bytes=64 * 1024)
    async with session.post(chat_url(fake), json=chat_body(fake, True)) as r:
        text = await r.text()
    frame = b"\n" if isinstance(fake, FakeOllama) else b": flood\n\n"
    assert "tok0" in text and "tok1" not in text
    assert text.count(frame.decode()) >= 60 * 1024 // len(frame)
    async with session.post(chat_url(fake), json=chat_body(fake, False)) as r:
        assert (await r.read()).strip() == b""  # whitespace only, ended by the bound


async def test_redirect_and_echoed_headers(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set_behaviour("redirect", code=308, location="http://127.0.0.1:1/steal")
    async with session.post(chat_url(fake), json=chat_body(fake, False), allow_redirects=False) as r:
        assert (r.status, r.headers["Location"]) == (308, "http://127.0.0.1:1/steal")
    fake.set_behaviour("echo_headers", code=502)
    headers = {"Authorization": "Bearer sk-echoed", "X-Tenant-Token": "tenant-echoed"}
    async with session.post(chat_url(fake), json=chat_body(fake, False), headers=headers) as r:
        assert r.status == 502
        text = await r.text()
    assert "Bearer sk-echoed" in text and "X-Tenant-Token: tenant-echoed" in text


async def test_hostile_probes_and_everything_received_is_recorded(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    probe = fake.root_url + next(iter(fake.probe_routes()))
    fake.probe_location = "http://127.0.0.1:1/elsewhere"
    async with session.get(probe, allow_redirects=False) as r:
        assert (r.status, r.headers["Location"]) == (307, "http://127.0.0.1:1/elsewhere")
    fake.probe_location = None
    fake.probe_status, fake.probe_echo_headers = 500, True
    async with session.get(probe, headers={"Authorization": "Bearer sk-probe"}) as r:
        assert r.status == 500 and "Bearer sk-probe" in await r.text()
    async with session.post(fake.root_url + "/nowhere", data=b"hello") as r:
        assert r.status == 404
    seen = fake.received
    assert [(q.method, q.path) for q in seen][-1] == ("POST", "/nowhere") and seen[-1].raw == b"hello"
    assert len(seen) == 3 and fake.chat_count == 0


async def test_concurrency_is_recorded(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.chunk_delay = 0.05

    async def one() -> None:
        async with session.post(chat_url(fake), json=chat_body(fake, True)) as r:
            await r.read()

    await asyncio.gather(one(), one(), one())
    # the client may hold the whole answer a moment before the fake's handler has returned
    await fake.async_wait_for(lambda: fake.in_flight == 0 and fake.completed_streams == 3)
    assert fake.max_in_flight == 3
    request = fake.requests[0]
    assert request.method == "POST" and request.path == fake.chat_path
    assert request.headers["content-type"] == "application/json" and request.json["model"] == fake.models[0]


# ---- lifecycle ------------------------------------------------------------------------------------


def test_go_down_and_come_up_on_same_port() -> None:
    with FakeOpenAI() as fake, httpx.Client() as client:
        port = fake.port
        assert client.get(fake.root_url + "/health").status_code == 200
        fake.go_down()
        assert not fake.is_up
        with pytest.raises(httpx.ConnectError):
            client.get(fake.root_url + "/health")
        fake.come_up()
        assert fake.port == port and fake.is_up
        assert client.get(fake.root_url + "/health").status_code == 200
        response = client.post(chat_url(fake), json=chat_body(fake, False))
        assert response.json()["choices"][0]["message"]["content"] == "tok0 tok1 tok2 tok3 tok4"
    assert not fake.is_up
    fake.stop()  # idempotent


async def test_go_down_resets_open_streams(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set_behaviour("stall_mid_stream", after=1, seconds=30)
    with pytest.raises(aiohttp.ClientError):
        async with session.post(chat_url(fake), json=chat_body(fake, True)) as r:
            await read_frames(fake, r, 1)
            fake.go_down()
            await r.read()
    with pytest.raises(aiohttp.ClientConnectorError):
        await session.get(fake.root_url + next(iter(fake.probe_routes())))
    await async_wait_for(lambda: fake.in_flight == 0)
    assert fake.disconnects == 0  # killed by the server, not left by the client
    fake.come_up()
    async with session.post(chat_url(fake), json=chat_body(fake, False)) as r:
        assert r.status == 200


def test_behaviour_validation_and_reset(fake_ollama: FakeOllama) -> None:
    with pytest.raises(ValueError, match="unknown behaviour"):
        fake_ollama.set_behaviour("explode")
    with pytest.raises(TypeError, match="after"):
        fake_ollama.set_behaviour("status", after=3)
    assert set(BEHAVIOURS) >= {"normal", "status", "stall_mid_stream", "slow_first_token"}
    fake_ollama.set_behaviour("stall_mid_stream", seconds=1)
    assert fake_ollama.behaviour["seconds"] == 1 and fake_ollama.behaviour["after"] == 2
    fake_ollama.behaviour = "html"
    fake_ollama.fail_n_times(3)
    fake_ollama.chunk_delay = 1
    fake_ollama.models = []
    fake_ollama.reset()
    assert fake_ollama.behaviour.name == "normal" and fake_ollama.queued_failures == 0
    assert fake_ollama.chunk_delay == 0 and fake_ollama.models == ["qwen3:32b", "qwen2:7b"]


def test_sync_use_and_wait_for(fake_ollama: FakeOllama) -> None:
    fake_ollama.chunk_delay = 0.02
    with (
        httpx.Client() as client,
        client.stream("POST", chat_url(fake_ollama), json={"model": "qwen2:7b"}) as r,
    ):
        next(r.iter_lines())
    assert fake_ollama.wait_for(lambda: fake_ollama.disconnects == 1, timeout=2)
    with pytest.raises(TimeoutError, match="completed_streams"):
        wait_for(lambda: fake_ollama.completed_streams == 5, timeout=0.05)


async def test_wait_for_refuses_to_block_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="async_wait_for"):
        wait_for(lambda: True)


def test_main_entry_serves_until_terminated() -> None:
    command = [sys.executable, "-m", "tests.fakes", "--kind", "openai", "--port", "0", "--chunks", "3"]
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            base_url = proc.stdout.readline().split()[-1]
            body = {"model": "anything", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            text = httpx.post(base_url + "/chat/completions", json=body).text
            assert text.count("tok") == 3 and text.endswith("data: [DONE]\n\n")
        finally:
            proc.terminate()
        assert proc.wait(5) == 0
