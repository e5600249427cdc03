"""The router itself, started as a real HTTP server on a loopback port, in a background thread.

Tests talk to it over real sockets (httpx, the openai SDK, a browser) exactly as users do; the thread
runs uvicorn with the production settings (uvloop, httptools) on its own event loop. `call` runs a
coroutine on that loop, for tests that must inspect or change live state (the route table, breakers).
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Self, TypeVar

import uvicorn

from router.config import RouterConfig, load_config_text
from router.runtime import Runtime
from router.server import uvicorn_config

T = TypeVar("T")


class RunningRouter:
    """A router serving `config` on 127.0.0.1 at a free port until `stop()`."""

    def __init__(self, config: RouterConfig, config_path: str | None = None) -> None:
        self.config = config
        self.runtime = Runtime(config, config_path)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(
            uvicorn_config(self.runtime, "127.0.0.1", self.port, log_level="warning")
        )
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name=f"router:{self.port}", daemon=True)

    @classmethod
    def from_yaml(cls, text: str, env: dict[str, str] | None = None) -> RunningRouter:
        """Build from routing-table text (validated exactly as `router serve` would)."""
        return cls(load_config_text(text, "test-routes.yaml", env=env or {}))

    @classmethod
    def from_file(cls, path: str) -> RunningRouter:
        """Serve a table file and reload it when it changes, exactly as `router serve --config` does."""
        from router.config import load_config

        return cls(load_config(path), path)

    def _run(self) -> None:
        import uvloop

        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        loop.run_until_complete(self._server.serve(sockets=[self._socket]))
        loop.close()

    def start(self, timeout: float = 10.0) -> Self:
        """Start serving; returns once the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the router did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Graceful shutdown, as on SIGTERM."""
        self._server.should_exit = True
        self._thread.join(timeout=15)

    def call(self, fn: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
        """Run a coroutine function on the router's own loop and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(_wrap(fn), self._loop).result(timeout)

    def sync(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run a plain function on the router's loop (live state is not thread-safe)."""

        async def run() -> T:
            return fn()

        return self.call(run, timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


async def _wrap(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


def table(
    upstreams: dict[str, dict[str, Any]],
    routes: list[dict[str, Any]],
    defaults: dict[str, Any] | None = None,
    **top: Any,
) -> str:
    """Routing-table YAML from plain data, with fast test-friendly defaults (health checks off)."""
    import yaml

    base_defaults: dict[str, Any] = {
        "timeout": 5,
        "connect_timeout": 1,
        "stall_timeout": 2,
        "max_retries": 2,
        "retry_backoff": 0.01,
        "retry_backoff_max": 0.05,
        "max_tokens": 2048,
        "health_check": {"enabled": False},
    }
    base_defaults.update(defaults or {})
    doc = {"version": 1, "upstreams": upstreams, "defaults": base_defaults, "routes": routes, **top}
    return yaml.safe_dump(doc, sort_keys=False)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServeProcess:
    """`router serve --config FILE --port P [args]` as a user starts it: a real process, up once /healthz
    answers. On exit it is stopped with SIGTERM; `output()` then holds what it wrote."""

    def __init__(self, config: str, *args: str, capture: bool = False) -> None:
        import subprocess
        import sys

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        sink = subprocess.PIPE if capture else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-m", "router", "serve", "--config", config, "--port", str(self.port), *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a stuck one is killed with its workers
        )

    def __enter__(self) -> Self:
        import httpx

        deadline = time.monotonic() + 60
        try:
            while True:
                assert self.process.poll() is None, "router serve exited before it answered"
                try:
                    httpx.get(self.url + "/healthz")
                    return self
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "router serve did not come up in 60 s"
                    time.sleep(0.05)
        except BaseException:
            self.__exit__()  # `with` does not call __exit__ when __enter__ fails: no process left behind
            raise

    def __exit__(self, *exc: Any) -> None:
        import signal
        import subprocess

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        try:  # whatever is left of its process group: the server if stuck, workers it did not stop
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)

    def output(self) -> bytes:
        """What the process wrote (with `capture=True`), once it has stopped."""
        assert self.process.stdout is not None
        return self.process.stdout.read()


def through_the_app(router: RunningRouter) -> RunningRouter:
    """Serve every request of the current table through the Litestar app, as if there were no fast path.

    Tests that the app and the fast path answer alike use it: the fast path serves every table now (CORS
    included), so the app's own handlers are reached only this way or by what the fast path declines.
    """
    from dataclasses import replace

    def swap() -> None:
        loaded = router.runtime.current
        assert loaded is not None
        router.runtime.current = replace(loaded, fast=None)

    router.sync(swap)
    return router
