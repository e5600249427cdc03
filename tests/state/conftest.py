"""A real `redis-server` (the Debian package) on a free loopback port, and tables that share state in it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.router_server import free_port, table


class RedisServer:
    """`redis-server` on 127.0.0.1, without persistence; `stop()` kills it, `start()` brings it back."""

    def __init__(self, password: str | None = None) -> None:
        self.password = password
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("no redis-server: apt-get install redis-server (deploy/local/apt-packages.txt)")
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + (["--requirepass", self.password] if self.password else []),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                        return self
            except OSError:
                pass
            assert self.process.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not answer in 10 s"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


APP_KEY = "app-key-0123456789"
LIMITED_KEY = "limited-key-0123456789"
OTHER_KEY = "other-key-0123456789"
LIMIT = 10


def shared_table(
    redis_url: str,
    upstreams: dict[str, Any],
    routes: list[dict[str, Any]],
    redis_timeout: float = 0.25,
    **top: Any,
) -> str:
    """A table on Redis with client keys `app` and `other` (unlimited) and `limited` (LIMIT a minute).

    `redis_timeout` is `state.timeout`: short where a test makes Redis slow or lost on purpose, longer where
    a test needs Redis to count as up even on a loaded machine (a slow call would fall back to local state).
    """
    return table(
        upstreams,
        routes,
        state={"backend": "redis", "url": redis_url, "timeout": redis_timeout, "ping_interval": 0.2},
        auth={
            "api_keys": [
                {"name": "app", "key": APP_KEY},
                {"name": "limited", "key": LIMITED_KEY, "rate_limit_per_minute": LIMIT},
                {"name": "other", "key": OTHER_KEY},
            ],
            "public_status": True,
        },
        **top,
    )
