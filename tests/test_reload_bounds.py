"""The reloader never blocks the event loop: big tables, FIFOs and hung reads leave traffic flowing."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import router.reload as reload_module
from router.config import RouterConfig, load_config_text
from router.reload import Reloader, ReloadResult
from tests.fakes import FakeOpenAI
from tests.support.router_server import RunningRouter, ServeProcess, table

HELLO = {"messages": [{"role": "user", "content": "hi"}]}


def big_table(routes: int, timeout: int) -> str:
    upstreams = {"u": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}}
    entries = [{"path": f"/chat/r{i}", "model": f"m{i}", "upstream": "u"} for i in range(routes)]
    return table(upstreams, entries, defaults={"timeout": timeout})


def test_healthz_answers_while_a_1000_route_table_reloads(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(big_table(1000, 5))
    with ServeProcess(str(path), "--no-watch") as served, httpx.Client() as client:
        path.write_text(big_table(1000, 6))
        outcome: dict[str, Any] = {}

        def reload() -> None:
            started = time.perf_counter()
            outcome["answer"] = httpx.post(served.url + "/admin/reload", timeout=60)
            outcome["seconds"] = time.perf_counter() - started

        reloading = threading.Thread(target=reload)
        reloading.start()
        latencies = []
        while reloading.is_alive():
            started = time.perf_counter()
            assert client.get(served.url + "/healthz").status_code == 200
            latencies.append(time.perf_counter() - started)
        reloading.join()
    assert outcome["answer"].status_code == 200 and outcome["answer"].json()["changed"]
    latencies.sort()
    # Blocking the loop leaves one /healthz waiting for the whole build; off the loop none waits long (a
    # full garbage collection, which stops every thread, is the longest pause left).
    assert latencies[-1] < outcome["seconds"] / 2, (latencies[-5:], outcome["seconds"])
    assert latencies[len(latencies) // 2] < 0.05, latencies


@pytest.fixture
def router(tmp_path: Path, fake_openai: FakeOpenAI) -> Any:
    path = tmp_path / "routes.yaml"
    routes = [{"path": "/chat/a", "model": "smollm2", "upstream": "local"}]
    path.write_text(table({"local": {"type": "openai", "base_url": fake_openai.base_url}}, routes))
    running = RunningRouter.from_file(str(path)).start()
    running.path = path  # type: ignore[attr-defined]
    yield running
    running.stop()


def test_a_fifo_as_the_table_is_refused_without_hanging(router: RunningRouter) -> None:
    path: Path = router.path  # type: ignore[attr-defined]
    original = path.read_text()
    path.unlink()
    os.mkfifo(path)
    started = time.perf_counter()
    answer = httpx.post(router.url + "/admin/reload", timeout=5)
    assert time.perf_counter() - started < 2
    assert answer.status_code == 422 and "not a regular file" in answer.text, answer.text
    assert httpx.post(router.url + "/chat/a", json=HELLO).status_code == 200
    path.unlink()
    path.write_text(original.replace("smollm2", "other"))
    answer = httpx.post(router.url + "/admin/reload", timeout=5)
    assert answer.status_code == 200 and answer.json()["changed"], answer.text


def test_a_too_large_table_is_refused(router: RunningRouter) -> None:
    path: Path = router.path  # type: ignore[attr-defined]
    with path.open("ab") as file:
        file.truncate(reload_module.MAX_TABLE_BYTES + 1)
    answer = httpx.post(router.url + "/admin/reload", timeout=5)
    assert answer.status_code == 422 and "may be at most" in answer.text, answer.text
    assert httpx.post(router.url + "/chat/a", json=HELLO).status_code == 200


class Target:
    """A reload target that records what it was given."""

    def __init__(self) -> None:
        self.applied: list[RouterConfig] = []
        self.results: list[ReloadResult] = []

    def served_config(self) -> RouterConfig | None:
        return self.applied[-1] if self.applied else None

    async def apply(self, config: RouterConfig) -> None:
        self.applied.append(config)

    def reload_finished(self, trigger: str, path: Path, result: ReloadResult) -> None:
        self.results.append(result)


async def test_a_read_that_hangs_is_given_up_on_and_not_piled_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "routes.yaml"
    routes = [{"path": "/chat/a", "model": "m", "upstream": "u"}]
    path.write_text(table({"u": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}}, routes))
    release = threading.Event()
    calls: list[int] = []
    real_read = reload_module.read_table

    def stuck_read(*args: Any) -> bytes:
        calls.append(1)
        release.wait(10)
        return real_read(*args)

    monkeypatch.setattr(reload_module, "read_table", stuck_read)
    target = Target()
    reloader = Reloader(target, path, read_timeout=0.2)
    started = time.perf_counter()
    first = await reloader.reload("test")
    assert not first.ok and "took longer than 0.2s" in first.problems[0]
    second = await reloader.reload("test")
    assert not second.ok and "has not returned yet" in second.problems[0]
    assert time.perf_counter() - started < 1 and len(calls) == 1, "no second stuck thread"
    release.set()
    for _ in range(100):
        third = await reloader.reload("test")
        if third.ok:
            break
        await asyncio.sleep(0.01)
    assert third.ok and third.changed and len(target.applied) == 1
    assert load_config_text(path.read_text(), str(path), env={}).sha256 == target.applied[0].sha256
