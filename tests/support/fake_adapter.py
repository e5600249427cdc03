"""A scripted `UpstreamAdapter` and an in-process core around it, so dispatch, the table, the registry and
the streaming relay are tested in milliseconds, without sockets (as httpx's `MockTransport` does).

Each call to `complete` or `open_stream` takes the next step of the adapter's script (the last step
repeats once the script runs out):

- `Answer(text)`: a whole answer, or a stream of `chunks` (each `delay` seconds apart) that ends cleanly,
  raises `error` after its chunks, or `stall`s after them;
- `Fail(error)`: the call raises that `UpstreamError` before any byte;
- `Stall()`: the call never answers; it raises `UpstreamTimeout` after the route's `timeout`, as a real
  adapter does.

Every call is logged (`calls`, and a shared `log` of adapter names in call order), and every stream
remembers whether it was closed, so tests can assert that the upstream was let go.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from router.config import load_config_text
from router.events import EventBus
from router.registry import Registry, UpstreamState
from router.table import Route, RouteTable, build_table
from router.upstreams.base import AnswerStats, ChatCall, EventStream, Limits, UpstreamAdapter
from router.upstreams.errors import UpstreamError, UpstreamTimeout
from tests.support.router_server import table


@dataclass(frozen=True)
class Answer:
    """An answer: whole (`text`), or streamed as `chunks` with `delay` between them, ending as told."""

    text: str = "hello"
    chunks: Sequence[str] = ("hel", "lo")
    delay: float = 0.0
    error: Exception | None = None  # raised after the chunks (a failure mid-stream, or a bug)
    stall: bool = False  # after the chunks, say nothing more, ever
    prompt_tokens: int = 3
    completion_tokens: int = 2


@dataclass(frozen=True)
class Fail:
    """The call fails before any byte with `error`."""

    error: UpstreamError


@dataclass(frozen=True)
class Stall:
    """The call never answers: a model that does not start within the route's `timeout`."""


Step = Answer | Fail | Stall


def chunk(text: str) -> bytes:
    """An OpenAI chunk payload carrying `text`."""
    return msgspec.json.encode(
        {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}
    )


class FakeStream(EventStream):
    """A stream that plays one `Answer`; `closed` tells whether the relay let it go."""

    def __init__(self, answer: Answer, call: ChatCall) -> None:
        self.answer = answer
        self.stats = AnswerStats(text=[] if call.collect_text else None)
        self._pending = list(answer.chunks[1:])
        self.closed = False
        self.reads = 0
        if self.stats.text is not None and answer.chunks:
            self.stats.text.append(answer.chunks[0])

    async def read(self) -> list[bytes] | None:
        self.reads += 1
        if self._pending:
            if self.answer.delay:
                await asyncio.sleep(self.answer.delay)
            text = self._pending.pop(0)
            if self.stats.text is not None:
                self.stats.text.append(text)
            return [chunk(text)]
        if self.answer.error is not None:
            raise self.answer.error
        if self.answer.stall:
            await asyncio.Event().wait()
        self.stats.prompt_tokens = self.answer.prompt_tokens
        self.stats.completion_tokens = self.answer.completion_tokens
        return None

    def close(self) -> None:
        self.closed = True


class FakeAdapter(UpstreamAdapter):
    """An upstream that follows a script of steps, one per call."""

    def __init__(self, name: str, script: Sequence[Step], log: list[str] | None = None) -> None:
        self.name = name
        self.script = list(script) or [Answer()]
        self.calls: list[ChatCall] = []
        self.streams: list[FakeStream] = []
        self.log = log if log is not None else []
        self._called = asyncio.Event()

    async def until_called(self, count: int = 1) -> None:
        """Wait until the adapter has been called `count` times."""
        while len(self.calls) < count:
            self._called.clear()
            await self._called.wait()

    def _next(self, call: ChatCall) -> Step:
        self.calls.append(call)
        self.log.append(self.name)
        self._called.set()
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    async def _before_first_byte(self, step: Step, limits: Limits) -> Answer:
        if isinstance(step, Fail):
            raise step.error
        if isinstance(step, Stall):
            await asyncio.sleep(limits.timeout)
            raise UpstreamTimeout(f"fake upstream {self.name} did not answer within the route's timeout")
        return step

    async def complete(self, call: ChatCall, limits: Limits) -> tuple[bytes, AnswerStats]:
        answer = await self._before_first_byte(self._next(call), limits)
        body = {
            "object": "chat.completion",
            "model": call.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text}}],
        }
        stats = AnswerStats(answer.prompt_tokens, answer.completion_tokens)
        if call.collect_text:
            stats.text = [answer.text]
        return msgspec.json.encode(body), stats

    async def open_stream(self, call: ChatCall, limits: Limits) -> tuple[EventStream, list[bytes]]:
        answer = await self._before_first_byte(self._next(call), limits)
        stream = FakeStream(answer, call)
        self.streams.append(stream)
        return stream, [chunk(answer.chunks[0])] if answer.chunks else []

    async def probe(
        self, model: str | None, endpoint: str | None, timeout: float, max_age: float = 0.0
    ) -> None:
        return None

    async def close(self) -> None:
        return None


@dataclass
class Core:
    """A route table built from a config as the router builds it, its upstreams played by fakes."""

    table: RouteTable
    registry: Registry
    adapters: dict[str, FakeAdapter]
    log: list[str] = field(default_factory=list)

    def route(self, path: str) -> Route:
        return next(route for route in self.table.routes if route.path == path)

    def upstream(self, name: str) -> UpstreamState:
        for state in self.table.upstreams():
            if state.name == name:
                return state
        raise KeyError(name)

    def assert_idle(self) -> None:
        """Nothing is held any more: in-flight counts, limiter slots and half-open trials are all back."""
        for route in self.table.routes:
            for replica in route.replicas:
                assert replica.in_flight == 0, f"{route.path}/{replica.name} still counts a request"
        for state in self.table.upstreams():
            assert state.in_flight == 0, f"upstream {state.name} still counts a request"
            assert state.limiter.in_flight == 0, f"upstream {state.name} still holds a concurrency slot"
            assert state.breaker.snapshot().trials_in_flight == 0, f"{state.name} holds a trial permit"


async def build_core(
    upstreams: dict[str, Sequence[Step]],
    routes: list[dict[str, Any]],
    defaults: dict[str, Any] | None = None,
    upstream_settings: dict[str, dict[str, Any]] | None = None,
    **top: Any,
) -> Core:
    """The core for a table whose upstreams (all `openai`, at unroutable addresses) follow `upstreams`'
    scripts. Call inside the event loop."""
    settings = upstream_settings or {}
    config_upstreams = {
        name: {"type": "openai", "base_url": f"http://192.0.2.{i + 1}/v1", **settings.get(name, {})}
        for i, name in enumerate(upstreams)
    }
    config = load_config_text(table(config_upstreams, routes, defaults, **top), "core-test.yaml", env={})
    registry = Registry(EventBus())
    plan = registry.plan()
    built = build_table(config, plan)
    log: list[str] = []
    adapters: dict[str, FakeAdapter] = {}
    for state in built.upstreams():
        # Each fake upstream has an address of its own, so a pool of its own: the fake goes in where
        # `Pool.open` would have put the real adapter (no real pool is ever opened).
        adapters[state.name] = FakeAdapter(state.name, upstreams[state.name], log)
        state.pool._adapter = adapters[state.name]
    registry.commit(plan)
    return Core(built, registry, adapters, log)
