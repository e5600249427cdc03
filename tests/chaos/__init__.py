"""Chaos suite: the real router on a loopback port against fake upstreams that misbehave on demand.

Every test drives real sockets end to end and asserts what a client sees (status, error body, headers,
stream events) and that nothing waits longer than the configured bounds. Intervals are tiny (tens of
milliseconds) and every wait is a poll with a deadline, never a blind sleep.

The helpers here keep the tests about behaviour: building a one-route table, calling a route whole or
streamed, reading `/status`, and listening to `/events` from a background thread.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from tests.fakes import FakeUpstream, wait_for
from tests.support.router_server import RunningRouter, table

T = TypeVar("T")

DIALECTS = ("ollama", "openai")
MESSAGES = [{"role": "user", "content": "hello there"}]
SLACK = 0.5  # seconds allowed beyond a configured bound for scheduling on a busy test machine

FAST_HEALTH: dict[str, Any] = {
    "enabled": True,
    "interval": 0.1,
    "timeout": 0.5,
    "failure_threshold": 2,
    "recovery_threshold": 2,
    "recovery_interval": 0.05,
    "jitter": 0.1,
}
"""Health checks at test speed: a route turns unhealthy or healthy again within a few hundred ms."""

NO_BREAKER: dict[str, Any] = {"failure_threshold": 1000, "open_seconds": 30}
"""For tests about one failure's outcome: the breaker must not turn later requests into fast 503s."""


def router_starter() -> Iterator[Callable[..., RunningRouter]]:
    """Body of each chaos module's `start_router` fixture: like tests/conftest.py's, but quicker to end.

    Stopping uvicorn costs ~0.2 s of fixed sleeps, paid by every one of this suite's 140-odd tests. So
    at teardown the router's probe loops are stopped at once (nothing of the finished test may still
    talk to the next test's fakes) and the rest of the shutdown runs in a background thread.
    """
    started: list[RunningRouter] = []

    def start(text: str, env: dict[str, str] | None = None) -> RunningRouter:
        router = RunningRouter.from_yaml(text, env).start()
        started.append(router)
        return router

    yield start
    for router in started:
        router.call(router.runtime.prober.stop)
        threading.Thread(target=router.stop, name=f"stop:{router.port}", daemon=True).start()


def model_of(fake: FakeUpstream) -> str:
    """The model a fake serves first (the route's model in single-route tables)."""
    return fake.models[0]


def upstream(fake: FakeUpstream, **extra: Any) -> dict[str, Any]:
    """An `upstreams:` entry pointing at `fake`."""
    return {"type": fake.kind, "base_url": fake.base_url, **extra}


def one_route(
    fake: FakeUpstream,
    *,
    path: str = "/chat/m",
    model: str | None = None,
    defaults: dict[str, Any] | None = None,
    breaker: dict[str, Any] | None = None,
    **upstream_extra: Any,
) -> str:
    """A table with one route on `fake` (as upstream `u`), test-speed defaults, health checks off."""
    if breaker is not None:
        upstream_extra["circuit_breaker"] = breaker
    return table(
        upstreams={"u": upstream(fake, **upstream_extra)},
        routes=[{"path": path, "model": model or model_of(fake), "upstream": "u"}],
        defaults=defaults,
    )


def body(stream: bool = False, **extra: Any) -> dict[str, Any]:
    """An OpenAI chat request body."""
    return {"messages": MESSAGES, "stream": stream, **extra}


# One client for the whole suite: building one costs tens of milliseconds (its TLS context), which would
# blur every timing assertion. httpx clients are safe to share between threads.
CLIENT = httpx.Client(timeout=30)


def post(router: RunningRouter, path: str, stream: bool = False, **extra: Any) -> httpx.Response:
    """A chat request, read whole (a streamed answer's events end up in `.text`)."""
    return CLIENT.post(router.url + path, json=body(stream, **extra))


@dataclass
class Stream:
    """A streamed answer as the client saw it."""

    status: int
    headers: httpx.Headers
    data: list[str] = field(default_factory=list)  # the `data:` payloads, in order
    comments: int = 0  # `: keepalive` lines
    elapsed: float = 0.0

    @property
    def done(self) -> bool:
        """Whether the stream ended with `data: [DONE]` (a complete answer)."""
        return bool(self.data) and self.data[-1] == "[DONE]"

    @property
    def chunks(self) -> list[dict[str, Any]]:
        """The decoded payloads other than [DONE]."""
        return [json.loads(d) for d in self.data if d != "[DONE]"]

    @property
    def error(self) -> dict[str, Any] | None:
        """The final error event's `error` object, if the stream ended with one."""
        if not self.data or self.data[-1] == "[DONE]":
            return None
        last = json.loads(self.data[-1])
        return last.get("error") if isinstance(last, dict) else None

    def text(self) -> str:
        """The answer's content, joined from its deltas."""
        out = []
        for chunk in self.chunks:
            for choice in chunk.get("choices") or ():
                out.append((choice.get("delta") or {}).get("content") or "")
        return "".join(out)


def stream(router: RunningRouter, path: str, *, close_after: int | None = None, **extra: Any) -> Stream:
    """A streamed chat request read event by event; `close_after` n data events hangs up early."""
    started = time.monotonic()
    with CLIENT.stream("POST", router.url + path, json=body(True, **extra)) as response:
        result = Stream(response.status_code, response.headers)
        if response.status_code != 200:
            response.read()
            result.data.append(response.text)
        else:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    result.data.append(line[6:])
                    if close_after is not None and len(result.data) >= close_after:
                        break
                elif line.startswith(":"):
                    result.comments += 1
    result.elapsed = time.monotonic() - started
    return result


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The OpenAI error object of an error response (asserting the shape on the way)."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    payload = response.json()
    assert set(payload) == {"error"}, payload
    error = payload["error"]
    assert {"message", "type", "param", "code"} <= set(error), error
    return error  # type: ignore[no-any-return]


@contextmanager
def timer() -> Iterator[Callable[[], float]]:
    """`with timer() as elapsed: ...; elapsed()` -> seconds since the block started."""
    started = time.monotonic()
    end: list[float] = []
    yield lambda: (end[0] if end else time.monotonic()) - started
    end.append(time.monotonic())


def status(router: RunningRouter, path: str = "/status") -> dict[str, Any]:
    """The router's `/status` (or `/debug`) document."""
    response = CLIENT.get(router.url + path)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def replica(router: RunningRouter, route: str = "/chat/m", name: str | None = None) -> dict[str, Any]:
    """One replica's entry in `/status` (the first, unless `name` picks one)."""
    for entry in status(router)["routes"]:
        if entry["path"] == route:
            for item in entry["replicas"]:
                if name is None or item["upstream"] == name:
                    return item  # type: ignore[no-any-return]
    raise AssertionError(f"no replica {name or '(first)'} on route {route} in /status")


def health_state(router: RunningRouter, route: str = "/chat/m", name: str | None = None) -> str:
    """A replica's health state as /status reports it."""
    health = replica(router, route, name)["health"]
    assert health is not None, "health checks are off for this route"
    return health["state"]  # type: ignore[no-any-return]


def breaker_state(router: RunningRouter, route: str = "/chat/m", name: str | None = None) -> str:
    """A replica's upstream breaker state as /status reports it."""
    return replica(router, route, name)["breaker"]["state"]  # type: ignore[no-any-return]


def wait_health(router: RunningRouter, state: str, route: str = "/chat/m", timeout: float = 5.0) -> None:
    """Poll /status until the route's (first) replica reaches `state`."""
    wait_for(lambda: health_state(router, route) == state, timeout)


class LogCapture(logging.Handler):
    """Records of one logger, captured on that logger itself.

    pytest's caplog listens on the root logger, but Litestar's default logging config replaces the root
    logger's handlers whenever an app is built (router start-up, reloads), so caplog would miss them.
    """

    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.logger = logging.getLogger(name)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, contains: str = "") -> list[str]:
        """Formatted messages (that contain `contains`), oldest first."""
        return [m for m in (r.getMessage() for r in list(self.records)) if contains in m]

    def __enter__(self) -> LogCapture:
        self._level = self.logger.level
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self._level)


class EventListener:
    """Reads `/events` on a raw socket in a daemon thread; `events` is what arrived so far.

    A raw socket (rather than an HTTP client) because it can be closed from the test thread at any
    moment: the router's graceful shutdown waits for open streams, so the listener must hang up first.
    """

    def __init__(self, router: RunningRouter) -> None:
        self._sock = socket.create_connection(("127.0.0.1", router.port), timeout=5)
        self._sock.sendall(b"GET /events HTTP/1.1\r\nHost: router\r\nAccept: text/event-stream\r\n\r\n")
        self._lock = threading.Lock()
        self._events: list[tuple[str, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="events-listener", daemon=True)
        self._thread.start()

    @property
    def events(self) -> list[tuple[str, dict[str, Any]]]:
        """(event name, data) pairs received so far, oldest first."""
        with self._lock:
            return list(self._events)

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The data of every event named `kind` so far."""
        return [data for name, data in self.events if name == kind]

    def wait(self, predicate: Callable[[list[tuple[str, dict[str, Any]]]], T], timeout: float = 5.0) -> T:
        """Poll until `predicate(events)` is truthy and return its value."""
        return wait_for(lambda: predicate(self.events), timeout)

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(2)

    def __enter__(self) -> EventListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        self._sock.settimeout(0.05)
        raw = b""
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            raw += data
            raw = self._consume(raw)

    def _consume(self, raw: bytes) -> bytes:
        """Parse what is complete: the response head once, then chunked-encoded SSE events."""
        if raw.startswith(b"HTTP/"):
            head, sep, rest = raw.partition(b"\r\n\r\n")
            if not sep:
                return raw
            assert b" 200 " in head.split(b"\r\n", 1)[0], head
            assert b"chunked" in head.lower(), "expected a chunked event stream"
            raw = rest
        while True:
            size_line, sep, rest = raw.partition(b"\r\n")
            if not sep:
                return raw
            size = int(size_line, 16)
            if len(rest) < size + 2:
                return raw
            self._parse(rest[:size])
            raw = rest[size + 2 :]

    def _parse(self, chunk: bytes) -> None:
        for block in chunk.decode().split("\n\n"):
            name, data = "message", None
            for line in block.split("\n"):
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
            if data is not None:
                with self._lock:
                    self._events.append((name, data))
