"""Shared fixtures. Each owner keeps their fixtures in their own marked section."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# ==== fake upstreams (owner: tests/fakes) ==========================================================
from tests.fakes import FakeOllama, FakeOpenAI


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    """A fake Ollama on a free loopback port, models qwen3:32b and qwen2:7b; base_url has no /v1."""
    with FakeOllama(["qwen3:32b", "qwen2:7b"]) as fake:
        yield fake


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A fake OpenAI-compatible server on a free loopback port, model smollm2; base_url ends in /v1."""
    with FakeOpenAI(["smollm2"]) as fake:
        yield fake


# ==== end of fake upstreams ========================================================================


# ==== the router under test (owner: tests/support) =================================================
from collections.abc import Callable  # noqa: E402

from tests.support.router_server import RunningRouter, table  # noqa: E402


@pytest.fixture
def start_router() -> Iterator[Callable[..., RunningRouter]]:
    """`start_router(yaml_text)` starts a real router on loopback; all are stopped after the test."""
    started: list[RunningRouter] = []

    def start(text: str, env: dict[str, str] | None = None) -> RunningRouter:
        router = RunningRouter.from_yaml(text, env).start()
        started.append(router)
        return router

    yield start
    for router in started:
        router.stop()


@pytest.fixture
def both_upstreams_router(
    fake_ollama: FakeOllama, fake_openai: FakeOpenAI, start_router: Callable[..., RunningRouter]
) -> RunningRouter:
    """A router with /chat/qwen3 on the fake Ollama and /chat/local on the fake OpenAI server."""
    text = table(
        upstreams={
            "ollama": {"type": "ollama", "base_url": fake_ollama.base_url},
            "local": {"type": "openai", "base_url": fake_openai.base_url},
        },
        routes=[
            {"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama", "options": {"num_ctx": 4096}},
            {"path": "/chat/local", "model": "smollm2", "upstream": "local", "max_tokens": 64},
        ],
    )
    return start_router(text)


# ==== end of the router under test =================================================================
