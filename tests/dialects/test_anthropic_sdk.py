"""`/v1/messages` works for the official `anthropic` SDK, over real sockets, with both kinds of upstream.

The routes are chosen by `model`: a route name, its model, or one of its `aliases:` (here Anthropic's own
model names, as a client built for Anthropic would send them).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import pytest

from tests.fakes import FakeOllama, FakeOpenAI
from tests.support.router_server import RunningRouter, table

MODELS = ["claude-opus-4-1", "claude-haiku-4-5"]  # aliases of the Ollama and the OpenAI route
TEXT = "tok0 tok1 tok2 tok3 tok4"
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _table(fake_ollama: FakeOllama, fake_openai: FakeOpenAI, **top: Any) -> str:
    return table(
        upstreams={
            "ollama": {"type": "ollama", "base_url": fake_ollama.base_url},
            "local": {"type": "openai", "base_url": fake_openai.base_url},
        },
        routes=[
            {"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama", "aliases": [MODELS[0]]},
            {"path": "/chat/local", "model": "smollm2", "upstream": "local", "aliases": [MODELS[1], "haiku"]},
        ],
        **top,
    )


@pytest.fixture
def router(
    fake_ollama: FakeOllama, fake_openai: FakeOpenAI, start_router: Callable[..., RunningRouter]
) -> RunningRouter:
    return start_router(_table(fake_ollama, fake_openai))


@pytest.fixture
def client(router: RunningRouter) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=router.url, api_key="unused", max_retries=0)


def _upstream_body(fake_ollama: FakeOllama, fake_openai: FakeOpenAI, model: str) -> dict[str, Any]:
    fake = fake_ollama if model == MODELS[0] else fake_openai
    return fake.last_request.json  # type: ignore[no-any-return]


@pytest.mark.parametrize("model", MODELS)
def test_create_answers_a_message(client: anthropic.Anthropic, model: str) -> None:
    message = client.messages.create(
        model=model, max_tokens=100, messages=[{"role": "user", "content": "hello there"}]
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.model == model
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == TEXT  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 5 and message.usage.input_tokens == 2


@pytest.mark.parametrize("model", MODELS)
def test_system_and_sampling_reach_the_upstream(
    client: anthropic.Anthropic, fake_ollama: FakeOllama, fake_openai: FakeOpenAI, model: str
) -> None:
    client.messages.create(
        model=model,
        max_tokens=3,
        system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        stop_sequences=["END"],
        metadata={"user_id": "u-1"},
        extra_body={"temperature": 0.5, "top_k": 7},  # older SDKs' arguments, no longer in this one
    )
    sent = _upstream_body(fake_ollama, fake_openai, model)
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}
    if model == MODELS[0]:  # Ollama: options
        assert sent["options"]["temperature"] == 0.5 and sent["options"]["top_k"] == 7
        assert sent["options"]["stop"] == ["END"] and sent["options"]["num_predict"] == 3
    else:
        assert sent["temperature"] == 0.5 and sent["top_k"] == 7 and sent["stop"] == ["END"]
        assert sent["max_tokens"] == 3


@pytest.mark.parametrize("model", MODELS)
def test_max_tokens_reached_is_the_max_tokens_stop_reason(client: anthropic.Anthropic, model: str) -> None:
    message = client.messages.create(model=model, max_tokens=2, messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].text == "tok0 tok1"  # type: ignore[union-attr]
    assert message.stop_reason == "max_tokens"


@pytest.mark.parametrize("model", MODELS)
def test_stream_helper_and_its_final_message(client: anthropic.Anthropic, model: str) -> None:
    with client.messages.stream(
        model=model, max_tokens=100, messages=[{"role": "user", "content": "hello there"}]
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == TEXT and len(texts) == 5
    assert final.content[0].text == TEXT  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 5 and final.usage.input_tokens == 2


@pytest.mark.parametrize("model", MODELS)
def test_raw_stream_has_the_full_event_sequence(client: anthropic.Anthropic, model: str) -> None:
    events = list(
        client.messages.create(
            model=model, max_tokens=100, stream=True, messages=[{"role": "user", "content": "hi"}]
        )
    )
    kinds = [event.type for event in events]
    assert kinds == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_use_round_trip(
    client: anthropic.Anthropic,
    fake_ollama: FakeOllama,
    fake_openai: FakeOpenAI,
    model: str,
    stream: bool,
) -> None:
    fake = fake_ollama if model == MODELS[0] else fake_openai
    fake.reply_text = "Let me look."
    fake.reply_tool_calls = [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]
    question = {"role": "user", "content": "weather in Paris?"}
    ask: dict[str, Any] = {"model": model, "max_tokens": 100, "tools": [WEATHER], "messages": [question]}
    if stream:
        with client.messages.stream(**ask, tool_choice={"type": "auto"}) as events:
            first = events.get_final_message()
    else:
        first = client.messages.create(**ask, tool_choice={"type": "auto"})
    assert [block.type for block in first.content] == ["text", "tool_use"]
    assert first.content[0].text == "Let me look."  # type: ignore[union-attr]
    call = first.content[1]
    assert call.type == "tool_use" and call.name == "get_weather"
    assert call.input == {"city": "Paris", "unit": "celsius"}
    assert first.stop_reason == "tool_use"
    sent = fake.last_request.json
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]

    fake.reply_tool_calls = None
    fake.reply_text = "It is sunny."
    answer = client.messages.create(
        **{
            **ask,
            "messages": [
                question,
                {"role": "assistant", "content": [block.model_dump() for block in first.content]},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "22C, sunny"}],
                },
            ],
        }
    )
    assert answer.content[0].text == "It is sunny."  # type: ignore[union-attr]
    history = fake.last_request.json["messages"]
    assert (
        history[1]["role"] == "assistant" and history[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    )
    assert history[2]["role"] == "tool" and history[2]["content"] == "22C, sunny"


def test_an_unknown_model_is_not_found_in_anthropic_s_shape(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="gpt-9", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "not_found_error" and "gpt-9" in body["error"]["message"]


def test_a_malformed_request_is_a_bad_request_naming_the_field(router: RunningRouter) -> None:
    response = httpx.post(
        router.url + "/v1/messages",
        json={"model": MODELS[0], "max_tokens": 10, "messages": [{"role": "robot", "content": "hi"}]},
    )
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert "messages[0].role" in error["error"]["message"]


def test_an_upstream_failure_mid_stream_is_an_error_event(
    client: anthropic.Anthropic, fake_openai: FakeOpenAI
) -> None:
    fake_openai.set_behaviour("error_line", after=2)
    with pytest.raises(anthropic.APIStatusError) as caught:  # the SDK raises on `event: error`
        with client.messages.stream(
            model=MODELS[1], max_tokens=100, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            for _ in stream:
                pass
    assert "fake upstream failure" in str(caught.value)


def test_beta_query_and_headers_are_accepted(router: RunningRouter) -> None:
    response = httpx.post(
        router.url + "/v1/messages?beta=true",
        headers={"anthropic-version": "2023-06-01", "anthropic-beta": "context-management-2025-06-27"},
        json={
            "model": "haiku",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}],
            "context_management": {"edits": []},
            "thinking": {"type": "adaptive"},
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == TEXT


@pytest.mark.parametrize("model", MODELS)
def test_count_tokens_is_an_estimate(client: anthropic.Anthropic, model: str) -> None:
    text = "x" * 400
    counted = client.messages.count_tokens(model=model, messages=[{"role": "user", "content": text}])
    assert counted.input_tokens == 100
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="gpt-9", messages=[{"role": "user", "content": text}])


def test_x_api_key_authenticates(
    fake_ollama: FakeOllama, fake_openai: FakeOpenAI, start_router: Callable[..., RunningRouter]
) -> None:
    key = "sk-router-" + "a" * 24
    router = start_router(
        _table(fake_ollama, fake_openai, auth={"api_keys": [{"name": "alice", "key": "${ALICE_KEY}"}]}),
        env={"ALICE_KEY": key},
    )
    good = anthropic.Anthropic(base_url=router.url, api_key=key, max_retries=0)
    message = good.messages.create(
        model=MODELS[1], max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].text == TEXT  # type: ignore[union-attr]
    bad = anthropic.Anthropic(base_url=router.url, api_key="sk-wrong-" + "b" * 24, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        bad.messages.create(model=MODELS[1], max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.count_tokens(model=MODELS[1], messages=[{"role": "user", "content": "hi"}])


def _events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    out = []
    name = ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            out.append((name, json.loads(line.removeprefix("data: "))))
    return out


@pytest.mark.parametrize("upstream", ["ollama", "openai"])
def test_pings_while_silent_and_a_stall_is_an_error_event(
    fake_ollama: FakeOllama,
    fake_openai: FakeOpenAI,
    start_router: Callable[..., RunningRouter],
    upstream: str,
) -> None:
    fake = fake_ollama if upstream == "ollama" else fake_openai
    fake.set_behaviour("stall_mid_stream", after=2, seconds=10)
    router = start_router(
        table(
            upstreams={upstream: {"type": upstream, "base_url": fake.base_url}},
            routes=[
                {"path": "/chat/m", "model": fake.models[0], "upstream": upstream, "aliases": ["claude"]}
            ],
            defaults={"heartbeat_interval": 0.1, "stall_timeout": 0.6},
        )
    )
    request = {
        "model": "claude",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    with httpx.stream("POST", router.url + "/v1/messages", json=request, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        seen = _events(response)
    kinds = [name for name, _ in seen]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds.count("ping") >= 3
    assert kinds[-1] == "error" and "message_stop" not in kinds
    assert seen[-1][1]["type"] == "error" and seen[-1][1]["error"]["type"] == "timeout_error"
    assert "stall_timeout" in seen[-1][1]["error"]["message"]
    fake.wait_for(lambda: fake.disconnects == 1, timeout=3)


def test_the_framework_s_own_errors_on_these_paths_are_anthropic_shaped(router: RunningRouter) -> None:
    wrong_method = httpx.get(router.url + "/v1/messages")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["type"] == "error"
    assert wrong_method.json()["error"]["type"] == "invalid_request_error"
    big = b'{"model": "haiku", "messages": [{"role": "user", "content": "' + b"x" * (5 << 20) + b'"}]}'
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        too_large = httpx.post(router.url + path, content=big, headers={"content-type": "application/json"})
        assert too_large.status_code == 413
        assert too_large.json()["error"]["type"] == "request_too_large", path


@pytest.mark.parametrize("model", MODELS)
def test_thinking_reaches_the_upstream_s_reasoning_knob(
    client: anthropic.Anthropic, fake_ollama: FakeOllama, fake_openai: FakeOpenAI, model: str
) -> None:
    client.messages.create(
        model=model,
        max_tokens=5000,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "think"}],
    )
    sent = _upstream_body(fake_ollama, fake_openai, model)
    if model == MODELS[0]:
        assert sent["think"] is True
    else:
        assert sent["reasoning_effort"] == "low"


def test_a_session_keeps_the_conversation_across_messages_requests(
    client: anthropic.Anthropic, fake_openai: FakeOpenAI
) -> None:
    headers = {"X-Session-ID": "anthropic-s1"}
    hello = [{"role": "user", "content": "my name is Ada"}]
    client.messages.create(model=MODELS[1], max_tokens=10, messages=hello, extra_headers=headers)  # type: ignore[arg-type]
    again = [{"role": "user", "content": "what is my name?"}]
    client.messages.create(model=MODELS[1], max_tokens=10, messages=again, extra_headers=headers)  # type: ignore[arg-type]
    history = fake_openai.last_request.json["messages"]
    assert [m["content"] for m in history] == ["my name is Ada", TEXT, "what is my name?"]
