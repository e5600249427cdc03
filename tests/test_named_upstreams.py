"""Two named upstreams on one server, over real sockets: each keeps its own breaker, limiter and policies.

They may share a connection pool (same type, address, key, headers and pool size), but never a breaker:
failures through one name must not open the other's, one name's threshold must not replace the other's,
and a reload that changes one name's policy must change only that name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes import FakeOpenAI
from tests.support.router_server import RunningRouter, table

HELLO = {"messages": [{"role": "user", "content": "hi"}]}


def write(path: Path, fake: FakeOpenAI, slow: dict[str, Any]) -> None:
    upstreams = {
        "brk": {
            "type": "openai",
            "base_url": fake.base_url,
            "circuit_breaker": {"failure_threshold": 3, "open_seconds": 2},
        },
        "slow": {"type": "openai", "base_url": fake.base_url, **slow},
    }
    routes = [
        {"path": "/chat/brk", "model": "smollm2", "upstream": "brk"},
        {"path": "/chat/slow", "model": "smollm2", "upstream": "slow"},
    ]
    path.write_text(table(upstreams, routes, defaults={"max_retries": 0}))


def breaker(router: RunningRouter, route: str) -> dict[str, Any]:
    status = httpx.get(router.url + "/status").json()
    entry = next(r for r in status["routes"] if r["path"] == route)
    return entry["replicas"][0]["breaker"]  # type: ignore[no-any-return]


@pytest.fixture
def router(tmp_path: Path, fake_openai: FakeOpenAI) -> Any:
    path = tmp_path / "routes.yaml"
    write(path, fake_openai, {"max_concurrency": 1})
    running = RunningRouter.from_file(str(path)).start()
    running.path = path  # type: ignore[attr-defined]
    yield running
    running.stop()


def test_each_name_opens_only_its_own_breaker_with_its_own_threshold(
    router: RunningRouter, fake_openai: FakeOpenAI, capfd: pytest.CaptureFixture[str]
) -> None:
    fake_openai.set_behaviour("status", code=500)
    for _ in range(3):
        assert httpx.post(router.url + "/chat/brk", json=HELLO).status_code == 502
    assert breaker(router, "/chat/brk")["state"] == "open", "brk's own threshold (3) applies"
    logged = capfd.readouterr().err
    assert logged.count("circuit breaker of upstream brk: closed -> open") == 1, logged  # logged once
    assert breaker(router, "/chat/slow")["state"] == "closed"
    fake_openai.set_behaviour("normal")
    assert httpx.post(router.url + "/chat/slow", json=HELLO).status_code == 200
    assert httpx.post(router.url + "/chat/brk", json=HELLO).status_code == 503


def test_a_reload_changing_one_name_leaves_the_other_alone(
    router: RunningRouter, fake_openai: FakeOpenAI
) -> None:
    fake_openai.set_behaviour("status", code=500)
    for _ in range(3):
        httpx.post(router.url + "/chat/brk", json=HELLO)
    assert breaker(router, "/chat/brk")["state"] == "open"
    write(router.path, fake_openai, {"max_concurrency": 2})  # type: ignore[attr-defined]
    answer = httpx.post(router.url + "/admin/reload")
    assert answer.status_code == 200 and answer.json()["changed"], answer.text
    assert "~ upstream slow: max_concurrency: 1 -> 2" in answer.json()["changes"]
    assert breaker(router, "/chat/brk")["state"] == "open", "brk's breaker survived the reload"
    assert breaker(router, "/chat/slow")["state"] == "closed", "slow never had brk's failures"
    fake_openai.set_behaviour("normal")
    assert httpx.post(router.url + "/chat/slow", json=HELLO).status_code == 200
    for _ in range(2):  # slow's own threshold is the default 5: two failures leave it closed
        fake_openai.set_behaviour("status", code=500)
        assert httpx.post(router.url + "/chat/slow", json=HELLO).status_code == 502
    assert breaker(router, "/chat/slow")["state"] == "closed"
