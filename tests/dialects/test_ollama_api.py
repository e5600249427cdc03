"""The Ollama <-> internal OpenAI translation, table by table: requests, whole answers, streams."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from router.dialects.ollama_api import (
    OLLAMA_ERRORS,
    OLLAMA_EXTRAS,
    Answering,
    EmbedAnswering,
    NDJSONEncoder,
    answer,
    chat_inbound,
    embed_answer,
    embed_inbound,
    generate_inbound,
)
from router.errors import InvalidRequest, NotFound, encode_error

USER = [{"role": "user", "content": "hi"}]


def _chat(**fields: Any) -> bytes:
    return json.dumps({"model": "qwen3", "messages": USER, **fields}).encode()


# ==== requests ====================================================================================

# (Ollama request fields, expected subset of the internal body, keys that must be absent)
CHAT_REQUESTS: list[tuple[dict[str, Any], dict[str, Any], tuple[str, ...]]] = [
    ({}, {"stream": True, "stream_options": {"include_usage": True}}, (OLLAMA_EXTRAS, "max_tokens")),
    ({"stream": False}, {"stream": False}, ("stream_options",)),
    (
        {"options": {"temperature": 0.2, "top_p": 0.9, "seed": 7, "num_predict": 12, "stop": ["\n"]}},
        {"temperature": 0.2, "top_p": 0.9, "seed": 7, "max_tokens": 12, "stop": ["\n"]},
        (OLLAMA_EXTRAS,),
    ),
    ({"options": {"stop": "END"}}, {"stop": ["END"]}, ()),
    ({"options": {"num_predict": -1}}, {}, ("max_tokens",)),
    (
        {"options": {"top_k": 20, "num_ctx": 8192}},
        {OLLAMA_EXTRAS: {"options": {"top_k": 20, "num_ctx": 8192}}},
        (),
    ),
    ({"keep_alive": "10m"}, {OLLAMA_EXTRAS: {"keep_alive": "10m"}}, ()),
    ({"keep_alive": 0}, {OLLAMA_EXTRAS: {"keep_alive": 0}}, ()),
    ({"think": True}, {OLLAMA_EXTRAS: {"think": True}}, ("reasoning_effort",)),
    ({"think": "high"}, {"reasoning_effort": "high", OLLAMA_EXTRAS: {"think": "high"}}, ()),
    ({"format": "json"}, {"response_format": {"type": "json_object"}}, ()),
    ({"format": ""}, {}, ("response_format",)),
    (
        {"format": {"type": "object", "properties": {"age": {"type": "integer"}}}},
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "format",
                    "schema": {"type": "object", "properties": {"age": {"type": "integer"}}},
                },
            }
        },
        (),
    ),
    (
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
        (),
    ),
]


@pytest.mark.parametrize(("fields", "expected", "absent"), CHAT_REQUESTS)
def test_chat_request_mapping(
    fields: dict[str, Any], expected: dict[str, Any], absent: tuple[str, ...]
) -> None:
    inbound = chat_inbound(_chat(**fields))
    assert inbound.body["model"] == "qwen3" and inbound.body["messages"] == USER
    for key, value in expected.items():
        assert inbound.body[key] == value, key
    for key in absent:
        assert key not in inbound.body, key
    assert inbound.request.stream == inbound.body["stream"]
    assert inbound.request.model == "qwen3"
    assert inbound.request.max_tokens == inbound.body.get("max_tokens")
    assert bool(inbound.request.stream_options) == inbound.request.stream


def test_history_with_images_and_tool_calls_becomes_openai() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "what is this?", "images": ["iVBORw0KGgo", "/9j/4AAQ"]},
        {
            "role": "assistant",
            "content": "",
            "thinking": "hm",
            "tool_calls": [
                {"function": {"name": "weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "time", "arguments": {}}},
            ],
        },
        {"role": "tool", "content": "12:00", "tool_name": "time"},
        {"role": "tool", "content": "sunny", "tool_name": "weather"},
    ]
    body = chat_inbound(json.dumps({"model": "m", "messages": messages}).encode()).body
    out = body["messages"]
    assert out[0] == {"role": "system", "content": "be brief"}
    assert out[1]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo"}},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
    ]
    calls = out[2]["tool_calls"]
    assert [c["id"] for c in calls] == ["call_0", "call_1"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    assert calls[1]["function"] == {"name": "time", "arguments": "{}"}
    assert "thinking" not in out[2]
    # Each result is tied to its own call by the tool's name, whatever the order of the results.
    assert out[3] == {"role": "tool", "content": "12:00", "tool_call_id": "call_1"}
    assert out[4] == {"role": "tool", "content": "sunny", "tool_call_id": "call_0"}


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b"{", None),
        (b"[]", None),
        (b'{"messages": []}', "model"),
        (b'{"model": "", "messages": []}', "model"),
        (b'{"model": "m", "messages": []}', "messages"),
        (b'{"model": "m"}', "messages"),
        (b'{"model": "m", "messages": [{"content": "x"}]}', "messages[0].role"),
        (b'{"model": "m", "messages": [{"role": "user"}], "stream": "yes"}', "stream"),
        (
            b'{"model": "m", "messages": [{"role": "user"}], "options": {"temperature": "hot"}}',
            "options.temperature",
        ),
        (b'{"model": "m", "messages": [{"role": "user"}], "format": "xml"}', "format"),
    ],
)
def test_bad_chat_requests_are_400_naming_the_field(raw: bytes, param: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        chat_inbound(raw)
    assert caught.value.status == 400
    if param is not None:
        assert caught.value.param == param


# (Ollama /api/generate fields, the expected internal completions body besides model and stream)
GENERATE_REQUESTS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"prompt": "why?"}, {"prompt": "why?", "stream_options": {"include_usage": True}}),
    ({"prompt": "why?", "stream": False}, {"prompt": "why?"}),
    ({"prompt": "def f(", "suffix": "return x", "stream": False}, {"prompt": "def f(", "suffix": "return x"}),
    (
        {"prompt": "why?", "system": "be kind", "raw": True, "images": ["R0lGOD"], "stream": False},
        {"prompt": "why?", "system": "be kind", "raw": True, "images": ["R0lGOD"]},
    ),
    ({"prompt": "x", "template": "{{ .Prompt }}", "context": [1, 2], "stream": False}, {"prompt": "x"}),
    (
        {"prompt": "x", "stream": False, "format": "json", "think": False, "keep_alive": "5m"},
        {"prompt": "x", "format": "json", "think": False, "keep_alive": "5m"},
    ),
    (
        {
            "prompt": "x",
            "stream": False,
            "options": {"temperature": 0, "num_predict": 9, "top_k": 3, "stop": "\n"},
        },
        {"prompt": "x", "temperature": 0, "max_tokens": 9, "stop": ["\n"], "options": {"top_k": 3}},
    ),
    ({}, {"prompt": "", "stream_options": {"include_usage": True}}),
]


@pytest.mark.parametrize(("fields", "expected"), GENERATE_REQUESTS)
def test_generate_request_mapping(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    inbound = generate_inbound(json.dumps({"model": "m", **fields}).encode())
    body = dict(inbound.body)
    assert body.pop("model") == "m" and body.pop("stream") == fields.get("stream", True)
    assert body == expected
    assert inbound.context.generate and inbound.request.max_tokens == expected.get("max_tokens")


def test_generate_format_is_checked() -> None:
    with pytest.raises(InvalidRequest) as caught:
        generate_inbound(b'{"model": "m", "prompt": "x", "format": "yaml"}')
    assert caught.value.param == "format"


@pytest.mark.parametrize(
    ("raw", "legacy", "body"),
    [
        (b'{"model": "e", "input": "a"}', False, {"model": "e", "input": "a"}),
        (
            b'{"model": "e", "input": ["a", "b"], "truncate": false, "dimensions": 8, "keep_alive": 0}',
            False,
            {"model": "e", "input": ["a", "b"], "truncate": False, "dimensions": 8, "keep_alive": 0},
        ),
        (
            b'{"model": "e", "prompt": "a", "options": {"num_ctx": 1}}',
            True,
            {"model": "e", "input": "a", "options": {"num_ctx": 1}},
        ),
    ],
)
def test_embed_request_mapping(raw: bytes, legacy: bool, body: dict[str, Any]) -> None:
    inbound = embed_inbound(raw, legacy)
    assert inbound.body == body and inbound.request.model == "e" and not inbound.request.stream


@pytest.mark.parametrize(
    "raw", [b'{"model": "e"}', b'{"model": "e", "input": []}', b'{"model": "e", "input": [1]}']
)
def test_bad_embed_requests_are_400(raw: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        embed_inbound(raw, legacy=False)
    assert (caught.value.param or "").startswith("input")


def test_embed_answers() -> None:
    data = b'[{"index":1,"embedding":[0.5]},{"index":0,"embedding":[0.25]}]'
    listing = b'{"object":"list","data":' + data + b',"usage":{"prompt_tokens":4}}'
    out = json.loads(embed_answer(listing, EmbedAnswering("e", legacy=False)))
    assert out["model"] == "e" and out["embeddings"] == [[0.25], [0.5]] and out["prompt_eval_count"] == 4
    assert isinstance(out["total_duration"], int) and out["load_duration"] == 0
    assert json.loads(embed_answer(listing, EmbedAnswering("e", legacy=True))) == {"embedding": [0.25]}


# ==== whole answers ===============================================================================


def _completion(message: dict[str, Any], finish: str = "stop", usage: dict[str, int] | None = None) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": usage or {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        }
    ).encode()


ANSWERS: list[tuple[bytes, dict[str, Any]]] = [
    (_completion({"content": "hello"}), {"role": "assistant", "content": "hello"}),
    (_completion({"content": None}, "length"), {"role": "assistant", "content": ""}),
    (
        _completion({"content": "ok", "reasoning_content": "thought"}),
        {"role": "assistant", "content": "ok", "thinking": "thought"},
    ),
    (
        _completion(
            {
                "content": None,
                "tool_calls": [
                    {
                        "id": "c",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Tokyo"}'},
                    },
                    {"id": "d", "type": "function", "function": {"name": "bad", "arguments": "not json"}},
                ],
            },
            "tool_calls",
        ),
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "weather", "arguments": {"city": "Tokyo"}}},
                {"function": {"name": "bad", "arguments": {"arguments": "not json"}}},
            ],
        },
    ),
]


@pytest.mark.parametrize(("whole", "message"), ANSWERS)
def test_chat_answer_mapping(whole: bytes, message: dict[str, Any]) -> None:
    out = json.loads(answer(whole, Answering("qwen3", generate=False)))
    assert out["model"] == "qwen3" and out["done"] is True and out["created_at"].endswith("Z")
    assert out["message"] == message
    finish = json.loads(whole)["choices"][0]["finish_reason"]
    assert out["done_reason"] == ("length" if finish == "length" else "stop")
    assert out["prompt_eval_count"] == 3 and out["eval_count"] == 5
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(out[key], int) and out[key] >= 0


def test_generate_answer_has_response_not_message() -> None:
    out = json.loads(answer(_completion({"content": "blue"}), Answering("m", generate=True)))
    assert out["response"] == "blue" and "message" not in out and out["done"] is True


def test_generate_answer_from_a_text_completion() -> None:
    whole = b'{"object":"text_completion","choices":[{"index":0,"text":"x = 1","finish_reason":"stop"}]}'
    out = json.loads(answer(whole, Answering("m", generate=True)))
    assert out["response"] == "x = 1" and out["eval_count"] == 0


# ==== streams =====================================================================================


def _chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, usage: dict[str, int] | None = None
) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    body: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "choices": choices}
    if usage:
        body["usage"] = usage
    return msgspec.json.encode(body)


def _lines(data: bytes) -> list[dict[str, Any]]:
    assert data == b"" or data.endswith(b"\n")
    return [json.loads(line) for line in data.split(b"\n") if line]


def _run(batches: list[list[bytes]], generate: bool = False) -> list[dict[str, Any]]:
    encoder = NDJSONEncoder(Answering("qwen3", generate=generate))
    out = encoder.start()
    for batch in batches:
        out += encoder.chunks(batch)
    return _lines(out + encoder.end())


USAGE = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
TOOL_FRAGMENTS = [
    [
        _chunk(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "a",
                        "type": "function",
                        "function": {"name": "weather", "arguments": ""},
                    }
                ],
            }
        )
    ],
    [_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]})],
    [
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Tokyo"}'}}]}),
        _chunk({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "time", "arguments": "{}"}}]}),
    ],
    [_chunk({}, "tool_calls")],
    [_chunk(None, usage=USAGE)],
]

# (batches of chunk payloads, the expected lines without their clocks)
STREAMS: list[tuple[list[list[bytes]], list[dict[str, Any]]]] = [
    (
        [
            [_chunk({"role": "assistant", "content": ""})],
            [_chunk({"content": "Hel"}), _chunk({"content": "lo"})],
            [_chunk({}, "stop")],
            [_chunk(None, usage=USAGE)],
        ],
        [
            {"message": {"role": "assistant", "content": "Hel"}, "done": False},
            {"message": {"role": "assistant", "content": "lo"}, "done": False},
            {
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 4,
                "eval_count": 2,
            },
        ],
    ),
    (
        [[_chunk({"reasoning_content": "let me see"})], [_chunk({"content": "4"}, "length")]],
        [
            {"message": {"role": "assistant", "content": "", "thinking": "let me see"}, "done": False},
            {"message": {"role": "assistant", "content": "4"}, "done": False},
            {
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "length",
                "prompt_eval_count": 0,
                "eval_count": 2,
            },
        ],
    ),
    (
        TOOL_FRAGMENTS,
        [
            {
                "message": {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"function": {"name": "weather", "arguments": {"city": "Tokyo"}}},
                        {"function": {"name": "time", "arguments": {}}},
                    ],
                },
                "done": False,
            },
            {
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 4,
                "eval_count": 2,
            },
        ],
    ),
    (  # an Ollama upstream's calls arrive whole (arguments already an object), without a finish chunk first
        [[_chunk({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": {"x": 1}}}]})]],
        [
            {
                "message": {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}],
                },
                "done": False,
            },
            {
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 0,
                "eval_count": 0,
            },
        ],
    ),
    (
        [[]],
        [
            {
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 0,
                "eval_count": 0,
            }
        ],
    ),
]

_CLOCKS = ("created_at", "total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


@pytest.mark.parametrize(("batches", "expected"), STREAMS)
def test_chat_stream_state_machine(batches: list[list[bytes]], expected: list[dict[str, Any]]) -> None:
    lines = _run(batches)
    for line in lines:
        assert line.pop("model") == "qwen3"
        assert isinstance(line.pop("created_at"), str)
        if line["done"]:
            for key in _CLOCKS[1:]:
                assert isinstance(line.pop(key), int)
    assert lines == expected


def test_generate_stream_lines_carry_response() -> None:
    lines = _run(
        [[_chunk({"content": "a"})], [_chunk({"content": "b"}, "stop")], [_chunk(None, usage=USAGE)]],
        generate=True,
    )
    assert [line["response"] for line in lines] == ["a", "b", ""]
    assert [line["done"] for line in lines] == [False, False, True]
    assert "message" not in lines[0] and lines[-1]["eval_count"] == 2


def test_generate_stream_of_text_completion_chunks() -> None:
    chunk = b'{"object":"text_completion","choices":[{"index":0,"text":"pass","finish_reason":null}]}'
    lines = _run([[chunk]], generate=True)
    assert lines[0]["response"] == "pass" and lines[-1]["done"] is True


def test_heartbeat_is_a_parseable_unfinished_line() -> None:
    beat = NDJSONEncoder(Answering("qwen3", generate=False)).heartbeat
    assert beat.endswith(b"\n") and beat.count(b"\n") == 1
    line = json.loads(beat)
    assert line["done"] is False and line["message"] == {"role": "assistant", "content": ""}


def test_errors_are_ollama_shaped_with_the_status() -> None:
    reply = encode_error(NotFound("no route or model named 'x'"), lambda s: s, OLLAMA_ERRORS)
    assert reply.status == 404 and json.loads(reply.body) == {"error": "no route or model named 'x'"}
    line = NDJSONEncoder(Answering("m", generate=False)).error(reply)
    assert line.endswith(b"\n") and json.loads(line) == {"error": "no route or model named 'x'"}


# ==== the whole way round: an Ollama upstream's lines -> internal chunks -> an Ollama client's lines =====


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"function": {"name": name, "arguments": arguments}}


ROUND_TRIPS: list[tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]] = [
    (  # each call in a line of its own (how Ollama streams several calls): two calls, not one merged
        [
            {"message": {"role": "assistant", "content": "", "tool_calls": [_call("weather", city="Paris")]}},
            {"message": {"role": "assistant", "content": "", "tool_calls": [_call("time", zone="CET")]}},
        ],
        [[_call("weather", city="Paris"), _call("time", zone="CET")]],
    ),
    (
        [{"message": {"role": "assistant", "content": "", "tool_calls": [_call("a", x=1), _call("b")]}}],
        [[_call("a", x=1), _call("b")]],
    ),
    (
        [
            {"message": {"role": "assistant", "content": "Let me check."}},
            {"message": {"role": "assistant", "content": "", "tool_calls": [_call("weather", city="Oslo")]}},
        ],
        [[_call("weather", city="Oslo")]],
    ),
]


@pytest.mark.parametrize(("lines", "expected_calls"), ROUND_TRIPS)
def test_tool_calls_from_an_ollama_upstream_reach_an_ollama_client_whole(
    lines: list[dict[str, Any]], expected_calls: list[list[dict[str, Any]]]
) -> None:
    from router.upstreams.ollama_mapping import ChunkMapper

    mapper = ChunkMapper("qwen3:32b", "r1", include_usage=True)
    done = {
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "stop",
        "eval_count": 7,
    }
    payloads = [p for line in [*lines, done] for p in mapper.chunks({"done": False, **line})]
    out = _run([[p] for p in payloads])
    assert [
        line["message"]["tool_calls"] for line in out if "tool_calls" in line["message"]
    ] == expected_calls
    texts = "".join(line["message"]["content"] for line in out)
    assert texts == "".join(line["message"]["content"] for line in lines)
    assert out[-1]["done"] is True and out[-1]["eval_count"] == 7 and sum(line["done"] for line in out) == 1
