"""`router serve` and `router routes` as a user runs them: real processes, real sockets."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.fakes import FakeOpenAI
from tests.support.router_server import ServeProcess, table

HELLO = {"messages": [{"role": "user", "content": "hi"}]}
ROUTER = [sys.executable, "-m", "router"]


def test_serve_refuses_an_invalid_table_with_located_problems(tmp_path: Path) -> None:
    bad = tmp_path / "routes.yaml"
    bad.write_text(
        "version: 1\nupstreams:\n  a: {type: ollama, base_url: 'http://127.0.0.1:9'}\n"
        "routes:\n  - path: /chat/x\n    model: m\n    upstream: nowhere\n"
    )
    result = subprocess.run(
        [*ROUTER, "serve", "--config", str(bad)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert f"{bad}:7:15:" in result.stderr and "nowhere" in result.stderr
    assert "did not start" in result.stderr


def test_serve_with_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [*ROUTER, "serve", "--config", str(tmp_path / "none.yaml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2


def test_serve_answers_on_the_port_given_and_stops_on_sigterm(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    config = tmp_path / "routes.yaml"
    config.write_text(
        table(
            {"local": {"type": "openai", "base_url": fake_openai.base_url}},
            [{"path": "/chat/local", "model": "smollm2", "upstream": "local"}],
        )
    )
    with ServeProcess(str(config), capture=True) as served:
        answer = httpx.post(
            served.url + "/chat/local", json={"messages": [{"role": "user", "content": "hi"}]}
        )
        assert answer.status_code == 200
        assert answer.json()["choices"][0]["message"]["content"] == "tok0 tok1 tok2 tok3 tok4"
    # uvicorn re-raises the signal after a graceful shutdown, so the exit status names it.
    assert served.process.returncode in (0, -signal.SIGTERM)
    assert b"Application shutdown complete" in served.output()


def test_routes_prints_the_table(tmp_path: Path) -> None:
    config = tmp_path / "routes.yaml"
    config.write_text(
        table(
            {"a": {"type": "ollama", "base_url": "http://127.0.0.1:9"}},
            [{"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "a", "timeout": 7}],
        )
    )
    result = subprocess.run(
        [*ROUTER, "routes", "--config", str(config)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    header, row = result.stdout.splitlines()
    assert header.split()[:4] == ["PATH", "NAME", "MODEL", "UPSTREAMS"]
    assert row.split()[:5] == ["/chat/qwen3", "qwen3", "qwen3:32b", "a", "7s"]


def test_serve_with_workers_runs_several_processes_on_one_port(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    config = tmp_path / "routes.yaml"
    config.write_text(
        table(
            {"local": {"type": "openai", "base_url": fake_openai.base_url}},
            [{"path": "/chat/local", "model": "smollm2", "upstream": "local"}],
            sessions={"enabled": False},  # several processes cannot share in-memory sessions
        )
    )
    with ServeProcess(str(config), "--workers", "2") as served:
        pids: set[int] = set()
        deadline = time.monotonic() + 30
        while len(pids) < 2:
            assert time.monotonic() < deadline, f"only saw workers {pids}"
            with httpx.Client() as fresh:  # a new connection each time, so the kernel may pick either
                pids.add(fresh.get(served.url + "/readyz").json()["pid"])
                answer = fresh.post(
                    served.url + "/chat/local", json={"messages": [{"role": "user", "content": "x"}]}
                )
                assert answer.status_code == 200
        assert served.process.pid not in pids  # the parent supervises; the workers answer


def _running(pid: int) -> bool:
    """Whether `pid` is a live process (not gone, not a zombie waiting to be reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    config = tmp_path / "routes.yaml"
    config.write_text(
        table(
            {"local": {"type": "openai", "base_url": fake_openai.base_url}},
            [{"path": "/chat/local", "model": "smollm2", "upstream": "local"}],
            sessions={"enabled": False},
        )
    )
    with ServeProcess(str(config), "--workers", "2") as served:
        pids: set[int] = set()
        deadline = time.monotonic() + 30
        while len(pids) < 2:
            assert time.monotonic() < deadline, f"only saw workers {pids}"
            with httpx.Client() as fresh:
                pids.add(fresh.get(served.url + "/readyz").json()["pid"])
        served.process.send_signal(signal.SIGKILL)  # no chance to stop its workers itself
        served.process.wait(timeout=10)
        deadline = time.monotonic() + 20
        while any(_running(pid) for pid in pids):
            assert time.monotonic() < deadline, "workers still serve after their supervisor was killed"
            time.sleep(0.2)
        with pytest.raises(httpx.TransportError):
            httpx.get(served.url + "/healthz", timeout=2)
