"""Editing routes.yaml: atomic hot reload, invalid files refused, state carried over, nothing dropped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.fakes import FakeOpenAI
from tests.support.router_server import RunningRouter, ServeProcess, table

HELLO = {"messages": [{"role": "user", "content": "hi"}]}


def write_table(path: Path, fake: FakeOpenAI, paths: list[str], **route: object) -> None:
    """Write a table atomically enough for the test: routes on the fake, one per path."""
    routes = [{"path": p, "model": "smollm2", "upstream": "local", **route} for p in paths]
    path.write_text(table({"local": {"type": "openai", "base_url": fake.base_url}}, routes))


def wait_status(router: RunningRouter, path: str, status: int, timeout: float = 2.0) -> float:
    """Seconds until POST `path` answers `status`."""
    started = time.monotonic()
    while True:
        if httpx.post(router.url + path, json=HELLO).status_code == status:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, f"{path} never answered {status}"
        time.sleep(0.01)


@pytest.fixture
def config_file(tmp_path: Path, fake_openai: FakeOpenAI) -> Path:
    path = tmp_path / "routes.yaml"
    write_table(path, fake_openai, ["/chat/a"])
    return path


@pytest.fixture
def router(config_file: Path) -> RunningRouter:
    running = RunningRouter.from_file(str(config_file)).start()
    yield running  # type: ignore[misc]
    running.stop()


def test_added_route_answers_within_a_second_and_removed_route_404s(
    router: RunningRouter, config_file: Path, fake_openai: FakeOpenAI
) -> None:
    write_table(config_file, fake_openai, ["/chat/a", "/chat/b"])
    assert wait_status(router, "/chat/b", 200) < 1.0
    write_table(config_file, fake_openai, ["/chat/b"])
    assert wait_status(router, "/chat/a", 404) < 1.0
    assert httpx.post(router.url + "/chat/b", json=HELLO).status_code == 200


def test_invalid_file_is_refused_and_reported_while_the_old_table_serves(
    router: RunningRouter, config_file: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    config_file.write_text(config_file.read_text().replace("upstream: local", "upstream: nowhere"))
    deadline = time.monotonic() + 2
    while httpx.get(router.url + "/status").json()["config"]["last_reload_ok"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    status = httpx.get(router.url + "/status").json()["config"]
    assert f"{config_file}:" in status["last_reload_error"] and "nowhere" in status["last_reload_error"]
    assert httpx.post(router.url + "/chat/a", json=HELLO).status_code == 200
    logged = capfd.readouterr().err
    assert logged.count(f"{config_file}:19:13: unknown upstream 'nowhere'") == 1, logged  # logged once


def test_admin_reload_reports_changes_and_problems(
    router: RunningRouter, config_file: Path, fake_openai: FakeOpenAI
) -> None:
    write_table(config_file, fake_openai, ["/chat/a"], timeout=9)
    answer = httpx.post(router.url + "/admin/reload")
    assert answer.status_code == 200
    # the watcher may have applied it first: then the admin call finds nothing new
    assert answer.json()["ok"] is True
    config_file.write_text("version: 2\n")
    refused = httpx.post(router.url + "/admin/reload")
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "invalid_config"
    assert refused.json()["problems"][0].startswith(f"{config_file}:1:")


def test_editor_style_rename_over_the_file_is_picked_up(
    router: RunningRouter, config_file: Path, fake_openai: FakeOpenAI
) -> None:
    staged = config_file.with_name(".routes.yaml.swp")
    write_table(staged, fake_openai, ["/chat/a", "/chat/renamed"])
    os.replace(staged, config_file)
    assert wait_status(router, "/chat/renamed", 200) < 1.0


def test_kubernetes_configmap_symlink_swap_is_picked_up(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """A ConfigMap volume: routes.yaml -> ..data/routes.yaml, and an update swaps the ..data symlink."""
    volume = tmp_path / "volume"
    first, second = volume / "..2026_11_22_01", volume / "..2026_11_22_02"
    first.mkdir(parents=True)
    second.mkdir()
    write_table(first / "routes.yaml", fake_openai, ["/chat/a"])
    write_table(second / "routes.yaml", fake_openai, ["/chat/a", "/chat/from-configmap"])
    (volume / "..data").symlink_to(first.name)
    (volume / "routes.yaml").symlink_to("..data/routes.yaml")
    with RunningRouter.from_file(str(volume / "routes.yaml")) as router:
        assert httpx.post(router.url + "/chat/from-configmap", json=HELLO).status_code == 404
        (volume / "..data_tmp").symlink_to(second.name)
        os.replace(volume / "..data_tmp", volume / "..data")  # the kubelet's atomic swap
        assert wait_status(router, "/chat/from-configmap", 200) < 1.0


def test_unchanged_upstreams_keep_pool_breaker_and_health_across_reloads(
    router: RunningRouter, config_file: Path, fake_openai: FakeOpenAI
) -> None:
    def live_state() -> tuple[object, object]:
        upstream = router.runtime.current.table.routes[0].replicas[0].upstream  # type: ignore[union-attr]
        return upstream.adapter, upstream.breaker

    before = router.sync(live_state)
    write_table(config_file, fake_openai, ["/chat/a", "/chat/b"])
    wait_status(router, "/chat/b", 200)
    assert router.sync(live_state) == before  # same objects: same pool, same breaker

    config_file.write_text(
        table(
            {"local": {"type": "openai", "base_url": fake_openai.base_url, "headers": {"X-Tenant": "t1"}}},
            [{"path": "/chat/a", "model": "smollm2", "upstream": "local"}],
        )
    )
    wait_status(router, "/chat/b", 404)
    adapter, _ = router.sync(live_state)
    assert adapter is not before[0]  # a changed upstream gets a new pool
    assert router.sync(lambda: before[0].session.closed)  # type: ignore[attr-defined]  # the old one closed


def test_a_stream_in_flight_finishes_on_the_table_it_started_with(
    router: RunningRouter, config_file: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply_tokens = 20
    fake_openai.chunk_delay = 0.05
    with httpx.stream("POST", router.url + "/chat/a", json={**HELLO, "stream": True}) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        write_table(config_file, fake_openai, ["/chat/other"])  # removes the route being streamed
        wait_status(router, "/chat/a", 404)
        rest = [line for line in lines if line]
    assert rest[-1] == "data: [DONE]"
    assert not any('"error"' in line for line in rest)


def test_zero_loss_under_load_while_the_file_is_rewritten(
    router: RunningRouter, config_file: Path, fake_openai: FakeOpenAI
) -> None:
    """Steady streaming and non-streaming load on /chat/a while 30 versions (valid and invalid) land."""
    fake_openai.reply_tokens = 8
    fake_openai.chunk_delay = 0.005
    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def client(stream: bool) -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                try:
                    if stream:
                        with http.stream("POST", router.url + "/chat/a", json={**HELLO, "stream": True}) as r:
                            lines = [x for x in r.iter_lines() if x]
                            ok = r.status_code == 200 and lines[-1] == "data: [DONE]"
                    else:
                        r = http.post(router.url + "/chat/a", json=HELLO)
                        ok = r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
                except httpx.HTTPError as error:
                    ok, r = False, error  # type: ignore[assignment]
                with lock:
                    outcomes["ok" if ok else f"failed: {r!r}"] += 1

    workers = [threading.Thread(target=client, args=(i % 2 == 0,)) for i in range(4)]
    for worker in workers:
        worker.start()
    try:
        for version in range(30):
            if version % 3 == 2:
                config_file.write_text("version: 1\nroutes: [")  # invalid: must never replace the table
            else:
                extra = [f"/chat/v{version}"] if version % 2 else []
                write_table(config_file, fake_openai, ["/chat/a", *extra], timeout=5 + version)
            time.sleep(0.05)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=15)
    failures = {k: v for k, v in outcomes.items() if k != "ok"}
    assert outcomes["ok"] > 50
    assert failures == {}
    # the last version written (29) was invalid: it is reported, and a valid version is served (bursts of
    # writes inside the debounce window coalesce, so which valid one is not fixed)
    deadline = time.monotonic() + 2
    while router.sync(router.runtime.reload_status)["last_reload_ok"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    served = router.sync(lambda: router.runtime.current.table.config.routes[0].policy.timeout)  # type: ignore[union-attr]
    assert int(served) - 5 in {v for v in range(30) if v % 3 != 2}
    assert httpx.post(router.url + "/chat/a", json=HELLO).status_code == 200


def test_sighup_reloads_a_served_file(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    config = tmp_path / "routes.yaml"
    write_table(config, fake_openai, ["/chat/a"])
    with ServeProcess(str(config), "--no-watch") as served:
        write_table(config, fake_openai, ["/chat/a", "/chat/hup"])
        time.sleep(0.3)
        assert (
            httpx.post(served.url + "/chat/hup", json=HELLO).status_code == 404
        )  # not watching: needs the signal
        served.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 2
        while httpx.post(served.url + "/chat/hup", json=HELLO).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)


def test_router_diff_prints_what_a_reload_would_change(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    write_table(old, fake_openai, ["/chat/a", "/chat/gone"])
    write_table(new, fake_openai, ["/chat/a", "/chat/added"], timeout=42)
    result = subprocess.run(
        [sys.executable, "-m", "router", "diff", str(old), str(new)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert "- route /chat/gone (smollm2)" in lines
    assert "+ route /chat/added (smollm2)" in lines
    assert "~ route /chat/a: policy.timeout: 5.0 -> 42.0" in lines
    secret_old, secret_new = tmp_path / "secret-old.yaml", tmp_path / "secret-new.yaml"
    for path, token in ((secret_old, "tok-old-123456"), (secret_new, "tok-new-654321")):
        path.write_text(
            table(
                {
                    "local": {
                        "type": "openai",
                        "base_url": fake_openai.base_url,
                        "headers": {"X-Api-Token": token},
                    }
                },
                [{"path": "/chat/a", "model": "smollm2", "upstream": "local"}],
            )
        )
    rotated = subprocess.run(
        [sys.executable, "-m", "router", "diff", str(secret_old), str(secret_new)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "X-Api-Token" in rotated.stdout
    assert "tok-old" not in rotated.stdout and "tok-new" not in rotated.stdout
    same = subprocess.run(
        [sys.executable, "-m", "router", "diff", str(old), str(old)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert same.stdout.strip() == "no change"


def test_a_refused_table_leaves_the_served_one_whole(
    router: RunningRouter, config_file: Path, fake_openai: FakeOpenAI
) -> None:
    """A table the router cannot serve (a route under /schema) is refused before anything served changes:
    the old route keeps answering through its pool, and restoring the original file is a no-op."""
    original = config_file.read_text()
    other = FakeOpenAI(["smollm2"]).__enter__()
    try:
        routes = [
            {"path": "/chat/a", "model": "smollm2", "upstream": "other"},  # the old pool is not used any more
            {"path": "/schema/x", "model": "smollm2", "upstream": "other"},
        ]
        config_file.write_text(table({"other": {"type": "openai", "base_url": other.base_url}}, routes))
        answer = httpx.post(router.url + "/admin/reload")
        assert answer.status_code == 422 and "/schema" in answer.text, answer.text
        assert httpx.post(router.url + "/chat/a", json=HELLO).status_code == 200
        assert fake_openai.chat_count >= 1 and other.chat_count == 0
        config_file.write_text(original)
        answer = httpx.post(router.url + "/admin/reload")
        assert answer.status_code == 200 and not answer.json()["changed"]
        assert httpx.post(router.url + "/chat/a", json=HELLO).status_code == 200
    finally:
        other.__exit__(None, None, None)
