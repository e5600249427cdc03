"""The openai_embeddings and openai_completions dialects, table-driven: what they accept, refuse, return."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import msgspec
import pytest

from router.dialects.openai_completions import OPENAI_COMPLETIONS
from router.dialects.openai_embeddings import OPENAI_EMBEDDINGS, as_base64
from router.errors import InvalidRequest


def raw(body: Any) -> bytes:
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        ({"input": "x", "model": "m"}, None),
        ({"input": ["a", "b"], "encoding_format": "base64"}, "base64"),
        ({"input": [1, 2, 3], "encoding_format": "float", "dimensions": 8}, "float"),
        ({"input": [[1, 2], [3]], "user": "u", "extra": {"vendor": True}}, None),
    ],
)
def test_embeddings_accepted(body: dict[str, Any], encoding: str | None) -> None:
    inbound = OPENAI_EMBEDDINGS.parse(raw(body), [])
    assert inbound.body == body  # as sent: unknown fields reach OpenAI-compatible upstreams
    assert inbound.context == encoding and inbound.request.stream is False
    assert inbound.request.model == body.get("model")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "input"),
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": [[]]}, "input"),
        ({"input": ["a", 1]}, "input"),
        ({"input": [True]}, "input"),
        ({"input": 3}, "input"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "input"),
    ],
)
def test_embeddings_refused(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        OPENAI_EMBEDDINGS.parse(raw(body), [])
    assert caught.value.param == param


@pytest.mark.parametrize("bad", [b"[1]", b"{", b"\xff"])
def test_embeddings_bodies_that_are_not_objects(bad: bytes) -> None:
    with pytest.raises(InvalidRequest):
        OPENAI_EMBEDDINGS.parse(bad, [])


@pytest.mark.parametrize("vector", [[0.0], [1.5, -2.25, 0.125], [3.4028234663852886e38, -1e-45]])
def test_base64_is_little_endian_float32(vector: list[float]) -> None:
    data = base64.b64decode(as_base64(vector))
    assert list(struct.unpack(f"<{len(vector)}f", data)) == [
        struct.unpack("<f", struct.pack("<f", v))[0] for v in vector
    ]


def test_answer_encodes_only_when_asked() -> None:
    whole = msgspec.json.encode(
        {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]}],
            "model": "m",
        }
    )
    plain = OPENAI_EMBEDDINGS.parse(raw({"input": "x"}), [])
    assert OPENAI_EMBEDDINGS.answer(whole, plain) is whole
    wanted = OPENAI_EMBEDDINGS.parse(raw({"input": "x", "encoding_format": "base64"}), [])
    out = json.loads(OPENAI_EMBEDDINGS.answer(whole, wanted))
    assert out["data"][0]["embedding"] == base64.b64encode(struct.pack("<2f", 0.5, -1.0)).decode()
    assert out["model"] == "m" and out["object"] == "list"


@pytest.mark.parametrize(
    ("body", "stream", "max_tokens", "usage"),
    [
        ({"prompt": "p", "model": "m"}, False, None, False),
        ({"prompt": "", "suffix": "s", "max_tokens": 5}, False, 5, False),
        ({"prompt": ["p"], "stream": True, "stream_options": {"include_usage": True}}, True, None, True),
        ({"prompt": [1, 2], "echo": True, "logprobs": 2, "n": 3, "best_of": 3}, False, None, False),
    ],
)
def test_completions_accepted(
    body: dict[str, Any], stream: bool, max_tokens: int | None, usage: bool
) -> None:
    inbound = OPENAI_COMPLETIONS.parse(raw(body), [])
    request = inbound.request
    assert inbound.body == body
    assert request.stream is stream and request.max_tokens == max_tokens
    assert bool(request.stream_options and request.stream_options.include_usage) is usage


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "prompt"),
        ({"prompt": 3}, "prompt"),
        ({"prompt": []}, "prompt"),
        ({"prompt": "p", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "p", "temperature": 3}, "temperature"),
        ({"prompt": "p", "stop": 1}, "stop"),
        ({"prompt": "p", "logprobs": 6}, "logprobs"),
        ({"prompt": "p", "suffix": 1}, "suffix"),
    ],
)
def test_completions_refused(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        OPENAI_COMPLETIONS.parse(raw(body), [])
    assert caught.value.param == param


def test_completions_stream_is_framed_as_sse() -> None:
    inbound = OPENAI_COMPLETIONS.parse(raw({"prompt": "p", "stream": True}), [])
    encoder = OPENAI_COMPLETIONS.stream(inbound)
    assert encoder.media_type == "text/event-stream"
    assert encoder.chunks([b'{"a":1}', b'{"b":2}']) == b'data: {"a":1}\n\ndata: {"b":2}\n\n'
    assert encoder.end() == b"data: [DONE]\n\n"
