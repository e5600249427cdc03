"""The Responses <-> chat translation, table by table: requests, whole answers, streams, stored turns."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from router.dialects.openai_responses import (
    ResponsesContext,
    ResponsesStream,
    chat_body,
    input_messages,
    parse_request,
    prior_messages,
)
from router.errors import ErrorReply, InvalidRequest

CALL = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'}
CHAT_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
}

REQUESTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "string input",
        {"model": "m", "input": "Hi"},
        {"model": "m", "stream": False, "messages": [{"role": "user", "content": "Hi"}]},
    ),
    (
        "instructions first, developer is system, parts joined",
        {
            "input": [
                {"role": "developer", "content": "be brief"},
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}],
                },
            ],
            "instructions": "You are terse.",
        },
        {
            "stream": False,
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "a\nb"},
            ],
        },
    ),
    (
        "an image makes chat parts",
        {
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "what?"},
                        {"type": "input_image", "image_url": "data:image/png;base64,AA"},
                    ],
                }
            ]
        },
        {
            "stream": False,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                    ],
                }
            ],
        },
    ),
    (
        "a function call round trip joins the assistant message",
        {
            "input": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [{"type": "output_text", "text": "checking"}]},
                CALL,
                {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            ]
        },
        {
            "stream": False,
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": "checking", "tool_calls": [CHAT_CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            ],
        },
    ),
    (
        "calls without a message, list output, reasoning skipped",
        {
            "input": [
                {"role": "user", "content": "go"},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x"},
                CALL,
                {**CALL, "call_id": "call_2"},
                {
                    "type": "function_call_output",
                    "call_id": "call_1",
                    "output": [{"type": "input_text", "text": "o"}],
                },
            ]
        },
        {
            "stream": False,
            "messages": [
                {"role": "user", "content": "go"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [CHAT_CALL, {**CHAT_CALL, "id": "call_2"}],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "o"},
            ],
        },
    ),
    (
        "tools, tool_choice, limits, sampling, stream with usage, ignored fields",
        {
            "input": "x",
            "stream": True,
            "max_output_tokens": 64,
            "temperature": 0.5,
            "top_p": 0.9,
            "tools": [
                {
                    "type": "function",
                    "name": "f",
                    "description": "d",
                    "parameters": {"type": "object"},
                    "strict": True,
                },
                {"type": "web_search"},
            ],
            "tool_choice": {"type": "function", "name": "f"},
            "parallel_tool_calls": False,
            "reasoning": {"effort": "high"},
            "include": ["reasoning.encrypted_content"],
            "truncation": "auto",
            "metadata": {"k": "v"},
            "user": "u",
            "prompt_cache_key": "p",
            "service_tier": "auto",
            "store": False,
        },
        {
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": 64,
            "temperature": 0.5,
            "top_p": 0.9,
            "messages": [{"role": "user", "content": "x"}],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "description": "d",
                        "parameters": {"type": "object"},
                        "strict": True,
                    },
                }
            ],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "parallel_tool_calls": False,
        },
    ),
    (
        "text.format json_schema is a response_format",
        {
            "input": "x",
            "text": {
                "format": {"type": "json_schema", "name": "o", "schema": {"type": "object"}, "strict": True},
                "verbosity": "low",
            },
        },
        {
            "stream": False,
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "o", "schema": {"type": "object"}, "strict": True},
            },
        },
    ),
]


@pytest.mark.parametrize(("name", "request_body", "expected"), REQUESTS, ids=[r[0] for r in REQUESTS])
def test_request_to_chat_body(name: str, request_body: dict[str, Any], expected: dict[str, Any]) -> None:
    request = parse_request(json.dumps(request_body).encode())
    typed, body = chat_body(request, input_messages(request))
    assert body == expected
    assert typed.stream == expected["stream"]
    assert typed.max_tokens == expected.get("max_tokens")


BAD_REQUESTS: list[tuple[dict[str, Any] | bytes, str | None]] = [
    (b"not json", None),
    (b"[1]", None),
    ({"input": 3}, "input"),
    ({"input": []}, "input"),
    ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
    (
        {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
        "input[0].content[0].type",
    ),
    (
        {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
        "input[0].content[0].image_url",
    ),
    ({"input": [{"type": "mystery"}]}, "input[0].type"),
    ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    ({"input": "x", "temperature": 3}, "temperature"),
    ({"input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
]


@pytest.mark.parametrize(("body", "param"), BAD_REQUESTS)
def test_bad_requests_name_the_field(body: dict[str, Any] | bytes, param: str | None) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(InvalidRequest) as caught:
        request = parse_request(raw)
        chat_body(request, input_messages(request))
    assert caught.value.status == 400
    assert caught.value.param == param


def _context(**fields: Any) -> ResponsesContext:
    request = parse_request(json.dumps({"input": "hi", "model": "m", **fields}).encode())
    return ResponsesContext(request, input_messages(request))


def _completion(message: dict[str, Any], finish: str = "stop") -> bytes:
    return json.dumps(
        {
            "id": "c",
            "object": "chat.completion",
            "model": "up",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        }
    ).encode()


ANSWERS: list[tuple[str, dict[str, Any], str, str, list[dict[str, Any]]]] = [
    ("text", {"content": "Hello"}, "stop", "completed", [{"type": "message", "text": "Hello"}]),
    ("cut off", {"content": "Hel"}, "length", "incomplete", [{"type": "message", "text": "Hel"}]),
    (
        "tool call",
        {"content": None, "tool_calls": [CHAT_CALL]},
        "tool_calls",
        "completed",
        [
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
            }
        ],
    ),
    (
        "text and an Ollama-style object argument",
        {"content": "ok", "tool_calls": [{"id": "c9", "function": {"name": "f", "arguments": {"a": 1}}}]},
        "tool_calls",
        "completed",
        [
            {"type": "message", "text": "ok"},
            {"type": "function_call", "call_id": "c9", "name": "f", "arguments": '{"a":1}'},
        ],
    ),
    ("empty", {"content": ""}, "stop", "completed", [{"type": "message", "text": ""}]),
]


def _summary(item: dict[str, Any]) -> dict[str, Any]:
    if item["type"] == "message":
        return {"type": "message", "text": "".join(part["text"] for part in item["content"])}
    return {key: item[key] for key in ("type", "call_id", "name", "arguments")}


@pytest.mark.parametrize(
    ("name", "message", "finish", "status", "output"), ANSWERS, ids=[a[0] for a in ANSWERS]
)
def test_whole_answer(
    name: str, message: dict[str, Any], finish: str, status: str, output: list[Any]
) -> None:
    stored: list[tuple[list[dict[str, Any]], str]] = []
    context = _context(instructions="be nice")
    context.record = lambda messages, text: stored.append((messages, text))
    response = json.loads(context.answer(_completion(message, finish)))
    assert response["object"] == "response"
    assert response["id"] == context.response_id and response["id"].startswith("resp_")
    assert response["status"] == status
    assert [_summary(item) for item in response["output"]] == output
    assert response["usage"]["input_tokens"] == 3
    assert response["usage"]["output_tokens"] == 4
    assert response["usage"]["total_tokens"] == 7
    assert response["instructions"] == "be nice"
    assert (response["incomplete_details"] is not None) == (status == "incomplete")
    # the stored conversation: the input (not the instructions), then the answer
    [(messages, text)] = stored
    assert messages[0] == {"role": "user", "content": "hi"}
    if message.get("tool_calls"):
        assert messages[-1]["tool_calls"][0]["id"] == output[-1]["call_id"]
        assert text == ""
    else:
        assert len(messages) == 1 and text == message["content"]


def test_store_false_records_nothing() -> None:
    context = _context(store=False)  # the handler leaves `record` None for store: false
    assert json.loads(context.answer(_completion({"content": "x"})))["store"] is False


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, usage: bool = False) -> bytes:
    body: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "model": "up"}
    body["choices"] = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    if usage:
        body["usage"] = {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7}
    return json.dumps(body).encode()


def _tool_delta(index: int, call_id: str | None, name: str | None, arguments: str) -> dict[str, Any]:
    function: dict[str, Any] = {"arguments": arguments}
    if name:
        function["name"] = name
    call: dict[str, Any] = {"index": index, "function": function}
    if call_id:
        call.update(id=call_id, type="function")
    return {"tool_calls": [call]}


TEXT_STREAM = [
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"content": "Hel"}),
    _chunk({"content": "lo"}),
    _chunk({}, "stop"),
    _chunk(usage=True),
]
MSG = ["response.output_item.added", "response.content_part.added"]
MSG_END = ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
CALL_END = ["response.function_call_arguments.done", "response.output_item.done"]
STREAMS: list[tuple[str, list[bytes], list[str], list[dict[str, Any]]]] = [
    (
        "text",
        TEXT_STREAM,
        [*MSG, "response.output_text.delta", "response.output_text.delta", *MSG_END, "response.completed"],
        [{"type": "message", "text": "Hello"}],
    ),
    (
        "OpenAI-style tool call deltas, two calls",
        [
            _chunk({"role": "assistant", "content": None}),
            _chunk(_tool_delta(0, "call_a", "f", "")),
            _chunk(_tool_delta(0, None, None, '{"x":')),
            _chunk(_tool_delta(0, None, None, "1}")),
            _chunk(_tool_delta(1, "call_b", "g", "{}")),
            _chunk({}, "tool_calls"),
            _chunk(usage=True),
        ],
        [
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            *CALL_END,
            "response.output_item.added",
            "response.function_call_arguments.delta",
            *CALL_END,
            "response.completed",
        ],
        [
            {"type": "function_call", "call_id": "call_a", "name": "f", "arguments": '{"x":1}'},
            {"type": "function_call", "call_id": "call_b", "name": "g", "arguments": "{}"},
        ],
    ),
    (
        "text then an Ollama-style whole tool call",
        [
            _chunk({"role": "assistant", "content": "Let me see."}),
            _chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_o",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"q":"x"}'},
                        }
                    ]
                }
            ),
            _chunk({}, "stop"),
        ],
        [
            *MSG,
            "response.output_text.delta",
            *MSG_END,
            "response.output_item.added",
            "response.function_call_arguments.delta",
            *CALL_END,
            "response.completed",
        ],
        [
            {"type": "message", "text": "Let me see."},
            {"type": "function_call", "call_id": "call_o", "name": "f", "arguments": '{"q":"x"}'},
        ],
    ),
    (
        "cut by the token limit",
        [_chunk({"content": "a"}), _chunk({}, "length")],
        [*MSG, "response.output_text.delta", *MSG_END, "response.incomplete"],
        [{"type": "message", "text": "a"}],
    ),
    ("nothing at all", [_chunk({}, "stop")], ["response.completed"], []),
]


def _parse_events(data: bytes) -> list[dict[str, Any]]:
    events = []
    for block in data.decode().split("\n\n"):
        if not block:
            continue
        lines = block.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        event = json.loads(lines[1][len("data: ") :])
        assert event["type"] == lines[0][len("event: ") :]
        events.append(event)
    return events


@pytest.mark.parametrize(("name", "chunks", "types", "output"), STREAMS, ids=[s[0] for s in STREAMS])
def test_stream_events(name: str, chunks: list[bytes], types: list[str], output: list[Any]) -> None:
    stored: list[tuple[list[dict[str, Any]], str]] = []
    context = _context(stream=True)
    context.record = lambda messages, text: stored.append((messages, text))
    encoder = ResponsesStream(context)
    # payloads arrive one by one and in batches alike
    data = encoder.start() + encoder.chunks(chunks[:1]) + encoder.chunks(chunks[1:]) + encoder.end()
    events = _parse_events(data)
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", *types]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]["response"]
    assert final["id"] == events[0]["response"]["id"] == context.response_id
    assert [_summary(item) for item in final["output"]] == output
    # every item's added and done events agree on index and id; deltas add up to the final text/arguments
    added = {e["output_index"]: e["item"] for e in events if e["type"] == "response.output_item.added"}
    done = {e["output_index"]: e["item"] for e in events if e["type"] == "response.output_item.done"}
    assert sorted(added) == sorted(done) == list(range(len(output)))
    for index, item in done.items():
        assert added[index]["id"] == item["id"] and item["status"] == "completed"
        deltas = "".join(
            e["delta"] for e in events if e.get("output_index") == index and e["type"].endswith(".delta")
        )
        assert deltas == (_summary(item).get("text") if item["type"] == "message" else item["arguments"])
    if chunks[-1] == TEXT_STREAM[-1]:
        assert final["usage"]["output_tokens"] == 5 and final["usage"]["total_tokens"] == 7
    assert len(stored) == 1


def test_stream_error_after_start() -> None:
    context = _context(stream=True)
    context.record = lambda messages, text: pytest.fail("a failed response is not stored")
    encoder = ResponsesStream(context)
    body = msgspec.json.encode({"error": {"message": "upstream reset", "type": "server_error", "code": "x"}})
    data = (
        encoder.start()
        + encoder.chunks([_chunk({"content": "par"})])
        + encoder.error(ErrorReply(502, {}, "application/json", body))
    )
    events = _parse_events(data)
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert events[-2]["message"] == "upstream reset"
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["message"] == "upstream reset"
    assert failed["error"]["code"] == "server_error"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


STORED: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = [
    (
        "kept as is",
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
    ),
    (
        "the empty answer after tool calls goes",
        [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": None, "tool_calls": [CHAT_CALL]},
            {"role": "assistant", "content": ""},
        ],
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": None, "tool_calls": [CHAT_CALL]}],
    ),
    (
        "a tool result whose call was trimmed goes",
        [{"role": "tool", "tool_call_id": "call_1", "content": "x"}, {"role": "user", "content": "a"}],
        [{"role": "user", "content": "a"}],
    ),
]


@pytest.mark.parametrize(("name", "stored", "sent"), STORED, ids=[s[0] for s in STORED])
def test_prior_messages(name: str, stored: list[dict[str, Any]], sent: list[dict[str, Any]]) -> None:
    assert prior_messages(stored) == sent
