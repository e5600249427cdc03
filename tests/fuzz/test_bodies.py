"""Hypothesis against the chat endpoints' bodies: whatever arrives, the router answers, never with a 5xx
of its own making and always with an OpenAI error object when it refuses.

Bodies are arbitrary bytes (invalid UTF-8 included), arbitrary JSON, deep nesting, huge strings, and
chat requests with single fields replaced by values of the wrong type or with unknown fields added. The
fake upstreams are healthy; a 5xx is accepted only when the router blames the upstream for it (a fake
refusing or failing on input that the router relays, like unknown fields, is an upstream's answer).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes import FakeOllama, FakeOpenAI
from tests.support.router_server import RunningRouter

Router = tuple[RunningRouter, FakeOllama, FakeOpenAI]
TARGETS = [("/chat/qwen3", None), ("/chat/local", None), ("/v1/chat/completions", "qwen3")]
UPSTREAM_CODES = {"upstream_error", "bad_upstream_response", "upstream_unavailable", "upstream_auth_failed"}
FIELDS = (
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "n",
    "tools",
    "response_format",
    "session_id",
)
FUZZ = settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=50)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "tool", ""]), "content": json_values}
    ),
    max_size=3,
)


@st.composite
def chat_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A plausible chat request with some fields replaced by anything, and unknown fields added."""
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        body[field] = draw(json_values if field != "messages" else (messages | json_values))
    body.update(draw(st.dictionaries(st.text(max_size=12), json_values, max_size=3)))
    if draw(st.booleans()):
        body["stream"] = draw(st.booleans())
    return body


@st.composite
def malformed_optional_fields(draw: st.DrawFn) -> dict[str, Any]:
    """A valid request with one optional field the Ollama translation reads set to anything at all."""
    anything = json_values
    message: dict[str, Any] = {"role": "user", "content": "hi"}
    body: dict[str, Any] = {"messages": [message], "max_tokens": 8}
    where = draw(
        st.sampled_from(
            [
                "tool_calls",
                "tool_call",
                "tool_function",
                "part",
                "text_part",
                "image_part",
                "image_url",
                "response_format",
                "json_schema",
                "schema",
                "top_level",
            ]
        )
    )
    if where == "tool_calls":
        message.update(role="assistant", tool_calls=draw(anything))
    elif where == "tool_call":
        message.update(role="assistant", tool_calls=[draw(anything)])
    elif where == "tool_function":
        function = {"name": draw(anything), "arguments": draw(anything)}
        message.update(role="assistant", tool_calls=[{"id": "c1", "type": "function", "function": function}])
    elif where == "part":
        message["content"] = [draw(anything)]
    elif where == "text_part":
        message["content"] = [{"type": "text", "text": draw(anything)}]
    elif where == "image_part":
        message["content"] = [{"type": "image_url", "image_url": draw(anything)}]
    elif where == "image_url":
        message["content"] = [{"type": "image_url", "image_url": {"url": draw(anything)}}]
    elif where == "response_format":
        body["response_format"] = draw(anything)
    elif where == "json_schema":
        body["response_format"] = {"type": "json_schema", "json_schema": draw(anything)}
    elif where == "schema":
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": draw(anything)},
        }
    else:
        field = draw(st.sampled_from(["tools", "frequency_penalty", "presence_penalty", "seed", "stop"]))
        body[field] = draw(anything)
    body["stream"] = draw(st.booleans())
    return body


OLLAMA_TARGETS = [("/chat/qwen3", None), ("/v1/chat/completions", "qwen3")]


@pytest.mark.parametrize(("path", "model"), OLLAMA_TARGETS, ids=[p for p, _ in OLLAMA_TARGETS])
def test_malformed_optional_fields_on_an_ollama_route_are_a_400_never_a_500(
    fuzz_router: Router, path: str, model: str | None
) -> None:
    router = fuzz_router[0]

    @FUZZ
    @given(body=malformed_optional_fields())
    def run(body: dict[str, Any]) -> None:
        if model is not None:
            body["model"] = model
        response = httpx.post(router.url + path, json=body, timeout=15)
        where = f"POST {path} {json.dumps(body)[:300]}: {response.status_code} {response.text[:300]}"
        assert response.status_code in (200, 400), where  # the fake Ollama is healthy: nothing else
        if response.status_code == 400:
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}, where
            assert error["param"], where  # the field is named

    run()


def nested(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def check(router: RunningRouter, path: str, content: bytes, content_type: str = "application/json") -> None:
    response = httpx.post(
        router.url + path, content=content, headers={"Content-Type": content_type}, timeout=15
    )
    where = f"POST {path} {content[:200]!r}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return  # a stream that failed after its start ends with an error event, checked elsewhere
        error = json.loads(response.text)["error"]
        assert set(error) == {"message", "type", "param", "code"}, where
        if response.status_code >= 500:
            assert error["code"] in UPSTREAM_CODES, where
    if response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream"):
        assert response.text.rstrip().endswith(("data: [DONE]", "}")), where


@pytest.mark.parametrize(("path", "model"), TARGETS, ids=[p for p, _ in TARGETS])
def test_chat_shaped_bodies(fuzz_router: Router, path: str, model: str | None) -> None:
    @FUZZ
    @given(body=chat_bodies())
    def run(body: dict[str, Any]) -> None:
        if model is not None and "model" not in body:
            body["model"] = model
        check(fuzz_router[0], path, json.dumps(body).encode())

    run()


@given(content=st.binary(max_size=2000) | json_values.map(lambda v: json.dumps(v).encode()))
@FUZZ
def test_arbitrary_bytes_and_json(fuzz_router: Router, content: bytes) -> None:
    check(fuzz_router[0], "/chat/local", content)


@given(
    text=st.text(min_size=1, max_size=20),
    size=st.integers(min_value=100_000, max_value=1_000_000),
    garbage=st.binary(min_size=1, max_size=8).filter(lambda b: not _utf8(b)),
)
@settings(max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_huge_strings_and_invalid_utf8(fuzz_router: Router, text: str, size: int, garbage: bytes) -> None:
    router = fuzz_router[0]
    huge = json.dumps({"messages": [{"role": "user", "content": (text * size)[:size]}], "max_tokens": 4})
    check(router, "/chat/local", huge.encode())
    invalid = b'{"messages": [{"role": "user", "content": "' + garbage + b'"}]}'
    check(router, "/chat/qwen3", invalid)
    check(router, "/chat/qwen3", b'{"messages": [{"role": "' + garbage + b'", "content": "x"}]}')


@pytest.mark.parametrize("depth", [64, 900, 1100, 50_000])
@pytest.mark.parametrize("kind", ["list", "object"])
def test_deep_nesting(fuzz_router: Router, depth: int, kind: str) -> None:
    router = fuzz_router[0]
    check(router, "/chat/local", nested(depth, kind))
    deep = b'{"messages": [{"role": "user", "content": "hi"}], "tools": ' + nested(depth, kind) + b"}"
    check(router, "/chat/local", deep)
    check(router, "/chat/qwen3", deep)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "", "multipart/form-data"]
)
def test_other_content_types(fuzz_router: Router, content_type: str) -> None:
    check(fuzz_router[0], "/chat/local", b'{"messages": [{"role": "user", "content": "hi"}]}', content_type)
    check(fuzz_router[0], "/chat/local", b"a=1&b=2", content_type)


def test_still_healthy_after_fuzzing(fuzz_router: Router) -> None:
    router = fuzz_router[0]
    assert httpx.get(router.url + "/healthz", timeout=5).status_code == 200
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(router.url + "/chat/qwen3", json=body, timeout=5).status_code == 200


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
