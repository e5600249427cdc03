"""Embeddings and text completions through both adapters: the Ollama mapping table, then real sockets.

docs/dialects/embeddings_and_completions.md is the specification: the internal models are OpenAI's
`/v1/embeddings` and `/v1/completions`; an Ollama upstream gets `/api/embed` and `/api/generate`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from router.config.models import UpstreamConfig
from router.upstreams import build_adapter, ollama_kinds
from router.upstreams.base import ChatCall, Limits, UnsupportedCall, UpstreamAdapter
from router.upstreams.errors import UpstreamError
from tests.fakes import FakeOllama, FakeOpenAI, FakeUpstream

LIMITS = Limits.of(5.0, 2.0)

# ---- the Ollama mapping, table-driven -------------------------------------------------------------

EMBED_CASES = [
    ({"input": "hi"}, {}, {"model": "m", "input": "hi", "truncate": True}),
    (
        {"input": ["a", "b"], "dimensions": 4},
        {},
        {"model": "m", "input": ["a", "b"], "truncate": True, "dimensions": 4},
    ),
    (
        {"input": "x", "truncate": False, "keep_alive": "1m", "options": {"num_ctx": 64}},
        {"num_ctx": 32, "num_thread": 2},
        {
            "model": "m",
            "input": "x",
            "truncate": False,
            "keep_alive": "1m",
            "options": {"num_ctx": 64, "num_thread": 2},
        },
    ),
    (
        {"input": "x", "encoding_format": "base64", "user": "u"},
        {},
        {"model": "m", "input": "x", "truncate": True},
    ),
]


@pytest.mark.parametrize(("body", "route_options", "expected"), EMBED_CASES)
def test_embed_request(body: dict[str, Any], route_options: dict[str, Any], expected: dict[str, Any]) -> None:
    assert ollama_kinds.embed_request(body, "m", route_options) == expected


@pytest.mark.parametrize("value", [[1, 2, 3], [[1, 2], [3]], 5, None, ["a", 1]])
def test_embed_refuses_what_ollama_cannot_take(value: Any) -> None:
    with pytest.raises(UnsupportedCall) as caught:
        ollama_kinds.embed_request({"input": value}, "m", {})
    assert caught.value.status == 400 and caught.value.param == "input"


def test_embeddings_list_is_openai_shaped() -> None:
    answer = {"model": "m", "embeddings": [[0.5, -1.0], [0.25, 0.0]], "prompt_eval_count": 7}
    assert ollama_kinds.embeddings_list(answer, "route-model", "u") == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, -1.0]},
            {"object": "embedding", "index": 1, "embedding": [0.25, 0.0]},
        ],
        "model": "route-model",
        "usage": {"prompt_tokens": 7, "total_tokens": 7},
    }
    with pytest.raises(UpstreamError):
        ollama_kinds.embeddings_list({"embedding": [1.0]}, "m", "u")


GENERATE_CASES = [
    # (body, max_tokens, route options, expected request (without model/stream))
    ({"prompt": "p"}, None, {}, {"prompt": "p"}),
    ({"prompt": ["p"]}, 8, {}, {"prompt": "p", "options": {"num_predict": 8}}),
    (
        {"prompt": "def f(", "suffix": "    return x", "temperature": 0.2, "stop": "\n\n", "seed": 1},
        16,
        {"temperature": 1.0, "num_ctx": 4096},
        {
            "prompt": "def f(",
            "suffix": "    return x",
            "options": {"temperature": 0.2, "num_ctx": 4096, "seed": 1, "stop": ["\n\n"], "num_predict": 16},
        },
    ),
    (
        {
            "prompt": "p",
            "raw": True,
            "images": ["AAAA"],
            "system": "s",
            "keep_alive": 0,
            "options": {"top_k": 3},
        },
        None,
        {},
        {
            "prompt": "p",
            "raw": True,
            "images": ["AAAA"],
            "system": "s",
            "keep_alive": 0,
            "options": {"top_k": 3},
        },
    ),
    ({"prompt": "p", "n": 1, "echo": False, "logprobs": None, "best_of": 1}, None, {}, {"prompt": "p"}),
]


@pytest.mark.parametrize(("body", "max_tokens", "route_options", "expected"), GENERATE_CASES)
def test_generate_request(
    body: dict[str, Any], max_tokens: int | None, route_options: dict[str, Any], expected: dict[str, Any]
) -> None:
    out = ollama_kinds.generate_request(body, "m", max_tokens, route_options, False)
    assert out == {"model": "m", "stream": False, **expected}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "p", "echo": True}, "echo"),
        ({"prompt": "p", "logprobs": 2}, "logprobs"),
        ({"prompt": "p", "n": 2}, "n"),
        ({"prompt": "p", "best_of": 3}, "best_of"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [1, 2, 3]}, "prompt"),
    ],
)
def test_generate_refuses_what_ollama_cannot_do(body: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedCall) as caught:
        ollama_kinds.generate_request(body, "m", None, {}, True)
    assert caught.value.status == 400 and caught.value.param == param


@pytest.mark.parametrize(
    ("line", "text", "reason"),
    [
        ({"response": "hi", "done": True, "done_reason": "stop"}, "hi", "stop"),
        ({"response": "hi", "done": True, "done_reason": "length"}, "hi", "length"),
        ({"response": "", "done": True, "done_reason": "load"}, "", "stop"),
    ],
)
def test_text_completion(line: dict[str, Any], text: str, reason: str) -> None:
    line = {**line, "prompt_eval_count": 3, "eval_count": 2}
    out = ollama_kinds.text_completion(line, "m", "rid")
    assert out["object"] == "text_completion" and out["id"] == "cmpl-rid" and out["model"] == "m"
    assert out["choices"] == [{"index": 0, "text": text, "logprobs": None, "finish_reason": reason}]
    assert out["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


@pytest.mark.parametrize("include_usage", [False, True])
def test_text_chunks(include_usage: bool) -> None:
    mapper = ollama_kinds.TextChunkMapper("m", "rid", include_usage)
    first = [json.loads(p) for p in mapper.chunks({"response": "a", "done": False})]
    empty = mapper.chunks({"response": "", "done": False})
    last = [json.loads(p) for p in mapper.chunks({"response": "", "done": True, "eval_count": 1})]
    assert empty == []
    assert first[0]["choices"] == [{"index": 0, "text": "a", "logprobs": None, "finish_reason": None}]
    assert first[0]["object"] == "text_completion" and first[0]["id"] == last[0]["id"] == "cmpl-rid"
    assert last[0]["choices"][0]["finish_reason"] == "stop"
    assert len(last) == (2 if include_usage else 1)
    if include_usage:
        assert last[1]["choices"] == [] and last[1]["usage"]["completion_tokens"] == 1


# ---- both adapters against both fakes, over real sockets -------------------------------------------


@pytest.fixture(params=["ollama", "openai"])
def fake(request: pytest.FixtureRequest) -> FakeUpstream:
    return request.getfixturevalue(f"fake_{request.param}")  # type: ignore[no-any-return]


def adapter_for(fake: FakeUpstream) -> UpstreamAdapter:
    return build_adapter(UpstreamConfig(name="u", type=fake.kind, base_url=fake.base_url))  # type: ignore[arg-type]


def call(fake: FakeUpstream, body: dict[str, Any], stream: bool = False, **extra: Any) -> ChatCall:
    fields: dict[str, Any] = {
        "max_tokens": None,
        "include_usage": False,
        "options": {},
        "request_id": "rid",
        **extra,
    }
    return ChatCall(body=body, model=fake.models[0], stream=stream, **fields)


UPSTREAM_PATHS = {
    ("ollama", "embed"): "/api/embed",
    ("openai", "embed"): "/v1/embeddings",
    ("ollama", "text"): "/api/generate",
    ("openai", "text"): "/v1/completions",
}


async def test_embed(fake: FakeUpstream) -> None:
    adapter = adapter_for(fake)
    try:
        raw, stats = await adapter.embed(call(fake, {"input": ["one two", "three"], "dimensions": 4}), LIMITS)
    finally:
        await adapter.close()
    answer = json.loads(raw)
    assert answer["object"] == "list" and [d["index"] for d in answer["data"]] == [0, 1]
    assert all(len(d["embedding"]) == 4 and isinstance(d["embedding"][0], float) for d in answer["data"])
    assert answer["data"][0]["embedding"] != answer["data"][1]["embedding"]
    assert stats.prompt_tokens == 3 and answer["usage"]["prompt_tokens"] == 3
    sent = fake.last_request
    assert sent.path == UPSTREAM_PATHS[fake.kind, "embed"] and sent.json["dimensions"] == 4
    assert sent.json["model"] == fake.models[0]
    if fake.kind == "openai":
        assert sent.json["encoding_format"] == "float"  # always floats inside: the door encodes base64


async def test_complete_text_with_suffix_and_cap(fake: FakeUpstream) -> None:
    adapter = adapter_for(fake)
    body = {"prompt": "def add(a, b):", "suffix": "return c", "max_tokens": 1000}
    try:
        raw, stats = await adapter.complete_text(call(fake, body, max_tokens=50, collect_text=True), LIMITS)
    finally:
        await adapter.close()
    answer = json.loads(raw)
    assert answer["object"] == "text_completion"
    text = answer["choices"][0]["text"]
    assert text.endswith("[suffix: return c]") and answer["choices"][0]["finish_reason"] == "stop"
    assert stats.text == [text] and stats.prompt_tokens == 3
    sent = fake.last_request.json
    assert fake.last_request.path == UPSTREAM_PATHS[fake.kind, "text"]
    cap = sent["options"]["num_predict"] if fake.kind == "ollama" else sent["max_tokens"]
    assert cap == 50 and sent["stream"] is False and sent["suffix"] == "return c"


async def test_text_stream(fake: FakeUpstream) -> None:
    adapter = adapter_for(fake)
    try:
        stream, first = await adapter.open_text_stream(
            call(
                fake,
                {"prompt": "p", "stream": True, "stream_options": {"include_usage": True}},
                stream=True,
                include_usage=True,
                max_tokens=3,
            ),
            LIMITS,
        )
        payloads = list(first)
        while (batch := await stream.read()) is not None:
            payloads.extend(batch)
    finally:
        await adapter.close()
    chunks = [json.loads(p) for p in payloads]
    assert all(c["object"] == "text_completion" for c in chunks)
    text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
    assert text == "tok0 tok1 tok2"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "length" and set(finishes[:-1]) == {None}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
    assert stream.stats.completion_tokens == 3


@pytest.mark.parametrize("what", ["embed", "text", "stream"])
async def test_upstream_failures_are_upstream_errors(fake: FakeUpstream, what: str) -> None:
    fake.fail_n_times(1, "status", code=503)
    adapter = adapter_for(fake)
    try:
        with pytest.raises(UpstreamError) as caught:
            if what == "embed":
                await adapter.embed(call(fake, {"input": "x"}), LIMITS)
            elif what == "text":
                await adapter.complete_text(call(fake, {"prompt": "x"}), LIMITS)
            else:
                await adapter.open_text_stream(call(fake, {"prompt": "x"}, stream=True), LIMITS)
    finally:
        await adapter.close()
    assert caught.value.status == 502 and caught.value.retryable


async def test_a_broken_text_stream_is_never_complete(fake: FakeUpstream) -> None:
    fake.set_behaviour("reset_mid_stream", after=1)
    adapter = adapter_for(fake)
    try:
        stream, _ = await adapter.open_text_stream(call(fake, {"prompt": "x"}, stream=True), LIMITS)
        with pytest.raises(UpstreamError):
            while await stream.read() is not None:
                pass
    finally:
        await adapter.close()


async def test_refusals_happen_before_the_upstream_hears_anything(fake_ollama: FakeOllama) -> None:
    adapter = adapter_for(fake_ollama)
    try:
        with pytest.raises(UnsupportedCall):
            await adapter.open_text_stream(call(fake_ollama, {"prompt": "x", "n": 2}, stream=True), LIMITS)
        with pytest.raises(UnsupportedCall):
            await adapter.embed(call(fake_ollama, {"input": [1, 2]}), LIMITS)
    finally:
        await adapter.close()
    assert fake_ollama.chat_count == 0


async def test_openai_upstreams_take_token_arrays_and_echo(fake_openai: FakeOpenAI) -> None:
    adapter = adapter_for(fake_openai)
    try:
        raw, _ = await adapter.embed(call(fake_openai, {"input": [[1, 2], [3]]}), LIMITS)
        text, _ = await adapter.complete_text(call(fake_openai, {"prompt": "say", "echo": True}), LIMITS)
        with pytest.raises(UnsupportedCall):
            await adapter.complete_text(call(fake_openai, {"prompt": "x", "images": ["AAAA"]}), LIMITS)
    finally:
        await adapter.close()
    assert len(json.loads(raw)["data"]) == 2
    assert json.loads(text)["choices"][0]["text"].startswith("say")


async def test_ollama_fields_reach_ollama_and_are_adapted_for_openai(fake: FakeUpstream) -> None:
    adapter = adapter_for(fake)
    body = {"prompt": "p", "system": "be brief", "raw": True, "keep_alive": "1m"}
    try:
        await adapter.complete_text(call(fake, body), LIMITS)
    finally:
        await adapter.close()
    sent = fake.last_request.json
    if fake.kind == "ollama":
        assert sent["system"] == "be brief" and sent["raw"] is True and sent["keep_alive"] == "1m"
    else:
        assert sent["prompt"] == "be brief\n\np" and not {"system", "raw", "keep_alive"} & set(sent)


async def test_legacy_ollama_embeddings_endpoint_is_spoken_by_the_fake(fake_ollama: FakeOllama) -> None:
    import httpx

    async with httpx.AsyncClient() as client:
        response = await client.post(
            fake_ollama.root_url + "/api/embeddings", json={"model": fake_ollama.models[0], "prompt": "x"}
        )
    assert response.status_code == 200 and len(response.json()["embedding"]) == 8
