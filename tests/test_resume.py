"""Streams that survive their upstream (router.resume), end to end over real sockets.

The fake upstreams continue a final assistant message deterministically: asked to continue a partial
answer P of their scripted answer T, they stream T[len(P):] (tests/fakes, `continued_prefix`). The first
upstream is killed, stalled or corrupted at several points; the client must see T exactly once, as one
answer, whatever dialect it speaks, and the second upstream must have been sent P as the final assistant
message (with vLLM's fields when it declares `continuation: vllm`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from router.observability.tokens import estimate_prompt, estimate_tokens
from tests.chaos import CLIENT, MESSAGES, EventListener, Stream, router_starter, stream
from tests.fakes import FakeOllama, FakeOpenAI, FakeUpstream, split_words, wait_for
from tests.fakes._base import count_prompt_tokens
from tests.support.router_server import RunningRouter, table

Start = Callable[..., RunningRouter]

CHUNKS = ["Hello", " wor", "ld, this", " is", " one", " answer."]
TEXT = "".join(CHUNKS)  # "Hello world, this is one answer."
MODEL = "m1:7b"
NO_BREAKER = {"failure_threshold": 1000, "open_seconds": 30}


@pytest.fixture
def start_router() -> Iterator[Start]:
    yield from router_starter()


def fake(kind: str) -> FakeUpstream:
    """A started fake speaking `kind` (ollama, vllm, llama_cpp, openai: one that cannot continue)."""
    server: FakeUpstream = FakeOllama([MODEL]) if kind == "ollama" else FakeOpenAI([MODEL])
    server.start()
    server.reply_chunks = list(CHUNKS)
    if isinstance(server, FakeOpenAI):
        server.continuation = None if kind == "openai" else kind
    return server


@pytest.fixture
def fakes() -> Iterator[Callable[[str], FakeUpstream]]:
    started: list[FakeUpstream] = []

    def make(kind: str) -> FakeUpstream:
        started.append(fake(kind))
        return started[-1]

    yield make
    for server in started:
        server.stop()


def entry(server: FakeUpstream, kind: str) -> dict[str, Any]:
    """The table's entry for a fake; OpenAI-compatible ones declare how they continue (or do not)."""
    out: dict[str, Any] = {"type": server.kind, "base_url": server.base_url, "circuit_breaker": NO_BREAKER}
    if kind in ("vllm", "llama_cpp"):
        out["continuation"] = kind
    return out


def replicas_table(
    servers: dict[str, tuple[FakeUpstream, str]],
    *,
    max_resumes: int = 1,
    log: Path | None = None,
    **defaults: Any,
) -> str:
    """/chat/m over the servers as replicas, the first one weighted to take every first attempt."""
    names = list(servers)
    refs = [{"name": name, "weight": 1000 if i == 0 else 1} for i, name in enumerate(names)]
    top: dict[str, Any] = {"logging": {"file": str(log)}} if log is not None else {}
    return table(
        upstreams={name: entry(server, kind) for name, (server, kind) in servers.items()},
        routes=[
            {
                "path": "/chat/m",
                "model": MODEL,
                "upstreams": refs,
                "resume": {"enabled": True, "max_resumes": max_resumes},
            }
        ],
        defaults={"stall_timeout": 0.4, **defaults},
        **top,
    )


def fallbacks_table(servers: dict[str, tuple[FakeUpstream, str]], *, max_resumes: int = 1) -> str:
    """/chat/m on the first server, falling back to /chat/<name> on each of the others, in order."""
    names = list(servers)
    routes: list[dict[str, Any]] = [
        {
            "path": "/chat/m",
            "model": MODEL,
            "upstream": names[0],
            "fallbacks": [f"/chat/{name}" for name in names[1:]],
            "resume": {"enabled": True, "max_resumes": max_resumes},
        }
    ]
    routes += [{"path": f"/chat/{name}", "model": MODEL, "upstream": name} for name in names[1:]]
    return table(
        upstreams={name: entry(server, kind) for name, (server, kind) in servers.items()},
        routes=routes,
        defaults={"stall_timeout": 0.4},
    )


BREAKS: dict[str, tuple[str, dict[str, Any]]] = {
    "error": ("error_line", {}),
    "reset": ("reset_mid_stream", {}),
    "malformed": ("malformed_line", {}),
    "stall": ("stall_mid_stream", {"seconds": 10.0}),
}


def break_after(server: FakeUpstream, cause: str, chunks: int) -> None:
    """The next answer of `server` breaks (as `cause` says) after `chunks` content chunks."""
    name, params = BREAKS[cause]
    server.fail_n_times(1, name, after=chunks, pause=0.05, **params)  # the break in a read of its own


def sent_messages(server: FakeUpstream) -> list[dict[str, Any]]:
    """The messages of the last chat request a fake received (Ollama's and OpenAI's are alike here)."""
    return server.last_request.json["messages"]  # type: ignore[no-any-return]


def finish_chunks(result: Stream) -> list[dict[str, Any]]:
    return [c for c in result.chunks if any(ch.get("finish_reason") for ch in c.get("choices") or ())]


def assert_one_answer(result: Stream, served: list[str]) -> None:
    """What an OpenAI client saw is one answer: the whole text once, one role, one finish reason, one id
    and model, and the finish chunk naming the upstreams that served it."""
    assert result.status == 200
    assert result.done, result.data[-3:]
    assert result.text() == TEXT
    chunks = result.chunks
    roles = [ch for c in chunks for ch in c.get("choices") or () if (ch.get("delta") or {}).get("role")]
    assert len(roles) == 1
    [finish] = finish_chunks(result)
    assert [ch["finish_reason"] for ch in finish["choices"]] == ["stop"]
    assert finish["router"] == {"upstreams": served, "resumes": len(served) - 1}
    assert len({c["id"] for c in chunks}) == 1
    assert len({c["model"] for c in chunks}) == 1
    assert result.headers["x-router-upstream"] == served[0]


def assert_continued(server: FakeUpstream, kind: str, partial: str, before: list[dict[str, Any]]) -> None:
    """`server` was sent the conversation with `partial` as the final assistant message, as it continues."""
    messages = sent_messages(server)
    assert messages[-1] == {"role": "assistant", "content": partial}
    assert [(m["role"], m["content"]) for m in messages[:-1]] == [(m["role"], m["content"]) for m in before]
    body = server.last_request.json
    if kind in ("vllm", "llama_cpp"):  # llama-server reads vLLM's fields too (docs/resume.md)
        assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
        assert body["echo"] is False
    else:
        assert "continue_final_message" not in body and "add_generation_prompt" not in body
    assert server.continued == [partial]


def metric(router: RunningRouter, name: str, **labels: str) -> float:
    """One sample of /metrics (0 when the series does not exist)."""
    text = CLIENT.get(router.url + "/metrics").text
    for line in text.splitlines():
        match = re.match(r"^(\w+)(\{[^}]*\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    return 0.0


# ---- the break, at several points, of several kinds -------------------------------------------------


@pytest.mark.parametrize("cause", list(BREAKS))
@pytest.mark.parametrize(("chunks", "partial"), [(1, "Hello"), (2, "Hello wor")], ids=["1-chunk", "mid-word"])
def test_a_broken_stream_goes_on_on_another_replica(
    fakes: Callable[[str], FakeUpstream], start_router: Start, cause: str, chunks: int, partial: str
) -> None:
    a, b = fakes("ollama"), fakes("ollama")
    router = start_router(replicas_table({"a": (a, "ollama"), "b": (b, "ollama")}))
    break_after(a, cause, chunks)
    result = stream(router, "/chat/m")
    assert_one_answer(result, ["a", "b"])
    assert_continued(b, "ollama", partial, MESSAGES)
    assert a.chat_count == b.chat_count == 1
    assert metric(router, "router_stream_resumes_total", route="/chat/m", cause=cause) == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [("vllm", "vllm"), ("llama_cpp", "ollama"), ("ollama", "vllm"), ("ollama", "llama_cpp")],
)
def test_every_continuation_mechanism(
    fakes: Callable[[str], FakeUpstream], start_router: Start, first: str, second: str
) -> None:
    a, b = fakes(first), fakes(second)
    router = start_router(replicas_table({"a": (a, first), "b": (b, second)}))
    break_after(a, "error", 2)
    result = stream(router, "/chat/m", stream_options={"include_usage": True})
    assert_one_answer(result, ["a", "b"])
    assert_continued(b, second, "Hello wor", MESSAGES)
    # usage summed over the attempts: the broken one estimated, the continuation's own counts
    usage = result.chunks[-1]["usage"]
    continuation = split_words(TEXT[len("Hello wor") :])
    prompt = estimate_prompt(MESSAGES) + count_prompt_tokens(sent_messages(b))
    completion = estimate_tokens(len("Hello wor")) + len(continuation)
    assert usage == {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def test_the_first_available_fallback_that_can_continue_takes_over(
    fakes: Callable[[str], FakeUpstream], start_router: Start
) -> None:
    a, plain, b = fakes("ollama"), fakes("openai"), fakes("vllm")
    servers = {"a": (a, "ollama"), "plain": (plain, "openai"), "b": (b, "vllm")}
    router = start_router(fallbacks_table(servers))
    break_after(a, "reset", 1)
    result = stream(router, "/chat/m")
    assert_one_answer(result, ["a", "b"])
    assert_continued(b, "vllm", "Hello", MESSAGES)
    assert plain.chat_count == 0  # continuation "none" (an OpenAI-compatible server that did not say)


def test_an_upstream_that_cannot_continue_is_never_chosen(
    fakes: Callable[[str], FakeUpstream], start_router: Start
) -> None:
    a, plain = fakes("ollama"), fakes("openai")
    router = start_router(replicas_table({"a": (a, "ollama"), "plain": (plain, "openai")}))
    with EventListener(router) as events:
        break_after(a, "error", 2)
        result = stream(router, "/chat/m")
        assert result.status == 200 and not result.done
        assert result.error is not None and result.error["code"] == "upstream_error"
        assert result.text() == "Hello wor"  # what was relayed, and nothing invented
        [event] = events.wait(lambda _: events.of("resume"))
    assert plain.chat_count == 0
    assert event["ok"] is False and event["broken"] == "a" and event["upstream"] is None
    assert metric(router, "router_stream_resume_failures_total", route="/chat/m", cause="error") == 1
    assert metric(router, "router_stream_resumes_total", route="/chat/m", cause="error") == 0


def test_a_break_after_the_role_chunk_only_asks_again(
    fakes: Callable[[str], FakeUpstream], start_router: Start
) -> None:
    a, b = fakes("vllm"), fakes("vllm")
    router = start_router(replicas_table({"a": (a, "vllm"), "b": (b, "vllm")}))
    break_after(a, "error", 0)  # the role chunk went out, no text
    result = stream(router, "/chat/m")
    assert_one_answer(result, ["a", "b"])
    assert sent_messages(b) == MESSAGES and b.continued == []
    assert "continue_final_message" not in b.last_request.json


def test_heartbeats_go_on_while_the_continuation_starts(
    fakes: Callable[[str], FakeUpstream], start_router: Start
) -> None:
    a, b = fakes("ollama"), fakes("ollama")
    router = start_router(
        replicas_table({"a": (a, "ollama"), "b": (b, "ollama")}, heartbeat_interval=0.05, stall_timeout=0.2)
    )
    break_after(a, "error", 2)
    b.set_behaviour("slow_first_token", seconds=0.6)  # longer than stall_timeout: a start is no stall
    result = stream(router, "/chat/m")
    assert_one_answer(result, ["a", "b"])
    assert result.comments >= 5
    assert_continued(b, "ollama", "Hello wor", MESSAGES)


# ---- what is never resumed --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ollama", "vllm"])
def test_a_failure_before_content_fails_over_as_before(
    fakes: Callable[[str], FakeUpstream], start_router: Start, kind: str
) -> None:
    a, b = fakes(kind), fakes(kind)
    router = start_router(replicas_table({"a": (a, kind), "b": (b, kind)}))
    a.fail_n_times(1, "reset_before_response")
    result = stream(router, "/chat/m")
    assert result.status == 200 and result.done and result.text() == TEXT
    assert result.headers["x-router-upstream"] == "b"
    assert "router" not in finish_chunks(result)[0]
    assert sent_messages(b)[-1]["role"] == "user" and b.continued == []
    assert metric(router, "router_stream_resumes_total", route="/chat/m", cause="reset") == 0


@pytest.mark.parametrize("kind", ["ollama", "vllm"])
def test_a_break_during_a_tool_call_ends_with_the_error_event(
    fakes: Callable[[str], FakeUpstream], start_router: Start, kind: str
) -> None:
    a, b = fakes(kind), fakes(kind)
    for server in (a, b):
        server.reply_tool_calls = [{"name": "lookup", "arguments": {"q": "weather in Paris"}}]
    router = start_router(replicas_table({"a": (a, kind), "b": (b, kind)}))
    # the call's first fragment (OpenAI: id and name; Ollama: the whole call) is relayed, then the break
    break_after(a, "reset", len(CHUNKS) + 1)
    result = stream(router, "/chat/m")
    assert result.status == 200 and not result.done
    assert result.error is not None and result.error["code"] == "upstream_connection_reset"
    assert any((ch.get("delta") or {}).get("tool_calls") for c in result.chunks for ch in c["choices"])
    assert b.chat_count == 0
    assert metric(router, "router_stream_resumes_total", route="/chat/m", cause="reset") == 0


def test_without_resume_a_break_ends_the_stream_as_before(
    fakes: Callable[[str], FakeUpstream], start_router: Start
) -> None:
    a, b = fakes("ollama"), fakes("ollama")
    text = replicas_table({"a": (a, "ollama"), "b": (b, "ollama")}).replace("enabled: true", "enabled: false")
    router = start_router(text)
    break_after(a, "error", 2)
    result = stream(router, "/chat/m")
    assert not result.done and result.error is not None and result.text() == "Hello wor"
    assert b.chat_count == 0


# ---- bounds -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_resumes", [1, 2])
def test_resumes_stop_at_max_resumes(
    fakes: Callable[[str], FakeUpstream], start_router: Start, max_resumes: int
) -> None:
    a, b, c = fakes("ollama"), fakes("vllm"), fakes("ollama")
    servers = {"a": (a, "ollama"), "b": (b, "vllm"), "c": (c, "ollama")}
    router = start_router(fallbacks_table(servers, max_resumes=max_resumes))
    break_after(a, "error", 1)  # "Hello"
    break_after(b, "error", 2)  # " world,", " this": b continues from "Hello" and breaks in turn
    result = stream(router, "/chat/m")
    if max_resumes == 1:
        assert not result.done and result.error is not None
        assert result.text() == "Hello world, this"
        assert c.chat_count == 0
    else:
        assert_one_answer(result, ["a", "b", "c"])
        assert_continued(c, "ollama", "Hello world, this", MESSAGES)
    assert_continued(b, "vllm", "Hello", MESSAGES)
    assert metric(router, "router_stream_resumes_total", route="/chat/m", cause="error") == max_resumes


def test_a_resume_never_goes_back_to_an_upstream_that_broke(
    fakes: Callable[[str], FakeUpstream], start_router: Start
) -> None:
    a, b = fakes("ollama"), fakes("ollama")
    router = start_router(replicas_table({"a": (a, "ollama"), "b": (b, "ollama")}, max_resumes=5))
    break_after(a, "error", 1)
    break_after(b, "error", 1)
    result = stream(router, "/chat/m")
    assert not result.done and result.error is not None
    assert result.text() == "Hello world,"
    assert a.chat_count == b.chat_count == 1  # no ping-pong between two broken replicas


def test_the_continuation_asks_for_what_is_left_of_max_tokens(
    fakes: Callable[[str], FakeUpstream], start_router: Start
) -> None:
    a, b = fakes("ollama"), fakes("vllm")
    router = start_router(replicas_table({"a": (a, "ollama"), "b": (b, "vllm")}))
    break_after(a, "error", 2)
    result = stream(router, "/chat/m", max_tokens=6)
    assert result.status == 200 and result.done
    assert a.last_request.json["options"]["num_predict"] == 6
    assert b.last_request.json["max_tokens"] == 6 - estimate_tokens(len("Hello wor"))


# ---- what operators see ----------------------------------------------------------------------------


def test_log_event_and_metric_of_a_resume(
    fakes: Callable[[str], FakeUpstream], start_router: Start, tmp_path: Path
) -> None:
    a, b = fakes("ollama"), fakes("ollama")
    log = tmp_path / "router.log"
    router = start_router(replicas_table({"a": (a, "ollama"), "b": (b, "ollama")}, log=log))
    with EventListener(router) as events:
        break_after(a, "stall", 2)
        result = stream(router, "/chat/m")
        assert_one_answer(result, ["a", "b"])
        [event] = events.wait(lambda _: events.of("resume"))
    assert event["ok"] is True and event["cause"] == "stall" and event["route"] == "/chat/m"
    assert (event["broken"], event["upstream"], event["upstreams"], event["resumes"]) == (
        "a",
        "b",
        ["a", "b"],
        1,
    )
    assert "stall_timeout" in event["message"]

    def request_lines() -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return [line for line in lines if line["event"] == "request"]

    [line] = wait_for(request_lines)
    assert (line["status"], line["outcome"], line["upstream"]) == (200, "ok", "a")
    assert line["resumes"] == 1 and line["upstreams"] == ["a", "b"]
    continuation = split_words(TEXT[len("Hello wor") :])
    assert line["completion_tokens"] == estimate_tokens(len("Hello wor")) + len(continuation)
    assert line["prompt_tokens"] == estimate_prompt(MESSAGES) + count_prompt_tokens(sent_messages(b))
    assert line["tokens_estimated"] is True  # the broken attempt's share is estimated
    resumes = [json.loads(x) for x in log.read_text().splitlines() if '"event":"resume"' in x]
    assert len(resumes) == 1 and resumes[0]["upstream"] == "b"
    assert metric(router, "router_stream_resumes_total", route="/chat/m", cause="stall") == 1


def test_the_client_leaving_during_a_resume_cancels_the_continuation(
    fakes: Callable[[str], FakeUpstream], start_router: Start
) -> None:
    a, b = fakes("ollama"), fakes("ollama")
    router = start_router(replicas_table({"a": (a, "ollama"), "b": (b, "ollama")}))
    break_after(a, "error", 2)
    b.set_behaviour("slow_first_token", seconds=10.0, headers_first=True)
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", router.url + "/chat/m", json={"messages": MESSAGES, "stream": True}) as r:
            lines = r.iter_lines()
            while "wor" not in next(lines):
                pass
            wait_for(lambda: b.in_flight == 1)
    wait_for(lambda: b.disconnects == 1, timeout=2.0)
    wait_for(lambda: router.sync(lambda: router.runtime.current.table.routes[0].replicas[1].in_flight) == 0)


def test_the_client_leaving_during_the_continuation_closes_it(
    fakes: Callable[[str], FakeUpstream], start_router: Start
) -> None:
    a, b = fakes("ollama"), fakes("ollama")
    router = start_router(replicas_table({"a": (a, "ollama"), "b": (b, "ollama")}, stall_timeout=5))
    break_after(a, "error", 2)
    b.chunk_delay = 1.0  # the continuation's first piece comes at once, the next ones slowly
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", router.url + "/chat/m", json={"messages": MESSAGES, "stream": True}) as r:
            lines = r.iter_lines()
            while "ld," not in next(lines):  # the continuation's first piece reached the client
                pass
    wait_for(lambda: b.disconnects == 1, timeout=0.9)  # before its next piece was due
    assert b.completed_streams == 0


# ---- sessions and dialects -------------------------------------------------------------------------


def test_a_session_stores_the_whole_resumed_answer(
    fakes: Callable[[str], FakeUpstream], start_router: Start
) -> None:
    a, b = fakes("ollama"), fakes("ollama")
    router = start_router(replicas_table({"a": (a, "ollama"), "b": (b, "ollama")}))
    break_after(a, "reset", 2)
    result = stream(router, "/chat/m", session_id="resumed-1")
    assert_one_answer(result, ["a", "b"])
    answer = CLIENT.post(
        router.url + "/chat/m",
        json={"messages": [{"role": "user", "content": "and then?"}], "session_id": "resumed-1"},
    )
    assert answer.status_code == 200
    assert sent_messages(a)[-3:] == [
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": TEXT},
        {"role": "user", "content": "and then?"},
    ]


def sse_events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of a named-event SSE stream."""
    events, name = [], ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    return events


def test_anthropic_messages_see_one_answer(fakes: Callable[[str], FakeUpstream], start_router: Start) -> None:
    a, b = fakes("ollama"), fakes("vllm")
    router = start_router(replicas_table({"a": (a, "ollama"), "b": (b, "vllm")}))
    break_after(a, "malformed", 2)
    request = {"model": "m", "max_tokens": 100, "stream": True, "messages": MESSAGES}
    with CLIENT.stream("POST", router.url + "/v1/messages", json=request) as response:
        events = sse_events(response)
    names = [name for name, _ in events if name != "ping"]
    assert names.count("message_start") == 1 and names.count("content_block_start") == 1
    assert names[-2:] == ["message_delta", "message_stop"]
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == TEXT
    delta = next(d for n, d in events if n == "message_delta")
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["router"] == {"upstreams": ["a", "b"], "resumes": 1}
    assert delta["usage"]["output_tokens"] == estimate_tokens(len("Hello wor")) + len(split_words(TEXT[9:]))
    assert_continued(b, "vllm", "Hello wor", MESSAGES)


def test_responses_see_one_answer(fakes: Callable[[str], FakeUpstream], start_router: Start) -> None:
    a, b = fakes("vllm"), fakes("ollama")
    router = start_router(replicas_table({"a": (a, "vllm"), "b": (b, "ollama")}))
    break_after(a, "reset", 1)
    request = {"model": "m", "stream": True, "input": "hello there", "store": False}
    with CLIENT.stream("POST", router.url + "/v1/responses", json=request) as response:
        events = sse_events(response)
    kinds = [name for name, _ in events]
    assert kinds.count("response.output_item.added") == 1 and kinds[-1] == "response.completed"
    assert "error" not in kinds
    text = "".join(d["delta"] for n, d in events if n == "response.output_text.delta")
    assert text == TEXT
    completed = events[-1][1]
    assert completed["response"]["status"] == "completed"
    assert completed["response"]["output"][0]["content"][0]["text"] == TEXT
    assert completed["router"] == {"upstreams": ["a", "b"], "resumes": 1}
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    assert sent_messages(b)[-1] == {"role": "assistant", "content": "Hello"}


def test_ollama_clients_see_one_answer(fakes: Callable[[str], FakeUpstream], start_router: Start) -> None:
    a, b = fakes("ollama"), fakes("llama_cpp")
    router = start_router(replicas_table({"a": (a, "ollama"), "b": (b, "llama_cpp")}))
    break_after(a, "stall", 1)
    request = {"model": "m", "messages": MESSAGES}  # Ollama streams by default
    with CLIENT.stream("POST", router.url + "/api/chat", json=request) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]
    assert "".join(line["message"]["content"] for line in lines) == TEXT
    assert lines[-1]["done_reason"] == "stop" and "error" not in lines[-1]
    assert lines[-1]["router"] == {"upstreams": ["a", "b"], "resumes": 1}
    assert_continued(b, "llama_cpp", "Hello", MESSAGES)


# ---- the official SDKs read a resumed answer as one --------------------------------------------------


def test_the_sdks_read_one_answer(fakes: Callable[[str], FakeUpstream], start_router: Start) -> None:
    import anthropic
    import ollama
    import openai

    a, b = fakes("ollama"), fakes("vllm")
    router = start_router(replicas_table({"a": (a, "ollama"), "b": (b, "vllm")}))

    break_after(a, "reset", 2)
    sdk = openai.OpenAI(base_url=router.url + "/v1", api_key="unused", max_retries=0)
    events = list(sdk.chat.completions.create(model="m", messages=MESSAGES, stream=True))  # type: ignore[arg-type]
    assert "".join(e.choices[0].delta.content or "" for e in events if e.choices) == TEXT
    assert [e.choices[0].finish_reason for e in events if e.choices and e.choices[0].finish_reason] == [
        "stop"
    ]
    assert (events[-1].model_extra or {}).get("router") == {"upstreams": ["a", "b"], "resumes": 1}

    break_after(a, "error", 1)
    claude = anthropic.Anthropic(base_url=router.url, api_key="unused", max_retries=0)
    with claude.messages.stream(model="m", max_tokens=100, messages=MESSAGES) as messages:  # type: ignore[arg-type]
        final = messages.get_final_message()
    assert [block.text for block in final.content if block.type == "text"] == [TEXT]
    assert final.stop_reason == "end_turn"

    break_after(a, "stall", 2)
    parts = list(ollama.Client(host=router.url).chat(model="m", messages=MESSAGES, stream=True))
    assert "".join(part.message.content or "" for part in parts) == TEXT
    assert parts[-1].done and parts[-1].done_reason == "stop"
    assert a.chat_count == 3 and b.continued == ["Hello wor", "Hello", "Hello wor"]
