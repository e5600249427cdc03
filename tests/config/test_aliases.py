"""Route `aliases:`: other model names that select a route, unique across the table.

Checked as a user meets them: `router validate` on a file (exit code, located problems), and a router
answering an alias on every door that selects a route by `model`.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from router.config import ConfigError, load_config
from tests.fakes import FakeOllama, FakeOpenAI
from tests.support.router_server import RunningRouter, table

HEAD = """\
version: 1
upstreams:
  ollama: {type: ollama, base_url: http://127.0.0.1:11434}
  local: {type: openai, base_url: http://127.0.0.1:18080/v1}
routes:
"""
ROUTER = [sys.executable, "-m", "router"]


def validate(tmp_path: Path, routes: str) -> subprocess.CompletedProcess[str]:
    file = tmp_path / "routes.yaml"
    file.write_text(HEAD + routes)
    return subprocess.run([*ROUTER, "validate", str(file)], capture_output=True, text=True, timeout=30)


def test_aliases_load_into_the_route(tmp_path: Path) -> None:
    file = tmp_path / "routes.yaml"
    file.write_text(
        HEAD
        + "  - {path: /chat/a, model: qwen3:32b, upstream: ollama, aliases: [claude-sonnet-4-5, gpt-4o]}\n"
        + "  - {path: /chat/b, model: smollm2, upstream: local}\n"
    )
    config = load_config(file, env={})
    assert config.routes[0].aliases == ("claude-sonnet-4-5", "gpt-4o")
    assert config.routes[1].aliases == ()
    result = subprocess.run([*ROUTER, "validate", str(file)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_an_alias_equal_to_its_own_route_s_model_or_name_is_harmless(tmp_path: Path) -> None:
    result = validate(
        tmp_path, "  - {path: /chat/a, model: qwen3:32b, upstream: ollama, aliases: [qwen3:32b, a]}\n"
    )
    assert result.returncode == 0, result.stderr


BAD = [
    (
        "claimed by two routes",
        "  - {path: /chat/a, model: m1, upstream: ollama, aliases: [claude]}\n"
        "  - {path: /chat/b, model: m2, upstream: local, aliases: [x, claude]}\n",
        ":7:",
        "alias 'claude' is already claimed by route /chat/a at line 6",
    ),
    (
        "another route's name",
        "  - {path: /chat/a, model: m1, upstream: ollama}\n"
        "  - {path: /chat/b, model: m2, upstream: local, aliases: [a]}\n",
        ":7:",
        "alias 'a' is the name of route /chat/a at line 6",
    ),
    (
        "another route's model",
        "  - {path: /chat/a, model: m1, upstream: ollama, aliases: [m2]}\n"
        "  - {path: /chat/b, model: m2, upstream: local}\n",
        ":6:",
        "alias 'm2' is the model of route /chat/b at line 7",
    ),
    (
        "a space in it",
        "  - {path: /chat/a, model: m1, upstream: ollama, aliases: ['my model']}\n",
        ":6:",
        "an alias has no spaces",
    ),
    (
        "listed twice",
        "  - {path: /chat/a, model: m1, upstream: ollama, aliases: [x, x]}\n",
        ":6:",
        "duplicate",
    ),
]


@pytest.mark.parametrize(("routes", "where", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_validate_refuses_an_alias_that_would_select_two_routes(
    tmp_path: Path, routes: str, where: str, message: str
) -> None:
    result = validate(tmp_path, routes)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert where in output and message in output, output
    file = tmp_path / "routes.yaml"
    with pytest.raises(ConfigError):
        load_config(file, env={})


@pytest.fixture
def router(
    fake_ollama: FakeOllama, fake_openai: FakeOpenAI, start_router: Callable[..., RunningRouter]
) -> RunningRouter:
    return start_router(
        table(
            upstreams={
                "ollama": {"type": "ollama", "base_url": fake_ollama.base_url},
                "local": {"type": "openai", "base_url": fake_openai.base_url},
            },
            routes=[
                {"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama", "aliases": ["gpt-4o"]},
                {
                    "path": "/chat/local",
                    "model": "smollm2",
                    "upstream": "local",
                    "aliases": ["claude-haiku-4-5"],
                },
            ],
        )
    )


@pytest.mark.parametrize(("alias", "route"), [("gpt-4o", "/chat/qwen3"), ("claude-haiku-4-5", "/chat/local")])
def test_an_alias_selects_its_route_on_every_door(
    router: RunningRouter, fake_ollama: FakeOllama, fake_openai: FakeOpenAI, alias: str, route: str
) -> None:
    client = openai.OpenAI(base_url=router.url + "/v1", api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model=alias, messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-router-route"] == route and raw.parse().choices[0].message.content
    messages = httpx.post(
        router.url + "/v1/messages",
        json={"model": alias, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert messages.status_code == 200 and messages.headers["x-router-route"] == route
    fake = fake_ollama if route == "/chat/qwen3" else fake_openai
    assert fake.last_request.json["model"] == ("qwen3:32b" if route == "/chat/qwen3" else "smollm2")


def test_an_unknown_name_is_still_not_found(router: RunningRouter) -> None:
    response = httpx.post(
        router.url + "/v1/chat/completions",
        json={"model": "gpt-5", "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status_code == 404
