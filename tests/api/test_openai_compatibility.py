"""`/v1/chat/completions` and `/v1/models` work for the official openai SDK, unchanged."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.router_server import RunningRouter


@pytest.fixture
def client(both_upstreams_router: RunningRouter) -> openai.OpenAI:
    return openai.OpenAI(base_url=both_upstreams_router.url + "/v1", api_key="unused", max_retries=0)


def test_models_lists_every_route(client: openai.OpenAI) -> None:
    models = {m.id for m in client.models.list()}
    assert models == {"qwen3", "local"}


@pytest.mark.parametrize("model", ["qwen3", "qwen3:32b", "local", "smollm2"])
def test_sdk_chat_by_route_name_or_model(client: openai.OpenAI, model: str) -> None:
    completion = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4"
    assert completion.usage is not None and completion.usage.completion_tokens == 5


@pytest.mark.parametrize("model", ["qwen3", "local"])
def test_sdk_streaming(client: openai.OpenAI, model: str) -> None:
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    parts, usage = [], None
    for chunk in stream:
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
        if chunk.usage:
            usage = chunk.usage
    assert "".join(parts) == "tok0 tok1 tok2 tok3 tok4"
    assert usage is not None and usage.completion_tokens == 5


def test_unknown_model_is_404_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    assert "gpt-9" in caught.value.message
    assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_missing_model_is_400_with_param(both_upstreams_router: RunningRouter) -> None:
    response = httpx.post(
        both_upstreams_router.url + "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"
