"""`max_stream_duration`: a stream kept alive for ever by an upstream that trickles ends at the bound."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from tests.fakes import FakeOllama, FakeUpstream
from tests.support.router_server import RunningRouter, table

STREAM = {"messages": [{"role": "user", "content": "hello"}], "stream": True}
LIMIT = 0.6


@pytest.fixture(params=["ollama", "openai"])
def fake(request: pytest.FixtureRequest) -> FakeUpstream:
    return request.getfixturevalue(f"fake_{request.param}")  # type: ignore[no-any-return]


def router_for(
    fake: FakeUpstream, start_router: Callable[..., RunningRouter], **policy: object
) -> RunningRouter:
    kind = "ollama" if isinstance(fake, FakeOllama) else "openai"
    model = "qwen3:32b" if kind == "ollama" else "smollm2"
    route = {"path": "/chat/m", "model": model, "upstream": "up", "max_stream_duration": LIMIT, **policy}
    return start_router(table({"up": {"type": kind, "base_url": fake.base_url}}, [route]))


def stream_events(router: RunningRouter) -> tuple[list[str], float]:
    started = time.monotonic()
    with httpx.stream("POST", router.url + "/chat/m", json=STREAM, timeout=10) as response:
        assert response.status_code == 200
        events = [line for line in response.iter_lines() if line]
    return events, time.monotonic() - started


def ended_too_long(events: list[str]) -> None:
    assert "data: [DONE]" not in events
    last = json.loads(events[-1].removeprefix("data: "))
    assert last["error"]["code"] == "stream_too_long"
    assert last["error"]["type"] == "timeout"
    assert "max_stream_duration" in last["error"]["message"]


def test_a_trickling_stream_ends_at_the_bound_and_the_upstream_is_closed(
    fake: FakeUpstream, start_router: Callable[..., RunningRouter]
) -> None:
    fake.reply_tokens = 1000
    fake.chunk_delay = 0.05  # always well inside the stall timeout: only the duration bound can end it
    router = router_for(fake, start_router, stall_timeout=1, max_tokens=None)
    events, took = stream_events(router)
    ended_too_long(events)
    assert LIMIT <= took < LIMIT + 1.5
    assert len(events) > 3  # it did stream until then
    fake.wait_for(lambda: fake.disconnects == 1, timeout=3)
    assert fake.completed_streams == 0
    status = httpx.get(router.url + "/status", timeout=5).json()
    replica = status["routes"][0]["replicas"][0]
    assert replica["breaker"]["consecutive_failures"] == 0  # a long answer is not a broken upstream
    assert replica["in_flight"] == 0


def test_a_silent_stream_kept_open_by_heartbeats_ends_at_the_bound(
    fake: FakeUpstream, start_router: Callable[..., RunningRouter]
) -> None:
    fake.set_behaviour("stall_mid_stream", after=1, seconds=30)
    router = router_for(fake, start_router, stall_timeout=20, heartbeat_interval=0.1)
    events, took = stream_events(router)
    ended_too_long(events)
    assert events.count(": keepalive") >= 2
    assert LIMIT <= took < LIMIT + 1.5
    fake.wait_for(lambda: fake.disconnects == 1, timeout=3)


def test_a_stream_within_the_bound_is_untouched(
    fake: FakeUpstream, start_router: Callable[..., RunningRouter]
) -> None:
    fake.reply_tokens = 5
    fake.chunk_delay = 0.05
    events, _ = stream_events(router_for(fake, start_router))
    assert events[-1] == "data: [DONE]"
