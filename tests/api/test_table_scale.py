"""A table's routes are served by one handler: the app is the same size for any table, and every route
still answers (through the app as well as the fast path) and is in the OpenAPI document."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from router.config import load_config_text
from router.runtime import Runtime
from tests.fakes import FakeOpenAI
from tests.support.router_server import RunningRouter, table

ORIGIN = "http://example.test"
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def routes(count: int) -> list[dict[str, Any]]:
    return [{"path": f"/chat/r{i}", "model": "smollm2", "upstream": "local"} for i in range(count)]


def test_the_app_is_the_same_size_for_any_table() -> None:
    sizes = []
    for count in (1, 1000):
        text = table({"local": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}}, routes(count))
        config = load_config_text(text, "t.yaml", env={})
        sizes.append(len(Runtime(config).prepare(config).app.routes))
    assert sizes[0] == sizes[1], sizes


def test_every_route_of_a_large_table_answers_through_the_app(
    fake_openai: FakeOpenAI, start_router: Callable[..., RunningRouter]
) -> None:
    count = 300
    upstreams = {"local": {"type": "openai", "base_url": fake_openai.base_url}}
    router = start_router(table(upstreams, routes(count), server={"cors_allowed_origins": [ORIGIN]}))
    with httpx.Client(base_url=router.url, timeout=10) as client:
        for i in (0, count // 2, count - 1):
            for path in (f"/chat/r{i}", f"/chat/r{i}/"):  # with a trailing slash the fast path declines
                answer = client.post(path, json=CHAT, headers={"Origin": ORIGIN})
                assert answer.status_code == 200, answer.text
                assert answer.headers["x-router-route"] == f"/chat/r{i}"
                assert answer.headers["access-control-allow-origin"] == ORIGIN
        unknown = client.post("/chat/nowhere", json=CHAT)
        assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"
        assert client.get("/chat/nowhere").status_code == 404
        wrong = client.get("/chat/r7")
        assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
        options = client.options("/chat/r7")
        assert options.status_code == 204 and options.headers["allow"] == "OPTIONS, POST"
        preflight = client.options(
            "/chat/r7", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        document = client.get("/schema/openapi.json").json()
    paths = document["paths"]
    assert [path for path in paths if path.startswith("/chat/")] == [r["path"] for r in routes(count)]
    operation = paths[f"/chat/r{count - 1}"]["post"]
    assert operation["operationId"] == f"chat_r{count - 1}" and operation["summary"] == "Chat with smollm2"
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.removeprefix("#/components/schemas/")]
    assert schema["required"] == ["messages"]
    assert "/v1/chat/completions" in paths and "/{route_path}" not in paths


def rich_table(count: int) -> str:
    """`count` routes written as people write large tables: defaults merged in with an anchor and a key
    overridden in each, replicas, aliases, fallbacks, health checks."""
    lines = [
        "version: 1",
        "upstreams:",
        "  a: {type: openai, base_url: 'http://127.0.0.1:9/v1'}",
        "  b: {type: ollama, base_url: 'http://127.0.0.1:9'}",
        "defaults: &route",
        "  timeout: 30",
        "  health_check: {interval: 30, timeout: 2}",
        "routes:",
    ]
    for i in range(count):
        lines += ["  - <<: *route", f"    path: /chat/r{i}", f"    model: m{i}", f"    aliases: [a{i}]"]
        lines.append("    upstreams: [{name: a, weight: 2}, {name: b}]" if i % 3 == 0 else "    upstream: a")
        lines.append("    health_check: {interval: 11}")
        if i:
            lines.append(f"    fallbacks: [/chat/r{i - 1}]")
    return "\n".join(lines) + "\n"


def load_and_build_seconds(count: int) -> float:
    """CPU seconds to validate a table of `count` routes and build everything serving it (best of two)."""
    text = rich_table(count)
    best = float("inf")
    for _ in range(2):
        started = time.process_time()
        config = load_config_text(text, "t.yaml", env={})
        Runtime(config).prepare(config)
        best = min(best, time.process_time() - started)
    return best


def test_loading_and_building_a_table_grows_linearly_with_its_routes() -> None:
    # Ten times the routes cost about ten times the CPU (less: fixed costs); anything quadratic costs a
    # hundred times. 20x leaves room for a loaded machine without letting a quadratic step through.
    small, large = load_and_build_seconds(300), load_and_build_seconds(3000)
    assert large < 20 * small, (small, large)
