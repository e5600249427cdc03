"""The official `ollama` Python client against the router over real sockets, both fake upstream kinds behind.

Everything written for Ollama should work against the router unchanged: the client is pointed at the
router's root, as it would be at `ollama serve`, and names routes as models.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import ollama
import pytest

from tests.fakes import FakeOllama, FakeOpenAI
from tests.fakes._base import fake_vector
from tests.support.router_server import RunningRouter, table, through_the_app

ANSWER = "tok0 tok1 tok2 tok3 tok4"


@pytest.fixture
def client(both_upstreams_router: RunningRouter) -> ollama.Client:
    return ollama.Client(host=both_upstreams_router.url)


def test_list_shows_every_route_as_a_model(client: ollama.Client) -> None:
    listing = client.list()
    assert {m.model for m in listing.models} == {"qwen3", "local"}
    for model in listing.models:
        assert model.digest and len(model.digest) == 64 and model.modified_at is not None
        assert model.details is not None


def test_show_describes_a_route(client: ollama.Client) -> None:
    shown = client.show("qwen3")
    assert shown.capabilities == ["completion", "tools"]
    assert shown.modelinfo is not None and shown.modelinfo["general.basename"] == "qwen3:32b"
    assert shown.parameters is not None and "num_ctx" in shown.parameters and "4096" in shown.parameters
    assert shown.template == ""


def test_show_of_an_unknown_model_is_404(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        client.show("gpt-9")
    assert caught.value.status_code == 404 and "gpt-9" in caught.value.error


def test_ps_lists_routes(client: ollama.Client) -> None:
    assert {m.model for m in client.ps().models} == {"qwen3", "local"}


def test_version_and_head(both_upstreams_router: RunningRouter) -> None:
    base = both_upstreams_router.url
    version = httpx.get(base + "/api/version")
    assert version.status_code == 200 and isinstance(version.json()["version"], str)
    assert httpx.head(base + "/api/version").status_code == 200
    assert httpx.head(base + "/api/tags").status_code == 200
    assert httpx.head(base + "/").status_code == 200  # Ollama clients' heartbeat; the page stays at GET /


@pytest.mark.parametrize("model", ["qwen3", "qwen3:latest", "qwen3:32b", "local", "smollm2"])
def test_chat(client: ollama.Client, model: str) -> None:
    response = client.chat(model=model, messages=[{"role": "user", "content": "hi"}], stream=False)
    assert response.message.role == "assistant" and response.message.content == ANSWER
    assert response.done is True and response.done_reason == "stop"
    assert response.model == model
    assert response.eval_count == 5 and response.prompt_eval_count is not None
    assert response.total_duration is not None and response.total_duration > 0


@pytest.mark.parametrize("model", ["qwen3", "local"])
def test_chat_stream(client: ollama.Client, model: str) -> None:
    parts = list(client.chat(model=model, messages=[{"role": "user", "content": "hi"}], stream=True))
    assert "".join(p.message.content or "" for p in parts) == ANSWER
    assert [p.done for p in parts].count(True) == 1 and parts[-1].done is True
    assert parts[-1].done_reason == "stop" and parts[-1].eval_count == 5
    assert parts[-1].eval_duration is not None and parts[-1].prompt_eval_duration is not None


def test_chat_stream_is_the_default_and_ndjson(both_upstreams_router: RunningRouter) -> None:
    body = {"model": "qwen3", "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(both_upstreams_router.url + "/api/chat", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert len(lines) > 2 and lines[-1]["done"] is True and all(not line["done"] for line in lines[:-1])


@pytest.mark.parametrize("model", ["qwen3", "local"])
def test_generate_stream(client: ollama.Client, model: str) -> None:
    parts = list(client.generate(model=model, prompt="hi", system="be brief", stream=True))
    assert "".join(p.response or "" for p in parts) == ANSWER
    assert parts[-1].done is True and parts[-1].done_reason == "stop"


@pytest.mark.parametrize("model", ["qwen3", "local"])
def test_generate_whole(client: ollama.Client, model: str) -> None:
    response = client.generate(model=model, prompt="hi", stream=False)
    assert response.response == ANSWER and response.done is True


def test_options_reach_an_ollama_upstream(client: ollama.Client, fake_ollama: FakeOllama) -> None:
    client.chat(
        model="qwen3",
        messages=[{"role": "user", "content": "hi"}],
        stream=False,
        options={"temperature": 0.5, "top_k": 7, "num_predict": 3, "stop": ["x"]},
        keep_alive="1m",
        think=True,
        format="json",
    )
    sent = fake_ollama.requests[-1].json
    assert sent["options"]["temperature"] == 0.5 and sent["options"]["top_k"] == 7
    assert sent["options"]["num_predict"] == 3 and sent["options"]["stop"] == ["x"]
    assert sent["options"]["num_ctx"] == 4096  # the route's own options are kept
    assert sent["keep_alive"] == "1m" and sent["think"] is True and sent["format"] == "json"


def test_openai_upstream_gets_what_maps_and_nothing_else(
    client: ollama.Client, fake_openai: FakeOpenAI
) -> None:
    client.chat(
        model="local",
        messages=[{"role": "user", "content": "hi"}],
        stream=False,
        options={"temperature": 0.5, "top_k": 7, "num_predict": 1000},
        keep_alive="1m",
        think="high",
    )
    sent = fake_openai.requests[-1].json
    assert sent["temperature"] == 0.5 and sent["max_tokens"] == 64  # the route's cap wins over num_predict
    assert sent["reasoning_effort"] == "high"
    assert "ollama" not in sent and "options" not in sent and "keep_alive" not in sent and "top_k" not in sent


def test_unknown_model_is_a_response_error_404(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 404 and "gpt-9" in caught.value.error
    with pytest.raises(ollama.ResponseError) as again:
        list(client.chat(model="gpt-9", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert again.value.status_code == 404


def test_bad_request_is_400_in_ollama_shape(both_upstreams_router: RunningRouter) -> None:
    response = httpx.post(both_upstreams_router.url + "/api/chat", json={"model": "qwen3", "messages": "hi"})
    assert response.status_code == 400 and isinstance(response.json()["error"], str)


# ==== embeddings, tool calls, failures: a table with embeddings routes ===========================


QUICK = {"max_retries": 0, "stall_timeout": 1.0, "heartbeat_interval": 0.2}


@pytest.fixture
def ollama_up() -> Iterator[FakeOllama]:
    with FakeOllama(["qwen3:32b", "nomic-embed-text"]) as fake:
        yield fake


@pytest.fixture
def openai_up() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(["smollm2", "bge-small"]) as fake:
        yield fake


@pytest.fixture
def kinds_router(
    ollama_up: FakeOllama, openai_up: FakeOpenAI, start_router: Callable[..., RunningRouter]
) -> RunningRouter:
    return start_router(
        table(
            upstreams={
                "ollama": {"type": "ollama", "base_url": ollama_up.base_url},
                "local": {"type": "openai", "base_url": openai_up.base_url},
            },
            routes=[
                {"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama", **QUICK},
                {"path": "/chat/local", "model": "smollm2", "upstream": "local", **QUICK},
                {
                    "path": "/embed/nomic",
                    "model": "nomic-embed-text",
                    "upstream": "ollama",
                    "kind": "embeddings",
                },
                {"path": "/embed/bge", "model": "bge-small", "upstream": "local", "kind": "embeddings"},
            ],
        )
    )


@pytest.fixture
def kinds_client(kinds_router: RunningRouter) -> ollama.Client:
    return ollama.Client(host=kinds_router.url)


def _vector(route: str, text: str) -> list[float]:
    # The Ollama fake embeds the text; the OpenAI one the JSON of the item (tests/fakes).
    return fake_vector(text if route == "nomic" else json.dumps(text), 8)


@pytest.mark.parametrize("route", ["nomic", "bge"])
def test_embed(kinds_client: ollama.Client, route: str) -> None:
    one = kinds_client.embed(model=route, input="hello")
    assert one.model == route and [list(v) for v in one.embeddings] == [_vector(route, "hello")]
    batch = kinds_client.embed(model=route, input=["a", "b"])
    assert [list(v) for v in batch.embeddings] == [_vector(route, "a"), _vector(route, "b")]
    assert batch.prompt_eval_count is not None


@pytest.mark.parametrize("route", ["nomic", "bge"])
def test_older_embeddings_endpoint(kinds_client: ollama.Client, route: str) -> None:
    response = kinds_client.embeddings(model=route, prompt="hello")
    assert list(response.embedding) == _vector(route, "hello")


def test_show_says_an_embeddings_route_embeds(kinds_client: ollama.Client) -> None:
    assert kinds_client.show("nomic").capabilities == ["embedding"]


def test_route_of_the_other_kind_is_400(kinds_client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as chat_on_embed:
        kinds_client.chat(model="nomic", messages=[{"role": "user", "content": "hi"}], stream=False)
    assert chat_on_embed.value.status_code == 400
    with pytest.raises(ollama.ResponseError) as embed_on_chat:
        kinds_client.embed(model="qwen3", input="hi")
    assert embed_on_chat.value.status_code == 400


WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}


def _sse(*chunks: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def test_tool_calls_streamed_in_fragments_arrive_whole(
    kinds_client: ollama.Client, openai_up: FakeOpenAI
) -> None:
    def delta(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "c",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": d, "finish_reason": finish}],
        }

    call = {"index": 0, "id": "call_a", "type": "function", "function": {"name": "weather", "arguments": ""}}
    body = _sse(
        delta({"role": "assistant", "content": None, "tool_calls": [call]}),
        delta({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        delta({"tool_calls": [{"index": 0, "function": {"arguments": '"Tokyo"}'}}]}),
        delta({}, "tool_calls"),
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 4},
        },
    )
    openai_up.set_behaviour("status", code=200, body=body, content_type="text/event-stream")
    parts = list(
        kinds_client.chat(
            model="local", messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER], stream=True
        )
    )
    calls = [c for p in parts for c in (p.message.tool_calls or [])]
    assert len(calls) == 1 and calls[0].function.name == "weather"
    assert dict(calls[0].function.arguments) == {"city": "Tokyo"}
    assert parts[-1].done is True and parts[-1].eval_count == 4 and parts[-1].prompt_eval_count == 9
    assert openai_up.requests[-1].json["tools"] == [WEATHER]


def test_tool_calls_from_an_ollama_upstream_and_the_history_back(
    kinds_client: ollama.Client, ollama_up: FakeOllama
) -> None:
    lines = [
        {
            "model": "qwen3:32b",
            "created_at": "2026-01-01T00:00:00Z",
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Paris"}}}],
            },
            "done": False,
        },
        {
            "model": "qwen3:32b",
            "created_at": "2026-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 3,
            "eval_count": 2,
        },
    ]
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    ollama_up.set_behaviour("status", code=200, body=body, content_type="application/x-ndjson")
    parts = list(
        kinds_client.chat(
            model="qwen3", messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER], stream=True
        )
    )
    calls = [c for p in parts for c in (p.message.tool_calls or [])]
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [("weather", {"city": "Paris"})]
    ollama_up.reset()
    history = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": "sunny", "tool_name": "weather"},
    ]
    kinds_client.chat(model="qwen3", messages=history, tools=[WEATHER], stream=False)
    sent = ollama_up.requests[-1].json["messages"]
    assert sent[1]["tool_calls"] == [{"function": {"name": "weather", "arguments": {"city": "Paris"}}}]
    assert sent[2]["role"] == "tool" and sent[2]["content"] == "sunny"


@pytest.mark.parametrize("route", ["qwen3", "local"])
def test_failure_mid_stream_is_a_final_error_line(
    kinds_client: ollama.Client, ollama_up: FakeOllama, openai_up: FakeOpenAI, route: str
) -> None:
    (ollama_up if route == "qwen3" else openai_up).set_behaviour("error_line", after=2, message="boom")
    parts: list[Any] = []
    with pytest.raises(ollama.ResponseError) as caught:
        for part in kinds_client.chat(model=route, messages=[{"role": "user", "content": "hi"}], stream=True):
            parts.append(part)
    assert "boom" in caught.value.error  # a final error line, or the status when it came before any answer
    assert all(not p.done for p in parts)  # never passed off as complete


@pytest.mark.parametrize("route", ["qwen3", "local"])
def test_stall_after_the_start_heartbeats_then_a_final_error_line(
    kinds_client: ollama.Client, ollama_up: FakeOllama, openai_up: FakeOpenAI, route: str
) -> None:
    (ollama_up if route == "qwen3" else openai_up).set_behaviour("stall_mid_stream", after=2, seconds=30)
    parts: list[Any] = []
    with pytest.raises(ollama.ResponseError) as caught:
        for part in kinds_client.chat(model=route, messages=[{"role": "user", "content": "hi"}], stream=True):
            parts.append(part)
    assert "stall_timeout" in caught.value.error
    texts = [p.message.content for p in parts]
    assert "".join(texts[:2]).split() == ["tok0", "tok1"] and all(not p.done for p in parts)
    # The heartbeats in the silence: empty, unfinished lines the official client parses like any other.
    assert len(texts) > 2 and set(texts[2:]) == {""}


def test_upstream_down_before_the_stream_is_an_ollama_error(
    kinds_client: ollama.Client, ollama_up: FakeOllama
) -> None:
    ollama_up.set_behaviour("status", code=500)
    with pytest.raises(ollama.ResponseError) as caught:
        list(kinds_client.chat(model="qwen3", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert caught.value.status_code == 502 and isinstance(caught.value.error, str)


@pytest.mark.parametrize("route", ["qwen3", "local"])
@pytest.mark.parametrize("stream", [False, True])
def test_generate_fill_in_the_middle(
    kinds_client: ollama.Client, ollama_up: FakeOllama, openai_up: FakeOpenAI, route: str, stream: bool
) -> None:
    result = kinds_client.generate(model=route, prompt="def add(a, b):", suffix="    return c", stream=stream)
    parts = list(result) if stream else [result]
    assert "".join(p.response or "" for p in parts) == ANSWER + " [suffix:     return c]"
    assert parts[-1].done is True
    sent = (ollama_up if route == "qwen3" else openai_up).requests[-1]
    assert sent.path.endswith("/api/generate" if route == "qwen3" else "/completions")
    assert sent.json["suffix"] == "    return c" and sent.json["prompt"] == "def add(a, b):"


def test_ollama_endpoints_the_router_does_not_serve_are_ollama_shaped_404(
    kinds_client: ollama.Client,
) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        kinds_client.pull("qwen3")
    assert caught.value.status_code == 404 and isinstance(caught.value.error, str)
    assert "/api/tags" in caught.value.error


def test_doors_served_by_the_app_too(
    fake_ollama: FakeOllama, start_router: Callable[..., RunningRouter]
) -> None:
    """The app (not the fast path) serves the doors too, CORS on: the same answers, Ollama's errors."""
    router = start_router(
        table(
            upstreams={"ollama": {"type": "ollama", "base_url": fake_ollama.base_url}},
            routes=[{"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"}],
            server={"cors_allowed_origins": ["http://example.test"]},
        )
    )
    through_the_app(router)
    client = ollama.Client(host=router.url, headers={"Origin": "http://example.test"})
    parts = list(client.chat(model="qwen3", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert "".join(p.message.content or "" for p in parts) == ANSWER and parts[-1].done
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="nope", messages=[{"role": "user", "content": "hi"}], stream=False)
    assert caught.value.status_code == 404 and "nope" in caught.value.error
    too_big = httpx.post(router.url + "/api/chat", content=b"x" * (router.config.server.max_body_bytes + 1))
    assert too_big.status_code == 413 and isinstance(too_big.json()["error"], str)


def test_keys_and_their_route_lists_hold_on_the_ollama_doors(
    fake_ollama: FakeOllama, fake_openai: FakeOpenAI, start_router: Callable[..., RunningRouter]
) -> None:
    router = start_router(
        table(
            upstreams={
                "ollama": {"type": "ollama", "base_url": fake_ollama.base_url},
                "local": {"type": "openai", "base_url": fake_openai.base_url},
            },
            routes=[
                {"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"},
                {"path": "/chat/local", "model": "smollm2", "upstream": "local"},
            ],
            auth={"api_keys": [{"name": "chatter", "key": "sk-qwen-only-00001", "routes": ["/chat/qwen3"]}]},
        )
    )
    keyed = ollama.Client(host=router.url, headers={"Authorization": "Bearer sk-qwen-only-00001"})
    assert [m.model for m in keyed.list().models] == ["qwen3"]
    assert keyed.chat(model="qwen3", messages=[{"role": "user", "content": "hi"}], stream=False).done
    with pytest.raises(ollama.ResponseError) as other_route:
        keyed.chat(model="local", messages=[{"role": "user", "content": "hi"}], stream=False)
    assert other_route.value.status_code == 403 and isinstance(other_route.value.error, str)
    with pytest.raises(ollama.ResponseError) as no_key:
        ollama.Client(host=router.url).chat(model="qwen3", messages=[{"role": "user", "content": "hi"}])
    assert no_key.value.status_code == 401
    with pytest.raises(ollama.ResponseError) as listing:
        ollama.Client(host=router.url).list()
    assert listing.value.status_code == 401 and isinstance(listing.value.error, str)


def test_openapi_document_lists_the_ollama_doors(both_upstreams_router: RunningRouter) -> None:
    paths = httpx.get(both_upstreams_router.url + "/schema/openapi.json").json()["paths"]
    for path in ("/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/api/show"):
        assert "post" in paths[path], path
    for path in ("/api/tags", "/api/ps", "/api/version"):
        assert "get" in paths[path], path


def test_aliases_are_listed_and_select_their_route(
    fake_ollama: FakeOllama, start_router: Callable[..., RunningRouter]
) -> None:
    router = start_router(
        table(
            upstreams={"ollama": {"type": "ollama", "base_url": fake_ollama.base_url}},
            routes=[
                {
                    "path": "/chat/qwen3",
                    "model": "qwen3:32b",
                    "upstream": "ollama",
                    "aliases": ["llama3.2", "gpt-4o"],
                }
            ],
        )
    )
    client = ollama.Client(host=router.url)
    assert [m.model for m in client.list().models] == ["qwen3", "llama3.2", "gpt-4o"]
    for name in ("llama3.2", "llama3.2:latest", "gpt-4o"):
        answer = client.chat(model=name, messages=[{"role": "user", "content": "hi"}], stream=False)
        assert answer.message.content == ANSWER and answer.model == name
    assert fake_ollama.requests[-1].json["model"] == "qwen3:32b"


def test_sessions_by_header_on_the_chat_door(
    fake_ollama: FakeOllama, start_router: Callable[..., RunningRouter]
) -> None:
    """An Ollama client that sends `X-Session-Id` gets the server-side history, streamed or whole."""
    router = start_router(
        table(
            upstreams={"ollama": {"type": "ollama", "base_url": fake_ollama.base_url}},
            routes=[{"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"}],
            sessions={"max_messages": 10},
        )
    )
    client = ollama.Client(host=router.url, headers={"X-Session-Id": "s-ollama"})
    list(client.chat(model="qwen3", messages=[{"role": "user", "content": "first"}], stream=True))
    client.chat(model="qwen3", messages=[{"role": "user", "content": "second"}], stream=False)
    sent = [m["content"] for m in fake_ollama.last_request.json["messages"]]
    assert sent == ["first", ANSWER, "second"]


def test_framework_errors_on_ollama_paths_are_ollama_shaped(both_upstreams_router: RunningRouter) -> None:
    base = both_upstreams_router.url
    for method, path in (("POST", "/api/tags"), ("GET", "/api/chat"), ("DELETE", "/api/show")):
        response = httpx.request(method, base + path)
        assert response.status_code == 405, (method, path)
        assert set(response.json()) == {"error"} and isinstance(response.json()["error"], str), (method, path)
