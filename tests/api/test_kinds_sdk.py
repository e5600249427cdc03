"""`/v1/embeddings` and `/v1/completions` for the official openai SDK, over real sockets, with a fake Ollama
and a fake OpenAI-compatible server behind the router; route kinds and their 400s.

docs/dialects/embeddings_and_completions.md is the specification.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes import FakeOllama, FakeOpenAI, wait_for
from tests.fakes._base import fake_vector
from tests.support.router_server import RunningRouter, table, through_the_app

CAP = 3  # the capped route's max_tokens


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama(["qwen3:32b", "nomic-embed-text"]) as fake:
        yield fake


@pytest.fixture
def compatible() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(["smollm2", "bge-small"]) as fake:
        yield fake


@pytest.fixture
def router(
    ollama: FakeOllama, compatible: FakeOpenAI, start_router: Callable[..., RunningRouter]
) -> RunningRouter:
    return start_router(
        table(
            upstreams={
                "ollama": {"type": "ollama", "base_url": ollama.base_url},
                "local": {"type": "openai", "base_url": compatible.base_url},
            },
            routes=[
                {"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"},
                {"path": "/chat/local", "model": "smollm2", "upstream": "local"},
                {"path": "/chat/capped", "model": "qwen3:32b", "upstream": "ollama", "max_tokens": CAP},
                {"path": "/chat/capped-local", "model": "smollm2", "upstream": "local", "max_tokens": CAP},
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
def client(router: RunningRouter) -> openai.OpenAI:
    return openai.OpenAI(base_url=router.url + "/v1", api_key="unused", max_retries=0)


EMBED_ROUTES = ["nomic", "bge"]


def expected(route: str, item: Any, dimensions: int = 8) -> list[float]:
    """What the fake behind `route` embeds `item` as (the Ollama fake hashes the text, the other its JSON)."""
    return fake_vector(item if route == "nomic" else json.dumps(item), dimensions)


def upstream_of(route: str, ollama: FakeOllama, compatible: FakeOpenAI) -> FakeOllama | FakeOpenAI:
    return ollama if route in ("nomic", "qwen3", "capped") else compatible


# ---- embeddings --------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", EMBED_ROUTES)
def test_sdk_embeds_one_string_by_default_as_base64(
    client: openai.OpenAI, route: str, ollama: FakeOllama, compatible: FakeOpenAI
) -> None:
    """The SDK asks for base64 when `encoding_format` is not given, and decodes it itself."""
    result = client.embeddings.create(model=route, input="the sky is blue")
    assert [d.index for d in result.data] == [0]
    assert result.data[0].embedding == expected(route, "the sky is blue")
    assert result.usage.prompt_tokens == 4
    sent = upstream_of(route, ollama, compatible).last_request.json
    assert sent.get("encoding_format", "float") == "float"  # floats inside, base64 made at the door


@pytest.mark.parametrize("route", EMBED_ROUTES)
def test_sdk_embeds_a_batch_with_dimensions(
    client: openai.OpenAI, route: str, ollama: FakeOllama, compatible: FakeOpenAI
) -> None:
    texts = ["one", "two words", "three little words"]
    result = client.embeddings.create(model=route, input=texts, dimensions=4, encoding_format="float")
    assert [d.embedding for d in result.data] == [expected(route, t, 4) for t in texts]
    assert [d.index for d in result.data] == [0, 1, 2]
    assert upstream_of(route, ollama, compatible).last_request.json["dimensions"] == 4


@pytest.mark.parametrize("route", EMBED_ROUTES)
def test_explicit_base64_is_little_endian_float32(client: openai.OpenAI, route: str) -> None:
    result = client.embeddings.create(model=route, input=["a", "b"], encoding_format="base64")
    for item, text in zip(result.data, ["a", "b"], strict=True):
        raw = base64.b64decode(item.embedding)  # type: ignore[arg-type]  # the SDK leaves it as sent
        assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == expected(route, text)


def test_token_arrays_reach_openai_upstreams_and_are_refused_for_ollama(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="bge", input=[[1, 2, 3], [4]], encoding_format="float")
    assert [d.embedding for d in result.data] == [expected("bge", [1, 2, 3]), expected("bge", [4])]
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="nomic", input=[[1, 2, 3]])
    assert caught.value.body["param"] == "input"  # type: ignore[index]
    assert "token arrays" in caught.value.message


def test_an_embeddings_route_answers_on_its_own_path(router: RunningRouter) -> None:
    response = httpx.post(router.url + "/embed/nomic", json={"input": "hi", "encoding_format": "float"})
    assert response.status_code == 200, response.text
    assert response.json()["data"][0]["embedding"] == expected("nomic", "hi")
    assert response.headers["x-router-route"] == "/embed/nomic"


@pytest.mark.parametrize("body", [{"input": ""}, {"input": []}, {"input": [1, "a"]}, {"model": "nomic"}])
def test_bad_embeddings_input_is_400_naming_it(router: RunningRouter, body: dict[str, Any]) -> None:
    response = httpx.post(router.url + "/v1/embeddings", json={"model": "nomic", **body})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input"


def test_embeddings_are_retried_like_chat(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.fail_n_times(1, "status", code=500)
    result = client.embeddings.create(model="nomic", input="x", encoding_format="float")
    assert result.data[0].embedding == expected("nomic", "x")
    assert ollama.chat_count == 2


# ---- text completions --------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["qwen3", "local"])
def test_sdk_completion_with_suffix(
    client: openai.OpenAI, route: str, ollama: FakeOllama, compatible: FakeOpenAI
) -> None:
    result = client.completions.create(model=route, prompt="def add(a, b):", suffix="    return c")
    assert result.object == "text_completion"
    assert result.choices[0].text == "tok0 tok1 tok2 tok3 tok4 [suffix:     return c]"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None and result.usage.prompt_tokens == 3
    sent = upstream_of(route, ollama, compatible).last_request
    assert sent.json["suffix"] == "    return c" and sent.json["stream"] is False
    assert sent.path == ("/api/generate" if route == "qwen3" else "/v1/completions")


@pytest.mark.parametrize("route", ["qwen3", "local"])
def test_sdk_completion_stream(client: openai.OpenAI, route: str) -> None:
    stream = client.completions.create(
        model=route, prompt="once upon", suffix="end", stream=True, stream_options={"include_usage": True}
    )
    texts, finishes, usage = [], [], None
    for chunk in stream:
        assert chunk.object == "text_completion"
        for choice in chunk.choices:
            texts.append(choice.text)
            finishes.append(choice.finish_reason)
        usage = chunk.usage or usage
    assert "".join(texts) == "tok0 tok1 tok2 tok3 tok4 [suffix: end]"
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert usage is not None and usage.completion_tokens == 6


@pytest.mark.parametrize("route", ["capped", "capped-local"])
@pytest.mark.parametrize("stream", [False, True])
def test_max_tokens_is_capped_by_the_route(
    client: openai.OpenAI, route: str, stream: bool, ollama: FakeOllama, compatible: FakeOpenAI
) -> None:
    if stream:
        chunks = list(client.completions.create(model=route, prompt="p", max_tokens=1000, stream=True))
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    else:
        result = client.completions.create(model=route, prompt="p", max_tokens=1000)
        text, finish = result.choices[0].text, result.choices[0].finish_reason
    assert text == "tok0 tok1 tok2" and finish == "length"
    sent = upstream_of(route, ollama, compatible).last_request.json
    assert (sent["options"]["num_predict"] if route == "capped" else sent["max_tokens"]) == CAP


@pytest.mark.parametrize(
    ("extra", "param"), [({"echo": True}, "echo"), ({"logprobs": 2}, "logprobs"), ({"n": 2}, "n")]
)
def test_what_ollama_cannot_do_is_400_naming_it(
    client: openai.OpenAI, ollama: FakeOllama, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="qwen3", prompt="p", **extra)
    assert caught.value.body["param"] == param  # type: ignore[index]
    assert ollama.chat_count == 0


def test_echo_is_passed_through_to_openai_upstreams(client: openai.OpenAI) -> None:
    result = client.completions.create(model="local", prompt="say", echo=True)
    assert result.choices[0].text == "saytok0 tok1 tok2 tok3 tok4"


def test_a_prompt_list_of_one_is_one_prompt(client: openai.OpenAI, ollama: FakeOllama) -> None:
    result = client.completions.create(model="qwen3", prompt=["just one"])
    assert result.choices[0].text == "tok0 tok1 tok2 tok3 tok4"
    assert ollama.last_request.json["prompt"] == "just one"


def test_a_failure_mid_stream_is_a_final_error_event(client: openai.OpenAI, compatible: FakeOpenAI) -> None:
    compatible.set_behaviour("error_line", after=2)
    compatible.chunk_delay = 0.3  # the first chunk is relayed before the failure: the status is sent
    texts: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.completions.create(model="local", prompt="p", stream=True):
            texts.extend(choice.text for choice in chunk.choices)
    assert texts[:1] == ["tok0"] and "failed mid-answer" in caught.value.message


def test_completions_fail_over_like_chat(
    ollama: FakeOllama, compatible: FakeOpenAI, start_router: Callable[..., RunningRouter]
) -> None:
    router = start_router(
        table(
            upstreams={
                "ollama": {"type": "ollama", "base_url": ollama.base_url},
                "local": {"type": "openai", "base_url": compatible.base_url},
            },
            routes=[
                {"path": "/chat/a", "model": "qwen3:32b", "upstream": "ollama", "fallbacks": ["/chat/b"]},
                {"path": "/chat/b", "model": "smollm2", "upstream": "local"},
            ],
            defaults={"max_retries": 0},
        )
    )
    ollama.set_behaviour("status", code=503)
    client = openai.OpenAI(base_url=router.url + "/v1", api_key="unused", max_retries=0)
    result = client.completions.create(model="a", prompt="p")
    assert result.choices[0].text == "tok0 tok1 tok2 tok3 tok4"
    wait_for(lambda: compatible.chat_count == 1)


# ---- kinds -------------------------------------------------------------------------------------------


def test_chat_on_an_embeddings_route_is_400(client: openai.OpenAI, router: RunningRouter) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="nomic", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["param"] == "model"  # type: ignore[index]
    assert "embeddings" in caught.value.message
    response = httpx.post(router.url + "/embed/nomic", json={"messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 400 and "embeddings" in response.json()["error"]["message"]


def test_completions_on_an_embeddings_route_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="bge", prompt="p")
    assert caught.value.body["param"] == "model"  # type: ignore[index]
    assert "embeddings" in caught.value.message


def test_embeddings_on_a_chat_route_is_400(client: openai.OpenAI, ollama: FakeOllama) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="qwen3", input="x")
    assert caught.value.body["param"] == "model"  # type: ignore[index]
    assert "chat" in caught.value.message
    assert ollama.chat_count == 0


def test_an_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nope", input="x")
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="x")


# ---- the same policies as chat: health probes, keys, metrics -------------------------------------------

FAST_HEALTH = {
    "enabled": True,
    "interval": 0.1,
    "timeout": 0.5,
    "failure_threshold": 2,
    "recovery_threshold": 2,
}


def _health_state(router: RunningRouter, path: str) -> str | None:
    for entry in httpx.get(router.url + "/status").json()["routes"]:
        if entry["path"] == path:
            return entry["replicas"][0]["health"]["state"]  # type: ignore[no-any-return]
    return None


@pytest.mark.parametrize("kind", ["ollama", "openai"])
def test_embeddings_routes_are_probed_like_chat_routes(
    kind: str, ollama: FakeOllama, compatible: FakeOpenAI, start_router: Callable[..., RunningRouter]
) -> None:
    fake = ollama if kind == "ollama" else compatible
    router = start_router(
        table(
            upstreams={"u": {"type": kind, "base_url": fake.base_url}},
            routes=[
                {"path": "/embed/here", "model": fake.models[1], "upstream": "u", "kind": "embeddings"},
                {"path": "/embed/absent", "model": "not-pulled", "upstream": "u", "kind": "embeddings"},
            ],
            defaults={"health_check": FAST_HEALTH},
        )
    )
    wait_for(lambda: _health_state(router, "/embed/here") == "healthy")
    wait_for(lambda: _health_state(router, "/embed/absent") == "unhealthy")
    client = openai.OpenAI(base_url=router.url + "/v1", api_key="unused", max_retries=0)
    assert client.embeddings.create(model="here", input="x").data
    with pytest.raises(openai.InternalServerError) as caught:  # 503: the probe said the model is missing
        client.embeddings.create(model="absent", input="x")
    assert caught.value.status_code == 503 and "not-pulled" in caught.value.message


def test_keys_limit_the_new_doors_like_chat(
    ollama: FakeOllama, compatible: FakeOpenAI, start_router: Callable[..., RunningRouter]
) -> None:
    router = start_router(
        table(
            upstreams={"ollama": {"type": "ollama", "base_url": ollama.base_url}},
            routes=[
                {"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"},
                {
                    "path": "/embed/nomic",
                    "model": "nomic-embed-text",
                    "upstream": "ollama",
                    "kind": "embeddings",
                },
            ],
            auth={"api_keys": [{"name": "chatter", "key": "sk-chat-only-0001", "routes": ["/chat/qwen3"]}]},
        )
    )
    anonymous = openai.OpenAI(base_url=router.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.embeddings.create(model="nomic", input="x")
    with pytest.raises(openai.AuthenticationError):
        anonymous.completions.create(model="qwen3", prompt="x")
    client = openai.OpenAI(base_url=router.url + "/v1", api_key="sk-chat-only-0001", max_retries=0)
    assert client.completions.create(model="qwen3", prompt="x").choices[0].text
    with pytest.raises(openai.PermissionDeniedError):
        client.embeddings.create(model="nomic", input="x")
    assert ollama.chat_count == 1


def test_metrics_count_the_new_kinds(client: openai.OpenAI, router: RunningRouter) -> None:
    client.embeddings.create(model="nomic", input="one two three")
    client.completions.create(model="local", prompt="p")
    text = httpx.get(router.url + "/metrics").text
    assert 'route="/embed/nomic"' in text and 'route="/chat/local"' in text
    prompt = [
        line
        for line in text.splitlines()
        if line.startswith('router_prompt_tokens_total{route="/embed/nomic"')
    ]
    assert prompt and float(prompt[0].split()[-1]) == 3.0


# ---- the fast path and the app answer alike; the doors are documented -----------------------------------

PARITY_CASES = [
    ("/v1/embeddings", {"model": "bge", "input": ["a", "b"], "encoding_format": "float"}),
    ("/v1/embeddings", {"model": "bge", "input": "a", "encoding_format": "base64"}),
    ("/embed/bge", {"input": "a"}),
    ("/embed/bge", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/embeddings", {"model": "local", "input": "a"}),
    ("/v1/embeddings", {"model": "nope", "input": "a"}),
    ("/v1/completions", {"model": "local", "prompt": "p", "suffix": "s"}),
    ("/v1/completions", {"model": "bge", "prompt": "p"}),
    ("/v1/completions", {"model": "local", "prompt": 3}),
    ("/v1/chat/completions", {"model": "bge", "messages": [{"role": "user", "content": "hi"}]}),
]


def _answers(router: RunningRouter) -> list[tuple[int, object]]:
    out: list[tuple[int, object]] = []
    for path, body in PARITY_CASES:
        response = httpx.post(router.url + path, json=body)
        data = response.json()
        if response.status_code == 200:
            data = data["data"] if "data" in data else data["choices"][0]["text"]  # ids and times differ
        out.append((response.status_code, data))
    return out


def test_fast_path_and_app_answer_alike(
    compatible: FakeOpenAI, start_router: Callable[..., RunningRouter]
) -> None:
    def make(**server: object) -> RunningRouter:
        return start_router(
            table(
                {"local": {"type": "openai", "base_url": compatible.base_url}},
                [
                    {"path": "/chat/local", "model": "smollm2", "upstream": "local"},
                    {"path": "/embed/bge", "model": "bge-small", "upstream": "local", "kind": "embeddings"},
                ],
                server=server,
            )
        )

    fast = make()
    framework = through_the_app(make())  # every request goes to the app
    assert framework.sync(lambda: framework.runtime.current.fast) is None  # type: ignore[union-attr]
    got = _answers(fast)
    assert [status for status, _ in got] == [200, 200, 200, 400, 400, 404, 200, 400, 400, 400]
    assert got == _answers(framework)


def test_the_new_doors_are_in_the_openapi_document(router: RunningRouter) -> None:
    document = httpx.get(router.url + "/schema/openapi.json").json()
    paths = document["paths"]
    assert (
        "input"
        in paths["/v1/embeddings"]["post"]["requestBody"]["content"]["application/json"]["schema"][
            "properties"
        ]
    )
    assert (
        "suffix"
        in paths["/v1/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"][
            "properties"
        ]
    )
    embed_route = paths["/embed/nomic"]["post"]
    assert embed_route["summary"] == "Embeddings from nomic-embed-text"
    # a route's body refers to its kind's one request schema in `components`
    ref = embed_route["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.removeprefix("#/components/schemas/")]
    assert "input" in schema["properties"] and "messages" not in schema["properties"]
