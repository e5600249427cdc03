"""Optional fields of the wrong shape are a 400 naming the field, on every route, never a 500.

They used to reach the Ollama translation unchecked and fail there with a traceback. Each case is sent
over a real socket to a route on the fake Ollama and to `/v1/chat/completions`.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fakes import FakeOllama
from tests.support.router_server import RunningRouter

HI = {"role": "user", "content": "hi"}
CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "tool_calls as a string",
        {"messages": [{"role": "assistant", "content": "", "tool_calls": "call it"}, HI]},
        "messages[0].tool_calls",
    ),
    (
        "tool_calls as numbers",
        {"messages": [{"role": "assistant", "content": "", "tool_calls": [1, 2]}, HI]},
        "messages[0].tool_calls[0]",
    ),
    (
        "a tool call's function as a string",
        {"messages": [{"role": "assistant", "tool_calls": [{"function": "f"}]}, HI]},
        "messages[0].tool_calls[0].function",
    ),
    (
        "image_url as a string",
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "http://x/y.png"}]}]},
        "messages[0].content[0].image_url",
    ),
    (
        "an image url as a number",
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 7}}]}]},
        "messages[0].content[0].image_url.url",
    ),
    (
        "a text part whose text is a number",
        {"messages": [HI, {"role": "user", "content": [{"type": "text", "text": 42}]}]},
        "messages[1].content[0].text",
    ),
    (
        "a content part that is not an object",
        {"messages": [{"role": "user", "content": ["hi"]}]},
        "messages[0].content[0]",
    ),
    (
        "json_schema as a string",
        {"messages": [HI], "response_format": {"type": "json_schema", "json_schema": "{}"}},
        "response_format.json_schema",
    ),
    (
        "a schema that is not an object",
        {"messages": [HI], "response_format": {"type": "json_schema", "json_schema": {"schema": [1]}}},
        "response_format.json_schema.schema",
    ),
    ("response_format as a string", {"messages": [HI], "response_format": "json"}, "response_format"),
    ("tools as a string", {"messages": [HI], "tools": "all of them"}, "tools"),
    ("a penalty as a string", {"messages": [HI], "presence_penalty": "high"}, "presence_penalty"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(("body", "param"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_malformed_optional_field_is_a_400_naming_it(
    both_upstreams_router: RunningRouter,
    fake_ollama: FakeOllama,
    body: dict[str, Any],
    param: str,
    stream: bool,
) -> None:
    for path, extra in (("/chat/qwen3", {}), ("/v1/chat/completions", {"model": "qwen3"})):
        response = httpx.post(
            both_upstreams_router.url + path, json={**body, **extra, "stream": stream}, timeout=10
        )
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["type"], error["param"]) == ("invalid_request_error", param)
        assert param in error["message"]
    assert fake_ollama.chat_count == 0


def test_the_well_formed_fields_still_reach_ollama(
    both_upstreams_router: RunningRouter, fake_ollama: FakeOllama
) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    body = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "text", "text": None}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}],
            },
        ],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    }
    response = httpx.post(both_upstreams_router.url + "/chat/qwen3", json=body, timeout=10)
    assert response.status_code == 200, response.text
    sent = fake_ollama.last_request.json
    assert sent["format"] == schema and sent["tools"] == body["tools"]
    assert sent["messages"][0]["content"] == "look\n"
    assert sent["messages"][1]["tool_calls"] == [{"function": {"name": "f", "arguments": {}}}]
    assert sent["messages"][2]["images"] == ["AAAA"]
