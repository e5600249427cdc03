"""Chat requests take the fast path (no framework in between) and answer exactly as the app would."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.fakes import FakeOpenAI
from tests.support.router_server import RunningRouter, table, through_the_app

CASES = [
    ("/chat/local", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/chat/local", {"messages": "not a list"}),
    ("/chat/local", {"messages": [{"role": "user", "content": "x" * 5000}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "model": "local"}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "model": "nope"}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
]


def answers(router: RunningRouter) -> list[tuple[int, object]]:
    out = []
    for path, body in CASES:
        response = httpx.post(router.url + path, json=body)
        data = response.json()
        if response.status_code == 200:
            data = data["choices"][0]["message"]  # ids and timestamps differ between answers
        out.append((response.status_code, data))
    return out


@pytest.fixture
def make(fake_openai: FakeOpenAI, start_router: Callable[..., RunningRouter]) -> Callable[..., RunningRouter]:
    def build(**server: object) -> RunningRouter:
        return start_router(
            table(
                {"local": {"type": "openai", "base_url": fake_openai.base_url}},
                [{"path": "/chat/local", "model": "smollm2", "upstream": "local"}],
                server={"max_body_bytes": 4096, **server},
            )
        )

    return build


def test_fast_path_and_app_answer_alike(make: Callable[..., RunningRouter]) -> None:
    fast = make()
    framework = through_the_app(make())  # every request goes to the app
    assert fast.sync(lambda: fast.runtime.current.fast) is not None  # type: ignore[union-attr]
    assert framework.sync(lambda: framework.runtime.current.fast) is None  # type: ignore[union-attr]
    got = answers(fast)
    assert [status for status, _ in got] == [200, 400, 413, 200, 404, 400]
    assert got == answers(framework)


def test_requests_the_fast_path_declines_still_reach_the_app(make: Callable[..., RunningRouter]) -> None:
    router = make()
    assert httpx.get(router.url + "/chat/local").status_code == 405
    assert httpx.get(router.url + "/healthz").json() == {"status": "ok"}
    assert httpx.post(router.url + "/chat/absent", json={}).status_code == 404
