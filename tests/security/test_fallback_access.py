"""A key's route list holds through fallbacks: a key allowed only /chat/cheap is never served by
/chat/pricey when cheap fails, though cheap falls back to pricey for keys that may use both."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import httpx
import pytest

from tests.fakes import FakeOllama, FakeOpenAI
from tests.support.router_server import RunningRouter, table

Start = Callable[..., RunningRouter]
MESSAGES = [{"role": "user", "content": "hello"}]
CHEAP_ONLY = "cheap-only-key-0123456789abcdef"
EVERYTHING = "everything-key-0123456789abcdef"


@pytest.fixture
def router(fake_ollama: FakeOllama, fake_openai: FakeOpenAI, start_router: Start) -> RunningRouter:
    def digest(key: str) -> str:
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()

    return start_router(
        table(
            upstreams={
                "cheap": {"type": "ollama", "base_url": fake_ollama.base_url},
                "pricey": {"type": "openai", "base_url": fake_openai.base_url},
            },
            routes=[
                {
                    "path": "/chat/cheap",
                    "model": "qwen3:32b",
                    "upstream": "cheap",
                    "fallbacks": ["/chat/pricey"],
                },
                {"path": "/chat/pricey", "model": "smollm2", "upstream": "pricey"},
            ],
            defaults={"max_retries": 0},
            auth={
                "api_keys": [
                    {"name": "cheap-only", "key": digest(CHEAP_ONLY), "routes": ["/chat/cheap"]},
                    {"name": "everything", "key": digest(EVERYTHING)},
                ]
            },
        )
    )


def chat(router: RunningRouter, path: str, key: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(router.url + path, json={"messages": MESSAGES}, headers=headers, timeout=10)


def test_a_key_limited_to_a_route_is_not_served_by_its_fallback(
    router: RunningRouter, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    assert chat(router, "/chat/pricey", CHEAP_ONLY).status_code == 403
    fake_ollama.set_behaviour("status", code=500)
    response = chat(router, "/chat/cheap", CHEAP_ONLY)
    assert response.status_code == 502, response.text
    assert "x-router-upstream" not in response.headers
    assert fake_openai.requests == []  # the fallback the key may not use was never asked


def test_a_key_that_may_use_the_fallback_is_served_by_it(
    router: RunningRouter, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    fake_ollama.set_behaviour("status", code=500)
    response = chat(router, "/chat/cheap", EVERYTHING)
    assert response.status_code == 200, response.text
    assert response.headers["x-router-route"] == "/chat/pricey"
    assert len(fake_openai.requests) == 1
