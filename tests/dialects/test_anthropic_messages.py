"""The Anthropic Messages translation, both ways, as tables: request -> internal chat body, `chat.completion`
-> `message`, internal chunks -> the event stream (tool calls included), errors -> Anthropic's shape."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from router.dialects.anthropic_messages import (
    ANTHROPIC_ERRORS,
    ANTHROPIC_MESSAGES,
    Context,
    count_tokens,
    error_type,
)
from router.dialects.base import Inbound
from router.errors import (
    BodyTooLarge,
    InvalidRequest,
    NotFound,
    Overloaded,
    RouterError,
    RouteUnavailable,
    encode_error,
)
from router.security import Redactor

USER_HI = {"role": "user", "content": "hi"}


def parse(**request: Any) -> Inbound:
    body = {"model": "m", "max_tokens": 10, "messages": [USER_HI], **request}
    return ANTHROPIC_MESSAGES.parse(json.dumps(body).encode(), [])


# ---- requests -----------------------------------------------------------------------------------------

REQUESTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("plain", {}, {"model": "m", "messages": [USER_HI], "stream": False, "max_tokens": 10}),
    (
        "system string",
        {"system": "be brief"},
        {"messages": [{"role": "system", "content": "be brief"}, USER_HI]},
    ),
    (
        "system blocks with cache_control",
        {
            "system": [
                {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "b"},
            ]
        },
        {"messages": [{"role": "system", "content": "a\nb"}, USER_HI]},
    ),
    (
        "mid-conversation system message (beta; Claude Code sends them)",
        {"messages": [USER_HI, {"role": "system", "content": [{"type": "text", "text": "env"}]}]},
        {"messages": [USER_HI, {"role": "system", "content": "env"}]},
    ),
    (
        "system message cleared at the next user message",
        {
            "messages": [
                {"role": "system", "content": "once", "clear_at": "next_user_message"},
                USER_HI,
                {"role": "assistant", "content": "hello"},
                {"role": "system", "content": "now", "clear_at": "next_user_message"},
                USER_HI,
                {"role": "system", "content": "last", "clear_at": "next_user_message"},
                {"role": "system", "content": "always", "clear_at": "never"},
            ]
        },
        {
            "messages": [
                USER_HI,
                {"role": "assistant", "content": "hello"},
                USER_HI,
                {"role": "system", "content": "last"},
                {"role": "system", "content": "always"},
            ]
        },
    ),
    (
        "text blocks are joined",
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
            ]
        },
        {"messages": [{"role": "user", "content": "a\nb"}]},
    ),
    (
        "base64 image -> data URL",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
                        },
                        {"type": "text", "text": "what is it?"},
                    ],
                }
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                        {"type": "text", "text": "what is it?"},
                    ],
                }
            ]
        },
    ),
    (
        "url image",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image", "source": {"type": "url", "url": "http://x/i.png"}}],
                }
            ]
        },
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/i.png"}}]}
            ]
        },
    ),
    (
        "tool_use then tool_result (error), thinking dropped",
        {
            "messages": [
                USER_HI,
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "s"},
                        {"type": "text", "text": "Looking."},
                        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": 1}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": [{"type": "text", "text": "boom"}],
                            "is_error": True,
                        },
                        {"type": "text", "text": "and now?"},
                    ],
                },
            ]
        },
        {
            "messages": [
                USER_HI,
                {
                    "role": "assistant",
                    "content": "Looking.",
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"x":1}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: boom"},
                {"role": "user", "content": "and now?"},
            ]
        },
    ),
    (
        "tool_use alone has no content",
        {
            "messages": [
                USER_HI,
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
            ]
        },
        {
            "messages": [
                USER_HI,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
            ]
        },
    ),
    (
        "tools, tool_choice tool, no parallel calls",
        {
            "tools": [
                {
                    "name": "f",
                    "description": "does f",
                    "input_schema": {"type": "object", "properties": {}},
                    "cache_control": {"type": "ephemeral"},
                }
            ],
            "tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
        },
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "parameters": {"type": "object", "properties": {}},
                        "description": "does f",
                    },
                }
            ],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "parallel_tool_calls": False,
        },
    ),
    (
        "tool_choice any",
        {"tools": [{"name": "f", "input_schema": {}}], "tool_choice": {"type": "any"}},
        {"tool_choice": "required"},
    ),
    (
        "tool_choice auto",
        {"tools": [{"name": "f", "input_schema": {}}], "tool_choice": {"type": "auto"}},
        {"tool_choice": "auto"},
    ),
    ("tool_choice none", {"tool_choice": {"type": "none"}}, {"tool_choice": "none"}),
    (
        "stop sequences and sampling",
        {"stop_sequences": ["END", "STOP"], "temperature": 0.2, "top_p": 0.9, "top_k": 40},
        {"stop": ["END", "STOP"], "temperature": 0.2, "top_p": 0.9, "top_k": 40},
    ),
    ("stream asks for usage", {"stream": True}, {"stream": True, "stream_options": {"include_usage": True}}),
    (
        "thinking with a small budget",
        {"thinking": {"type": "enabled", "budget_tokens": 1024}},
        {"reasoning_effort": "low"},
    ),
    (
        "thinking with a large budget",
        {"thinking": {"type": "enabled", "budget_tokens": 32000}},
        {"reasoning_effort": "high"},
    ),
    (
        "adaptive thinking",
        {"thinking": {"type": "adaptive", "display": "summarized"}},
        {"reasoning_effort": "medium"},
    ),
    ("output_config effort max", {"output_config": {"effort": "max"}}, {"reasoning_effort": "high"}),
    (
        "output_config json schema",
        {"output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}},
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": {"type": "object"}},
            }
        },
    ),
]


@pytest.mark.parametrize(
    ("request_fields", "expected"), [(r, e) for _, r, e in REQUESTS], ids=[n for n, _, _ in REQUESTS]
)
def test_request_translation(request_fields: dict[str, Any], expected: dict[str, Any]) -> None:
    inbound = parse(**request_fields)
    for key, value in expected.items():
        assert inbound.body[key] == value, key
    assert inbound.request.stream == inbound.body["stream"]
    assert inbound.request.model == "m"


IGNORED = [
    ("metadata", {"metadata": {"user_id": "u"}}),
    ("context_management", {"context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}}),
    ("service_tier", {"service_tier": "auto"}),
    ("disabled thinking", {"thinking": {"type": "disabled"}}),
    ("top-level cache_control", {"cache_control": {"type": "ephemeral"}}),
]


@pytest.mark.parametrize("fields", [f for _, f in IGNORED], ids=[n for n, _ in IGNORED])
def test_fields_that_change_nothing_are_accepted_and_ignored(fields: dict[str, Any]) -> None:
    assert parse(**fields).body == parse().body


BAD = [
    ("no model", {"model": None}, "model"),
    ("no messages", {"messages": []}, "messages"),
    ("bad role", {"messages": [{"role": "developer", "content": "x"}]}, "messages[0].role"),
    (
        "tool change in a system message",
        {
            "messages": [
                USER_HI,
                {"role": "system", "content": [{"type": "tool_addition", "tool": {"name": "f"}}]},
            ]
        },
        "messages[1].content[0]",
    ),
    ("max_tokens 0", {"max_tokens": 0}, "max_tokens"),
    ("temperature above 1", {"temperature": 1.5}, "temperature"),
    (
        "document block",
        {
            "messages": [
                {"role": "user", "content": [{"type": "document", "source": {"type": "text", "data": "x"}}]}
            ]
        },
        "messages[0].content[0].type",
    ),
    (
        "image without data",
        {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64"}}]}]},
        "messages[0].content[0].source",
    ),
    (
        "tool_result without id",
        {"messages": [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]},
        "messages[0].content[0].tool_use_id",
    ),
    ("server tool", {"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
    (
        "tool_choice tool without name",
        {"tools": [{"name": "f"}], "tool_choice": {"type": "tool"}},
        "tool_choice.name",
    ),
    ("unknown tool_choice", {"tools": [{"name": "f"}], "tool_choice": {"type": "maybe"}}, "tool_choice.type"),
    ("image in system", {"system": [{"type": "image", "source": {"type": "url", "url": "u"}}]}, "system[0]"),
]


@pytest.mark.parametrize(("fields", "param"), [(f, p) for _, f, p in BAD], ids=[n for n, _, _ in BAD])
def test_bad_requests_are_400_naming_the_field(fields: dict[str, Any], param: str) -> None:
    body = {"model": "m", "max_tokens": 10, "messages": [USER_HI], **fields}
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(InvalidRequest) as caught:
        ANTHROPIC_MESSAGES.parse(json.dumps(body).encode(), [])
    assert caught.value.param == param
    assert caught.value.status == 400


@pytest.mark.parametrize("raw", [b"not json", b"[1]", b'{"model": "m", "messages": "x"}'])
def test_bodies_that_are_not_requests_are_400(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        ANTHROPIC_MESSAGES.parse(raw, [])


# ---- whole answers ------------------------------------------------------------------------------------


def completion(message: dict[str, Any], finish: str, **choice: Any) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "upstream-model",
            "choices": [{"index": 0, "message": message, "finish_reason": finish, **choice}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        }
    ).encode()


CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
ANSWERS: list[tuple[str, dict[str, Any], bytes, list[dict[str, Any]], str, str | None]] = [
    (
        "text",
        {},
        completion({"role": "assistant", "content": "hello"}, "stop"),
        [{"type": "text", "text": "hello"}],
        "end_turn",
        None,
    ),
    (
        "length",
        {},
        completion({"role": "assistant", "content": "hel"}, "length"),
        [{"type": "text", "text": "hel"}],
        "max_tokens",
        None,
    ),
    (
        "tool call (OpenAI)",
        {},
        completion({"role": "assistant", "content": None, "tool_calls": [CALL]}, "tool_calls"),
        [{"type": "tool_use", "id": "call_1", "name": "f", "input": {"x": 1}}],
        "tool_use",
        None,
    ),
    (
        "text and tool call stopped (Ollama)",
        {},
        completion({"role": "assistant", "content": "Looking.", "tool_calls": [CALL]}, "stop"),
        [
            {"type": "text", "text": "Looking."},
            {"type": "tool_use", "id": "call_1", "name": "f", "input": {"x": 1}},
        ],
        "tool_use",
        None,
    ),
    (
        "stop sequence the upstream names (vLLM)",
        {"stop_sequences": ["END"]},
        completion({"role": "assistant", "content": "a"}, "stop", stop_reason="END"),
        [{"type": "text", "text": "a"}],
        "stop_sequence",
        "END",
    ),
    (
        "a stop reason that is not one of ours",
        {"stop_sequences": ["END"]},
        completion({"role": "assistant", "content": "a"}, "stop", stop_reason=128001),
        [{"type": "text", "text": "a"}],
        "end_turn",
        None,
    ),
    (
        "content filter",
        {},
        completion({"role": "assistant", "content": ""}, "content_filter"),
        [],
        "refusal",
        None,
    ),
    (
        "reasoning shown when thinking was asked",
        {"thinking": {"type": "enabled", "budget_tokens": 2000}},
        completion({"role": "assistant", "content": "4", "reasoning_content": "2+2"}, "stop"),
        [{"type": "thinking", "thinking": "2+2", "signature": ""}, {"type": "text", "text": "4"}],
        "end_turn",
        None,
    ),
    (
        "reasoning hidden otherwise",
        {},
        completion({"role": "assistant", "content": "4", "reasoning_content": "2+2"}, "stop"),
        [{"type": "text", "text": "4"}],
        "end_turn",
        None,
    ),
]


@pytest.mark.parametrize(
    ("fields", "whole", "content", "reason", "sequence"),
    [a[1:] for a in ANSWERS],
    ids=[a[0] for a in ANSWERS],
)
def test_answer_translation(
    fields: dict[str, Any], whole: bytes, content: list[dict[str, Any]], reason: str, sequence: str | None
) -> None:
    message = json.loads(ANTHROPIC_MESSAGES.answer(whole, parse(**fields)))
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["id"].startswith("msg_")
    assert message["model"] == "m"  # the name the client used, not the upstream's
    assert message["content"] == content
    assert (message["stop_reason"], message["stop_sequence"]) == (reason, sequence)
    assert message["usage"] == {"input_tokens": 7, "output_tokens": 3}


# ---- streams ------------------------------------------------------------------------------------------


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, usage: Any = None) -> bytes:
    body: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "choices": []}
    if delta is not None or finish is not None:
        body["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    if usage is not None:
        body["usage"] = usage
    return json.dumps(body).encode()


def events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in raw.decode().split("\n\n"):
        if not frame:
            continue
        name_line, data_line = frame.split("\n")
        name = name_line.removeprefix("event: ")
        data = json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        out.append((name, data))
    return out


def run(batches: list[list[bytes]], **fields: Any) -> list[tuple[str, dict[str, Any]]]:
    encoder = ANTHROPIC_MESSAGES.stream(parse(stream=True, **fields))
    raw = encoder.start() + b"".join(encoder.chunks(batch) for batch in batches) + encoder.end()
    return events(raw)


USAGE = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
OPENAI_TOOL_STREAM = [
    [chunk({"role": "assistant", "content": ""})],
    [chunk({"content": "Hi"})],
    [
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "f", "arguments": ""},
                    }
                ]
            }
        )
    ],
    [
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x"'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
    ],
    [
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "g", "arguments": "{}"},
                    }
                ]
            }
        )
    ],
    [chunk({}, "tool_calls"), chunk(usage=USAGE)],
]
OLLAMA_TOOL_STREAM = [  # what the Ollama adapter makes of Ollama's lines: the call whole, then `stop`
    [chunk({"role": "assistant", "content": "Hi"})],
    [
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"x": 1}'},
                    }
                ]
            }
        )
    ],
    [chunk({}, "stop"), chunk(usage=USAGE)],
]


def test_a_text_stream_is_the_full_event_sequence() -> None:
    seen = run(
        [
            [chunk({"role": "assistant", "content": ""})],
            [chunk({"content": "a"}), chunk({"content": "b"})],
            [chunk({}, "stop"), chunk(usage=USAGE)],
        ]
    )
    assert [name for name, _ in seen] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = seen[0][1]["message"]
    assert start["role"] == "assistant" and start["content"] == [] and start["model"] == "m"
    assert start["id"].startswith("msg_") and start["stop_reason"] is None
    assert seen[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert [d["delta"] for _, d in seen[2:4]] == [
        {"type": "text_delta", "text": "a"},
        {"type": "text_delta", "text": "b"},
    ]
    assert seen[5][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert seen[5][1]["usage"] == {"input_tokens": 4, "output_tokens": 2}


@pytest.mark.parametrize("batches", [OPENAI_TOOL_STREAM, OLLAMA_TOOL_STREAM], ids=["openai", "ollama"])
def test_tool_calls_in_a_stream_become_tool_use_blocks_with_input_json_deltas(
    batches: list[list[bytes]],
) -> None:
    seen = run(batches)
    starts = [d for name, d in seen if name == "content_block_start"]
    assert [s["index"] for s in starts] == list(range(len(starts)))
    assert starts[0]["content_block"] == {"type": "text", "text": ""}
    assert starts[1]["content_block"] == {"type": "tool_use", "id": "call_a", "name": "f", "input": {}}
    arguments = "".join(
        d["delta"]["partial_json"] for name, d in seen if name == "content_block_delta" and d["index"] == 1
    )
    assert json.loads(arguments) == {"x": 1}
    assert all(
        d["delta"]["type"] == "input_json_delta"
        for name, d in seen
        if name == "content_block_delta" and d["index"] >= 1
    )
    stops = [d["index"] for name, d in seen if name == "content_block_stop"]
    assert stops == [s["index"] for s in starts]  # each block closed once, in order
    # a block is closed before the next opens
    order = [
        (name, d.get("index"))
        for name, d in seen
        if name.startswith("content_block_") and name != "content_block_delta"
    ]
    assert order == [
        (kind, i) for i in range(len(starts)) for kind in ("content_block_start", "content_block_stop")
    ]
    delta = next(d for name, d in seen if name == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert [name for name, _ in seen][-2:] == ["message_delta", "message_stop"]


def test_the_second_parallel_call_opens_its_own_block() -> None:
    seen = run(OPENAI_TOOL_STREAM)
    starts = [d["content_block"] for name, d in seen if name == "content_block_start"]
    assert starts[2] == {"type": "tool_use", "id": "call_b", "name": "g", "input": {}}


@pytest.mark.parametrize(
    ("finish", "fields", "reason"),
    [
        ("stop", {}, "end_turn"),
        ("length", {}, "max_tokens"),
        ("tool_calls", {}, "tool_use"),
        (None, {}, "end_turn"),
    ],
)
def test_stream_stop_reasons(finish: str | None, fields: dict[str, Any], reason: str) -> None:
    batches = [[chunk({"content": "x"})]]
    if finish:
        batches.append([chunk({}, finish)])
    seen = run(batches, **fields)
    assert next(d for n, d in seen if n == "message_delta")["delta"]["stop_reason"] == reason


def test_reasoning_streams_as_a_thinking_block_when_asked() -> None:
    batches = [
        [chunk({"reasoning_content": "hm"})],
        [chunk({"reasoning_content": "m"})],
        [chunk({"content": "4"})],
    ]
    seen = run(batches, thinking={"type": "enabled", "budget_tokens": 2048})
    starts = [d["content_block"]["type"] for n, d in seen if n == "content_block_start"]
    assert starts == ["thinking", "text"]
    deltas = [d["delta"] for n, d in seen if n == "content_block_delta"]
    assert deltas[:2] == [
        {"type": "thinking_delta", "thinking": "hm"},
        {"type": "thinking_delta", "thinking": "m"},
    ]
    assert [n for n, _ in run(batches) if n == "content_block_start"] == ["content_block_start"]  # not asked


def test_an_empty_answer_still_ends_properly() -> None:
    assert [n for n, _ in run([[chunk({}, "stop")]])] == ["message_start", "message_delta", "message_stop"]


def test_heartbeat_and_error_events() -> None:
    encoder = ANTHROPIC_MESSAGES.stream(parse(stream=True))
    assert events(encoder.heartbeat) == [("ping", {"type": "ping"})]
    reply = encode_error(RouterError("the model broke", status=502), Redactor(), ANTHROPIC_ERRORS)
    [(name, data)] = events(encoder.error(reply))
    assert name == "error"
    assert data == {"type": "error", "error": {"type": "api_error", "message": "the model broke"}}
    assert encoder.media_type == "text/event-stream"


# ---- errors -------------------------------------------------------------------------------------------

ERRORS = [
    (InvalidRequest("bad"), 400, "invalid_request_error"),
    (RouterError("who?", status=401), 401, "authentication_error"),
    (RouterError("no", status=403), 403, "permission_error"),
    (NotFound("none"), 404, "not_found_error"),
    (RouterError("nope", status=405), 405, "invalid_request_error"),
    (BodyTooLarge(), 413, "request_too_large"),
    (Overloaded("full"), 429, "rate_limit_error"),
    (RouterError("bug"), 500, "api_error"),
    (RouterError("bad gateway", status=502), 502, "api_error"),
    (RouteUnavailable("down"), 503, "overloaded_error"),
    (RouterError("slow", status=504), 504, "timeout_error"),
    (ValueError("a bug's words"), 500, "api_error"),
]


@pytest.mark.parametrize(("error", "status", "kind"), ERRORS, ids=[f"{e[1]}-{e[2]}" for e in ERRORS])
def test_errors_are_in_anthropic_s_shape_with_the_status_kept(
    error: BaseException, status: int, kind: str
) -> None:
    reply = encode_error(error, Redactor(["s3cret"]), ANTHROPIC_ERRORS)
    assert reply.status == status and reply.media_type == "application/json"
    body = msgspec.json.decode(reply.body)
    assert body["type"] == "error" and body["error"]["type"] == kind
    assert set(body["error"]) == {"type", "message"}
    assert "a bug's words" not in body["error"]["message"]
    assert error_type(status) == kind


def test_error_messages_are_redacted() -> None:
    reply = encode_error(RouterError("key s3cret leaked", status=502), Redactor(["s3cret"]), ANTHROPIC_ERRORS)
    assert b"s3cret" not in reply.body


# ---- count_tokens -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"messages": [{"role": "user", "content": "x" * 8}]}, 2),
        ({"messages": [{"role": "user", "content": "x" * 9}]}, 3),  # rounded up
        ({"system": "y" * 4, "messages": [{"role": "user", "content": "x" * 4}]}, 2),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "u"}}]}
                ]
            },
            1600,
        ),
    ],
)
def test_count_tokens_estimates_a_quarter_of_the_characters(fields: dict[str, Any], expected: int) -> None:
    body = {"model": "m", **fields}
    assert count_tokens(json.dumps(body).encode()) == ("m", expected)


def test_count_tokens_counts_tool_definitions() -> None:
    without = count_tokens(json.dumps({"model": "m", "messages": [USER_HI]}).encode())[1]
    tools = [{"name": "f", "input_schema": {"type": "object", "properties": {"a": {"type": "string"}}}}]
    with_tools = count_tokens(json.dumps({"model": "m", "messages": [USER_HI], "tools": tools}).encode())[1]
    assert with_tools > without


def test_context_keeps_what_the_answer_needs() -> None:
    inbound = parse(stop_sequences=["X"], thinking={"type": "enabled", "budget_tokens": 1024})
    assert inbound.context == Context("m", ("X",), True)
