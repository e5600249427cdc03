"""One router for the fuzz suite, on both fake dialects, started once per module (hundreds of requests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes import FakeOllama, FakeOpenAI
from tests.support.router_server import RunningRouter, table


@pytest.fixture(scope="module")
def fuzz_router() -> Iterator[tuple[RunningRouter, FakeOllama, FakeOpenAI]]:
    """A router with /chat/qwen3 (Ollama) and /chat/local (OpenAI); the fakes answer any model."""
    with (
        FakeOllama(["qwen3:32b"], accept_any_model=True, record_requests=False) as ollama,
        FakeOpenAI(["smollm2"], accept_any_model=True, record_requests=False) as openai,
    ):
        text = table(
            upstreams={
                "ollama": {"type": "ollama", "base_url": ollama.base_url},
                "local": {"type": "openai", "base_url": openai.base_url},
            },
            routes=[
                {"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"},
                {"path": "/chat/local", "model": "smollm2", "upstream": "local"},
            ],
            defaults={"max_retries": 0},
            logging={"level": "error"},  # hundreds of requests: keep the test output readable
        )
        with RunningRouter.from_yaml(text) as router:
            yield router, ollama, openai
