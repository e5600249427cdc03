"""The official `ollama` Python client against the router over real sockets, both fake upstream kinds behind.

Everything written for Ollama should work against the router unchanged: the client is pointed at the
router's root, as it would be at `ollama serve`, and names routes as models.
"""

from __future__ import annotations

import json

import httpx
import ollama
import pytest

from tests.fakes import FakeOllama, FakeOpenAI
from tests.support.router_server import RunningRouter

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
