"""Several processes on in-memory state: refused at start, with what would go wrong and the ways out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from router.config import load_config_text
from router.state import multi_process_refusal
from tests.support.router_server import free_port, table

UPSTREAMS = {"local": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}}
ROUTES = [{"path": "/chat/local", "model": "smollm2", "upstream": "local"}]
LIMITED = {"api_keys": [{"name": "apps", "key": "a-client-key-123", "rate_limit_per_minute": 5}]}


def serve(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router", "serve", "--config", str(path), "--port", str(free_port()), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_workers_with_in_memory_sessions_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(table(UPSTREAMS, ROUTES))
    done = serve(path, "--workers", "2")
    assert done.returncode == 1
    message = done.stderr
    assert "refusing to run 2 processes with state.backend: memory" in message
    assert "sessions are enabled" in message and "without the history" in message
    assert "backend: redis" in message and "sessions: {enabled: false}" in message


def test_server_workers_with_rate_limited_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(
        table(UPSTREAMS, ROUTES, server={"workers": 3}, sessions={"enabled": False}, auth=LIMITED)
    )
    done = serve(path)
    assert done.returncode == 1
    assert "key(s) apps have rate_limit_per_minute" in done.stderr
    assert "up to 3 times its limit" in done.stderr
    assert "sessions are enabled" not in done.stderr


def test_what_may_run_in_several_processes() -> None:
    def refusal(processes: int, **top: object) -> str | None:
        return multi_process_refusal(load_config_text(table(UPSTREAMS, ROUTES, **top), "t.yaml"), processes)

    assert refusal(1) is None  # one process: nothing to share
    assert refusal(2, sessions={"enabled": False}) is None
    assert refusal(2, sessions={"enabled": False}, auth=LIMITED) is not None
    assert refusal(2, state={"backend": "redis", "url": "redis://127.0.0.1:6379/0"}, auth=LIMITED) is None
