"""The fakes answer tool calls (`reply_tool_calls`) as each real server does, whole and streamed."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.fakes import FakeOllama, FakeOpenAI

CALLS = [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "now", "arguments": {}}]
HI = [{"role": "user", "content": "hi"}]


def test_openai_whole_answer_has_tool_calls_with_json_text_arguments(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply_text = ""
    fake_openai.reply_tool_calls = CALLS
    answer = httpx.post(
        fake_openai.base_url + "/chat/completions", json={"model": "smollm2", "messages": HI}
    ).json()
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    calls = choice["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "now"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    assert calls[0]["id"] != calls[1]["id"] and calls[0]["type"] == "function"


def test_openai_stream_sends_name_then_argument_pieces(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply_tool_calls = CALLS[:1]
    body = {"model": "smollm2", "messages": HI, "stream": True}
    with httpx.stream("POST", fake_openai.base_url + "/chat/completions", json=body) as response:
        lines = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks: list[dict[str, Any]] = [json.loads(line) for line in lines[:-1]]
    deltas = [
        c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if "tool_calls" in c["choices"][0]["delta"]
    ]
    assert deltas[0]["function"]["name"] == "get_weather" and deltas[0]["id"]
    assert len(deltas) >= 3  # the arguments come in pieces, as OpenAI streams them
    assert json.loads("".join(d["function"]["arguments"] for d in deltas)) == {"city": "Paris"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_ollama_sends_each_call_whole_with_object_arguments(fake_ollama: FakeOllama) -> None:
    fake_ollama.reply_tool_calls = CALLS
    whole = httpx.post(
        fake_ollama.base_url + "/api/chat", json={"model": "qwen3:32b", "messages": HI, "stream": False}
    )
    assert whole.json()["message"]["tool_calls"][0] == {
        "function": {"name": "get_weather", "arguments": {"city": "Paris"}}
    }
    with httpx.stream(
        "POST", fake_ollama.base_url + "/api/chat", json={"model": "qwen3:32b", "messages": HI}
    ) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    with_calls = [line for line in lines if line["message"].get("tool_calls")]
    assert len(with_calls) == 1 and not with_calls[0]["done"]
    assert [c["function"]["name"] for c in with_calls[0]["message"]["tool_calls"]] == ["get_weather", "now"]
    assert lines[-1]["done"] is True and lines[-1]["done_reason"] == "stop"


def test_a_function_of_the_request_decides_the_calls(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply_tool_calls = lambda body: CALLS[:1] if body.get("tools") else None
    url = fake_openai.base_url + "/chat/completions"
    plain = httpx.post(url, json={"model": "smollm2", "messages": HI}).json()["choices"][0]
    assert plain["finish_reason"] == "stop" and "tool_calls" not in plain["message"]
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    called = httpx.post(url, json={"model": "smollm2", "messages": HI, "tools": tools}).json()["choices"][0]
    assert called["finish_reason"] == "tool_calls"
