"""End to end: the real SmolLM2-135M model behind the router, driven by the official `ollama` client through
the Ollama front door (docs/dialects/ollama_api.md): a streamed chat and a streamed generate."""

from __future__ import annotations

from collections.abc import Iterator

import ollama
import pytest

from tests.e2e.test_smollm2 import model_server  # noqa: F401  (the model server fixture)
from tests.support.router_server import RunningRouter, table

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def router(model_server: str) -> Iterator[RunningRouter]:  # noqa: F811
    # No health probes: llama-cpp-python's server (interrupt_requests, on by default) ends a stream in
    # progress with `[DONE]` as soon as another request, even `GET /v1/models`, waits for the model, so a
    # probe landing during a slow first generation would cut the answer short (README, upstream quirks).
    text = table(
        {"local": {"type": "openai", "base_url": model_server}},
        [
            {
                "path": "/chat/local",
                "name": "local",
                "model": "smollm2",
                "upstream": "local",
                "timeout": 60,
                "max_tokens": 24,
            }
        ],
        defaults={"stall_timeout": 30},
    )
    with RunningRouter.from_yaml(text) as running:
        yield running


@pytest.fixture
def client(router: RunningRouter) -> ollama.Client:
    return ollama.Client(host=router.url, timeout=90)


def test_real_model_streams_a_chat_to_an_ollama_client(client: ollama.Client) -> None:
    parts = list(
        client.chat(model="local", messages=[{"role": "user", "content": "Say hello."}], stream=True)
    )
    text = "".join(p.message.content or "" for p in parts)
    assert text.strip() and len(parts) > 2, parts  # token by token, not one block
    last = parts[-1]
    assert last.done is True and last.done_reason in ("stop", "length")
    assert last.eval_count is not None and 0 < last.eval_count <= 24  # the route's cap (max_tokens)
    assert all(not p.done for p in parts[:-1])


def test_real_model_streams_a_generate_to_an_ollama_client(client: ollama.Client) -> None:
    prompt = "The capital of France is"
    parts = list(
        client.generate(model="local", prompt=prompt, stream=True, options={"temperature": 0, "seed": 1})
    )
    assert "".join(p.response or "" for p in parts).strip()
    assert parts[-1].done is True and parts[-1].eval_count is not None
