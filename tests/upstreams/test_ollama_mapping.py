"""The OpenAI <-> Ollama translation table (docs/protocols.md), shared by streaming and non-streaming."""

from __future__ import annotations

import json

from router.upstreams import ollama_mapping


def test_request_translation_follows_the_table() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
                ],
            },
            {"role": "tool", "content": "42", "tool_call_id": "c1"},
        ],
        "temperature": 0.5,
        "top_p": 0.8,
        "seed": 3,
        "stop": ["a", "b"],
        "response_format": {"type": "json_object"},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    }
    out = ollama_mapping.chat_request(body, "qwen3:32b", 100, {"num_ctx": 8192, "temperature": 1.0}, True)
    assert out["model"] == "qwen3:32b" and out["stream"] is True
    assert out["messages"][0] == {"role": "user", "content": "what is this", "images": ["AAAA"]}
    assert out["messages"][1]["tool_calls"] == [{"function": {"name": "f", "arguments": {"x": 1}}}]
    assert out["messages"][2] == {"role": "tool", "content": "42"}
    # route options are the base; client sampling wins over them; the cap becomes num_predict
    assert out["options"] == {
        "num_ctx": 8192,
        "temperature": 0.5,
        "top_p": 0.8,
        "seed": 3,
        "stop": ["a", "b"],
        "num_predict": 100,
    }
    assert out["format"] == "json"
    assert out["tools"] == body["tools"]


def test_stream_false_is_sent_explicitly() -> None:
    out = ollama_mapping.chat_request({"messages": [{"role": "user", "content": "x"}]}, "m", None, {}, False)
    assert out["stream"] is False
    assert "num_predict" not in out["options"]


def test_json_schema_response_format_becomes_the_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    body = {
        "messages": [],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    }
    assert ollama_mapping.chat_request(body, "m", None, {}, False)["format"] == schema


FINAL = {
    "model": "m",
    "message": {"role": "assistant", "content": "hi there"},
    "done": True,
    "done_reason": "length",
    "prompt_eval_count": 7,
    "eval_count": 3,
}


def test_non_streamed_answer_maps_to_chat_completion() -> None:
    completion = ollama_mapping.completion(FINAL, "qwen3:32b", "rid")
    assert completion["object"] == "chat.completion"
    assert completion["model"] == "qwen3:32b"
    assert completion["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "hi there"}, "finish_reason": "length"}
    ]
    assert completion["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def test_stream_lines_map_to_chunks_with_role_first_and_usage_last() -> None:
    mapper = ollama_mapping.ChunkMapper("m", "rid", include_usage=True)
    first = [
        json.loads(c)
        for c in mapper.chunks({"message": {"role": "assistant", "content": "hi"}, "done": False})
    ]
    middle = [json.loads(c) for c in mapper.chunks({"message": {"content": " there"}, "done": False})]
    last = [
        json.loads(c)
        for c in mapper.chunks(
            {**FINAL, "message": {"role": "assistant", "content": ""}, "done_reason": "stop"}
        )
    ]
    assert first[0]["choices"][0]["delta"] == {"role": "assistant", "content": "hi"}
    assert middle[0]["choices"][0]["delta"] == {"content": " there"}
    assert [c["choices"] for c in last] == [[{"index": 0, "delta": {}, "finish_reason": "stop"}], []]
    assert last[1]["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert {c["id"] for c in first + middle + last} == {"chatcmpl-rid"}


def test_streamed_and_whole_answers_agree_on_finish_reason_and_usage() -> None:
    whole = ollama_mapping.completion(FINAL, "m", "rid")
    chunks = [json.loads(c) for c in ollama_mapping.ChunkMapper("m", "rid", True).chunks(FINAL)]
    assert chunks[0]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert chunks[-1]["usage"] == whole["usage"]


def test_tool_calls_become_openai_tool_calls_and_finish_reason() -> None:
    line = {
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        "done": True,
        "done_reason": "stop",
    }
    completion = ollama_mapping.completion(line, "m", "rid")
    call = completion["choices"][0]["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert completion["choices"][0]["finish_reason"] == "tool_calls"
