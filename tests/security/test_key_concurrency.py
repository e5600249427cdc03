"""`auth.api_keys[].max_concurrency`: one key's requests in progress are bounded; others are not affected."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from router.config import load_config_text
from router.security import KeyAccess, build_access
from tests.fakes import FakeOpenAI
from tests.fakes._base import wait_for
from tests.support.router_server import RunningRouter, table

Start = Callable[..., RunningRouter]
A = "key-a-0123456789abcdef"
B = "key-b-0123456789abcdef"
ENV = {"A_KEY": A, "B_KEY": B}
MESSAGES = [{"role": "user", "content": "hello"}]


def keyed(base_url: str, a_limit: int, b_limit: int | None = None) -> str:
    b: dict[str, Any] = {"name": "b", "key": "${B_KEY}"}
    if b_limit is not None:
        b["max_concurrency"] = b_limit
    return table(
        upstreams={"u": {"type": "openai", "base_url": base_url}},
        routes=[{"path": "/chat/m", "model": "smollm2", "upstream": "u"}],
        defaults={"stall_timeout": 30, "heartbeat_interval": 0.2},
        auth={"api_keys": [{"name": "a", "key": "${A_KEY}", "max_concurrency": a_limit}, b]},
    )


def ask(router: RunningRouter, key: str, **body: Any) -> httpx.Response:
    return httpx.post(
        router.url + "/chat/m",
        json={"messages": MESSAGES, **body},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def open_streams(stack: ExitStack, router: RunningRouter, key: str, n: int) -> None:
    """`n` streams of `key`, each started (its first event read) and left open until `stack` closes."""
    client = stack.enter_context(httpx.Client(timeout=10))
    readers: list[Iterator[str]] = []
    stack.callback(readers.clear)  # holds them: a dropped line iterator closes its stream
    for _ in range(n):
        response = stack.enter_context(
            client.stream(
                "POST",
                router.url + "/chat/m",
                json={"messages": MESSAGES, "stream": True},
                headers={"Authorization": f"Bearer {key}"},
            )
        )
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        readers.append(lines)


def served_again(router: RunningRouter, key: str) -> bool:
    return ask(router, key).status_code == 200


def test_a_key_at_its_limit_gets_429_while_other_keys_are_served(
    fake_openai: FakeOpenAI, start_router: Start
) -> None:
    router = start_router(keyed(fake_openai.base_url, a_limit=2), env=ENV)
    fake_openai.fail_n_times(2, "stall_mid_stream", after=1, seconds=30)  # two streams that stay open
    with ExitStack() as stack:
        open_streams(stack, router, A, 2)
        for body in ({}, {"stream": True}):
            refused = ask(router, A, **body)
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "1"
            error = refused.json()["error"]
            assert (error["type"], error["code"]) == ("rate_limit_error", "key_concurrency_limit")
            assert "'a'" in error["message"] and "max_concurrency" in error["message"]
        assert ask(router, B).status_code == 200
        assert ask(router, B, stream=True).status_code == 200
        assert fake_openai.chat_count == 4  # the refused requests never reached the upstream
    # the streams ended when their client left: a's requests are served again
    wait_for(lambda: served_again(router, A), timeout=5)
    assert ask(router, A, stream=True).status_code == 200


def test_every_ending_gives_the_place_back(fake_openai: FakeOpenAI, start_router: Start) -> None:
    router = start_router(keyed(fake_openai.base_url, a_limit=1), env=ENV)
    assert ask(router, A, messages="not a list").status_code == 400  # refused input
    assert ask(router, A).status_code == 200
    fake_openai.fail_n_times(3, "status", code=500)  # every retry fails: 502
    assert ask(router, A).status_code == 502
    assert ask(router, A).status_code == 200
    with httpx.stream(  # a stream read to its end
        "POST", router.url + "/chat/m", json={"messages": MESSAGES, "stream": True}, headers=_auth(A)
    ) as response:
        assert list(response.iter_lines())[-2:] == ["data: [DONE]", ""]
    assert ask(router, A).status_code == 200
    fake_openai.fail_n_times(1, "reset_mid_stream", after=1)  # a stream that fails midway
    with httpx.stream(
        "POST", router.url + "/chat/m", json={"messages": MESSAGES, "stream": True}, headers=_auth(A)
    ) as response:
        assert "upstream" in response.read().decode()
    assert ask(router, A).status_code == 200
    fake_openai.fail_n_times(1, "stall_mid_stream", after=1, seconds=30)  # a client that leaves midway
    with ExitStack() as stack:
        open_streams(stack, router, A, 1)
        assert ask(router, A).status_code == 429
    wait_for(lambda: served_again(router, A), timeout=5)


def test_a_reload_keeps_the_count_of_requests_in_progress(
    fake_openai: FakeOpenAI, start_router: Start
) -> None:
    router = start_router(keyed(fake_openai.base_url, a_limit=1), env=ENV)
    fake_openai.fail_n_times(1, "stall_mid_stream", after=1, seconds=30)
    with ExitStack() as stack:
        open_streams(stack, router, A, 1)
        new = load_config_text(keyed(fake_openai.base_url, a_limit=1, b_limit=5), "reloaded.yaml", env=ENV)
        router.call(lambda: router.runtime.apply(new))
        assert router.runtime.served_config() is not None
        assert router.runtime.served_config().sha256 == new.sha256  # the new table is the one served
        assert ask(router, A).status_code == 429  # the stream from before the reload still counts
        assert ask(router, B).status_code == 200
    wait_for(lambda: served_again(router, A), timeout=5)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(("old_limit", "new_limit"), [(2, 2), (2, 5)])
def test_build_access_carries_the_count_of_a_key_over(old_limit: int, new_limit: int) -> None:
    url = "http://127.0.0.1:9/v1"
    old = build_access(load_config_text(keyed(url, a_limit=old_limit), "t.yaml", env=ENV))
    new = build_access(load_config_text(keyed(url, a_limit=new_limit), "t.yaml", env=ENV), old)
    assert isinstance(old, KeyAccess) and isinstance(new, KeyAccess)
    assert new.api_keys[0].load is old.api_keys[0].load is not None
    assert new.api_keys[1].load is None  # b has no limit: nothing is counted for it
    release = new.begin("a")
    assert release is not None and old.api_keys[0].load.count == 1
    release()
    assert old.api_keys[0].load.count == 0
