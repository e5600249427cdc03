"""POST <route.path>: an OpenAI request in, an OpenAI answer out, whichever dialect the upstream speaks."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.fakes import FakeOllama, FakeOpenAI
from tests.support.router_server import RunningRouter

HELLO = {"messages": [{"role": "user", "content": "hello"}]}


def sse_payloads(response: httpx.Response) -> list[str]:
    """The `data:` payloads of an SSE body, in order (comments and blank lines dropped)."""
    return [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]


@pytest.mark.parametrize("path", ["/chat/qwen3", "/chat/local"])
def test_non_streaming_answer_is_an_openai_chat_completion(
    both_upstreams_router: RunningRouter, path: str
) -> None:
    response = httpx.post(both_upstreams_router.url + path, json=HELLO)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "tok0 tok1 tok2 tok3 tok4"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 5
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 5


@pytest.mark.parametrize("path", ["/chat/qwen3", "/chat/local"])
def test_streaming_answer_is_sse_chunks_ending_in_done(
    both_upstreams_router: RunningRouter, path: str
) -> None:
    request = {**HELLO, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", both_upstreams_router.url + path, json=request) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        payloads = sse_payloads(response)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "tok0 tok1 tok2 tok3 tok4"
    finishes = [
        c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]
    ]
    assert finishes == ["stop"]
    usage_chunks = [c for c in chunks if not c["choices"]]
    assert len(usage_chunks) == 1 and usage_chunks[0]["usage"]["completion_tokens"] == 5


def test_streaming_without_include_usage_sends_no_usage_chunk(both_upstreams_router: RunningRouter) -> None:
    with httpx.stream("POST", both_upstreams_router.url + "/chat/qwen3", json={**HELLO, "stream": True}) as r:
        chunks = [json.loads(p) for p in sse_payloads(r)[:-1]]
    assert all(c["choices"] for c in chunks)


def test_ollama_request_is_translated_with_cap_options_and_explicit_stream(
    both_upstreams_router: RunningRouter, fake_ollama: FakeOllama
) -> None:
    request = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        ],
        "max_tokens": 999_999,
        "temperature": 0.3,
        "top_p": 0.9,
        "seed": 7,
        "stop": "END",
    }
    assert httpx.post(both_upstreams_router.url + "/chat/qwen3", json=request).status_code == 200
    sent = fake_ollama.last_request.json
    assert sent["model"] == "qwen3:32b"
    assert sent["stream"] is False  # explicit: Ollama would stream by default
    assert sent["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "a\nb"},
    ]
    assert sent["options"] == {
        "num_ctx": 4096,
        "temperature": 0.3,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["END"],
        "num_predict": 2048,
    }


def test_missing_max_tokens_is_set_to_the_route_cap(
    both_upstreams_router: RunningRouter, fake_openai: FakeOpenAI
) -> None:
    assert httpx.post(both_upstreams_router.url + "/chat/local", json=HELLO).status_code == 200
    assert fake_openai.last_request.json["max_tokens"] == 64


def test_openai_upstream_gets_the_body_passed_through_with_model_and_cap_rewritten(
    both_upstreams_router: RunningRouter, fake_openai: FakeOpenAI
) -> None:
    request = {
        **HELLO,
        "model": "whatever",
        "max_completion_tokens": 500,
        "logit_bias": {"50256": -100},
        "user": "u-1",
        "session_id": "router-only",
    }
    assert httpx.post(both_upstreams_router.url + "/chat/local", json=request).status_code == 200
    sent = fake_openai.last_request.json
    assert sent["model"] == "smollm2"
    assert sent["max_tokens"] == 64 and sent["max_completion_tokens"] == 64
    assert sent["logit_bias"] == {"50256": -100} and sent["user"] == "u-1"
    assert "session_id" not in sent


def test_a_smaller_client_max_tokens_is_kept_and_length_finish_is_reported(
    both_upstreams_router: RunningRouter, fake_ollama: FakeOllama
) -> None:
    body = httpx.post(both_upstreams_router.url + "/chat/qwen3", json={**HELLO, "max_tokens": 2}).json()
    assert fake_ollama.last_request.json["options"]["num_predict"] == 2
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["message"]["content"] == "tok0 tok1"


def test_request_id_is_taken_from_the_client_sent_upstream_and_returned(
    both_upstreams_router: RunningRouter, fake_openai: FakeOpenAI
) -> None:
    response = httpx.post(
        both_upstreams_router.url + "/chat/local", json=HELLO, headers={"X-Request-ID": "abc-123"}
    )
    assert response.headers["x-request-id"] == "abc-123"
    assert fake_openai.last_request.headers["x-request-id"] == "abc-123"


def test_request_id_is_generated_when_absent_or_unsafe(both_upstreams_router: RunningRouter) -> None:
    first = httpx.post(both_upstreams_router.url + "/chat/local", json=HELLO)
    unsafe = httpx.post(
        both_upstreams_router.url + "/chat/local", json=HELLO, headers={"X-Request-ID": "a b\tc"}
    )
    assert len(first.headers["x-request-id"]) >= 16
    assert unsafe.headers["x-request-id"] != "a b\tc"
    assert httpx.get(both_upstreams_router.url + "/healthz").headers["x-request-id"]


def test_answer_names_the_route_and_upstream_that_served_it(both_upstreams_router: RunningRouter) -> None:
    response = httpx.post(both_upstreams_router.url + "/chat/qwen3", json=HELLO)
    assert response.headers["x-router-upstream"] == "ollama"
    assert response.headers["x-router-route"] == "/chat/qwen3"
