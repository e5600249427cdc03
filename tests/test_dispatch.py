"""Dispatch in process, against scripted upstreams: retries, fallbacks, breaker permits, leases.

The socket tests (tests/chaos) show the same behaviour end to end; these pin down the rules themselves
(what is retried, how often, in which order fallbacks are tried, what is released) in milliseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import router.dispatch as dispatch_module
from router.dispatch import Lease, dispatch
from router.errors import RouterError, RouteUnavailable
from router.observability import RequestRecord
from router.protocol.openai_chat import parse_chat_request
from router.upstreams.base import AnswerStats, ChatCall, EventStream, Limits, UpstreamAdapter
from router.upstreams.errors import (
    BadUpstreamResponse,
    UpstreamReset,
    UpstreamStatus,
    UpstreamUnavailable,
)
from tests.support.fake_adapter import Answer, Core, Fail, Stall, Step, build_core

BODY = b'{"messages": [{"role": "user", "content": "hi"}]}'
STREAM_BODY = b'{"messages": [{"role": "user", "content": "hi"}], "stream": true}'


async def complete(adapter: UpstreamAdapter, call: ChatCall, limits: Limits) -> tuple[bytes, AnswerStats]:
    return await adapter.complete(call, limits)


async def open_stream(
    adapter: UpstreamAdapter, call: ChatCall, limits: Limits
) -> tuple[EventStream, list[bytes]]:
    return await adapter.open_stream(call, limits)


async def run(
    core: Core, path: str, *, allowed: frozenset[str] | None = None, body: bytes = BODY
) -> tuple[Any, Lease, RequestRecord]:
    request, raw = parse_chat_request(body)
    record = RequestRecord("rid")
    attempt = open_stream if request.stream else complete
    result, lease = await dispatch(
        core.route(path),
        request,
        raw,
        "rid",
        core.registry,
        attempt,
        record,
        allowed,  # type: ignore[arg-type]
    )
    return result, lease, record


async def fails(core: Core, path: str, *, allowed: frozenset[str] | None = None) -> tuple[RouterError, int]:
    """The error dispatch raises, and the retries it counted on the way."""
    request, raw = parse_chat_request(BODY)
    record = RequestRecord("rid")
    with pytest.raises(RouterError) as caught:
        await dispatch(core.route(path), request, raw, "rid", core.registry, complete, record, allowed)
    return caught.value, record.retries


def one_route(
    script: list[Step], max_retries: int = 2, fallbacks: list[str] | None = None, **policy: Any
) -> dict[str, Any]:
    route: dict[str, Any] = {"path": "/chat/a", "model": "m", "upstream": "a", "max_retries": max_retries}
    if fallbacks:
        route["fallbacks"] = fallbacks
    route.update(policy)
    return route


@pytest.fixture
def backoffs(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoff delays dispatch actually slept, in order."""
    slept: list[float] = []
    real = dispatch_module.backoff_delays

    def recording(*args: Any, **kwargs: Any) -> Iterator[float]:
        for delay in real(*args, **kwargs):
            slept.append(delay)
            yield delay

    monkeypatch.setattr(dispatch_module, "backoff_delays", recording)
    return slept


# ---- retries -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        UpstreamUnavailable("refused"),
        UpstreamReset("reset"),
        BadUpstreamResponse("html"),
        UpstreamStatus("boom", status=500),
    ],
)
async def test_retryable_failures_are_retried_with_one_backoff_per_retry(
    error: Exception, backoffs: list[float]
) -> None:
    core = await build_core({"a": [Fail(error), Fail(error), Answer()]}, [one_route([], max_retries=2)])
    (data, _), lease, record = await run(core, "/chat/a")
    lease.finish(None)
    assert b"hello" in data
    assert len(core.adapters["a"].calls) == 3
    assert record.retries == 2
    assert len(backoffs) == 2
    core.assert_idle()


async def test_retries_stop_at_max_retries_and_are_counted_on_failure(backoffs: list[float]) -> None:
    core = await build_core({"a": [Fail(UpstreamReset("reset"))]}, [one_route([], max_retries=3)])
    error, retries = await fails(core, "/chat/a")
    assert isinstance(error, UpstreamReset)
    assert len(core.adapters["a"].calls) == 4
    assert retries == 3 and len(backoffs) == 3
    core.assert_idle()


@pytest.mark.parametrize(
    "error",
    [
        UpstreamStatus("bad request", status=400),
        UpstreamStatus("slow down", status=429, retry_after=2),
        UpstreamStatus("no such model", status=404),
    ],
)
async def test_client_errors_are_never_retried_nor_failed_over(
    error: Exception, backoffs: list[float]
) -> None:
    core = await build_core(
        {"a": [Fail(error)], "b": [Answer()]},
        [one_route([], fallbacks=["/chat/b"]), {"path": "/chat/b", "model": "m", "upstream": "b"}],
    )
    raised, retries = await fails(core, "/chat/a")
    assert raised is error
    assert core.log == ["a"] and retries == 0 and backoffs == []
    assert core.upstream("a").breaker.snapshot().consecutive_failures == 0  # not the upstream's fault
    core.assert_idle()


async def test_a_timeout_is_not_retried_on_the_same_route_but_a_fallback_is_tried() -> None:
    core = await build_core(
        {"a": [Stall()], "b": [Answer(text="from b")]},
        [
            one_route([], max_retries=3, fallbacks=["/chat/b"], timeout=0.05),
            {"path": "/chat/b", "model": "m", "upstream": "b"},
        ],
    )
    (data, _), lease, record = await run(core, "/chat/a")
    lease.finish(None)
    assert core.log == ["a", "b"] and record.retries == 0
    assert b"from b" in data and lease.route.path == "/chat/b"
    core.assert_idle()


async def test_the_error_raised_is_the_one_that_happened_untouched() -> None:
    error = UpstreamStatus("upstream said no", status=503)
    core = await build_core({"a": [Fail(error)]}, [one_route([], max_retries=1)])
    raised, retries = await fails(core, "/chat/a")
    assert raised is error and retries == 1
    assert not hasattr(raised, "retries")  # dispatch counts on the record, never on the error
    assert raised.message == "upstream said no"


# ---- fallbacks -----------------------------------------------------------------------------------------


def chain() -> list[dict[str, Any]]:
    return [
        {
            "path": "/chat/a",
            "model": "m",
            "upstream": "a",
            "max_retries": 0,
            "fallbacks": ["/chat/b", "/chat/c"],
        },
        {"path": "/chat/b", "model": "m", "upstream": "b", "max_retries": 0},
        {"path": "/chat/c", "model": "m", "upstream": "c", "max_retries": 0},
    ]


async def test_fallbacks_are_tried_in_order() -> None:
    down = Fail(UpstreamUnavailable("refused"))
    core = await build_core({"a": [down], "b": [down], "c": [Answer(text="from c")]}, chain())
    (data, _), lease, _ = await run(core, "/chat/a")
    assert b"from c" in data
    lease.finish(None)
    assert core.log == ["a", "b", "c"]
    assert lease.route.path == "/chat/c" and lease.upstream_name == "c"
    core.assert_idle()


async def test_an_unavailable_fallback_is_skipped_without_a_call() -> None:
    down = Fail(UpstreamUnavailable("refused"))
    core = await build_core({"a": [down], "b": [Answer()], "c": [Answer(text="from c")]}, chain())
    breaker = core.upstream("b").breaker
    while breaker.is_available():  # trip it the way traffic does
        permit = breaker.try_acquire()
        assert permit is not None
        permit.failure()
    (_, _), lease, _ = await run(core, "/chat/a")
    lease.finish(None)
    assert core.log == ["a", "c"]
    core.assert_idle()


async def test_fallbacks_the_key_may_not_use_are_skipped() -> None:
    down = Fail(UpstreamUnavailable("refused"))
    core = await build_core(
        {"a": [down], "b": [Answer(text="from b")], "c": [Answer(text="from c")]}, chain()
    )
    (data, _), lease, _ = await run(core, "/chat/a", allowed=frozenset({"/chat/a", "/chat/c"}))
    lease.finish(None)
    assert core.log == ["a", "c"] and b"from c" in data
    core.assert_idle()


async def test_with_no_usable_fallback_the_route_s_own_error_is_raised() -> None:
    down = UpstreamUnavailable("a refused")
    core = await build_core({"a": [Fail(down)], "b": [Answer()], "c": [Answer()]}, chain())
    raised, _ = await fails(core, "/chat/a", allowed=frozenset({"/chat/a"}))
    assert raised is down
    assert core.log == ["a"]
    core.assert_idle()


# ---- breaker -------------------------------------------------------------------------------------------


async def test_the_breaker_opens_after_its_threshold_then_admits_one_half_open_trial() -> None:
    core = await build_core(
        {"a": [Fail(UpstreamStatus("boom", status=500))] * 3 + [Answer()]},
        [one_route([], max_retries=0)],
        upstream_settings={"a": {"circuit_breaker": {"failure_threshold": 3, "open_seconds": 0.05}}},
    )
    for _ in range(3):
        await fails(core, "/chat/a")
    assert str(core.upstream("a").breaker.state) == "open"
    raised, _ = await fails(core, "/chat/a")
    assert isinstance(raised, RouteUnavailable) and "circuit breaker open" in raised.message
    assert len(core.adapters["a"].calls) == 3  # refused at once: the upstream was not asked
    await asyncio.sleep(0.06)
    # half-open: the trial is admitted; while it runs, nobody else is
    request, raw = parse_chat_request(BODY)
    record = RequestRecord("rid")
    (_, _), lease = await dispatch(
        core.route("/chat/a"), request, raw, "rid", core.registry, complete, record
    )
    assert str(core.upstream("a").breaker.state) == "half_open"
    second, _ = await fails(core, "/chat/a")
    assert isinstance(second, RouteUnavailable)
    lease.finish(None)
    assert str(core.upstream("a").breaker.state) == "closed"
    core.assert_idle()


async def test_a_failed_half_open_trial_opens_the_breaker_again() -> None:
    core = await build_core(
        {"a": [Fail(UpstreamStatus("boom", status=500))]},
        [one_route([], max_retries=0)],
        upstream_settings={"a": {"circuit_breaker": {"failure_threshold": 1, "open_seconds": 0.05}}},
    )
    await fails(core, "/chat/a")
    await asyncio.sleep(0.06)
    await fails(core, "/chat/a")  # the trial, failing
    assert str(core.upstream("a").breaker.state) == "open"
    assert len(core.adapters["a"].calls) == 2
    core.assert_idle()


# ---- what an attempt holds is always given back --------------------------------------------------------


async def test_a_cancelled_attempt_releases_its_lease() -> None:
    core = await build_core({"a": [Stall()]}, [one_route([], timeout=30)])
    task = asyncio.ensure_future(run(core, "/chat/a"))
    await core.adapters["a"].until_called()
    assert core.upstream("a").limiter.in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    core.assert_idle()
    assert core.upstream("a").breaker.snapshot().consecutive_failures == 0  # a client's doing


async def test_a_full_queue_is_429_and_holds_nothing() -> None:
    core = await build_core(
        {"a": [Stall()]},
        [one_route([], timeout=30)],
        upstream_settings={"a": {"max_concurrency": 1, "max_queue": 0}},
    )
    holder = asyncio.ensure_future(run(core, "/chat/a"))
    await core.adapters["a"].until_called()
    raised, _ = await fails(core, "/chat/a")
    assert raised.status == 429 and raised.code == "queue_full"
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder
    core.assert_idle()


async def test_a_streamed_answer_holds_its_lease_until_it_is_finished() -> None:
    core = await build_core({"a": [Answer(chunks=("a", "b", "c"))]}, [one_route([])])
    (stream, first), lease, _ = await run(core, "/chat/a", body=STREAM_BODY)
    assert first and core.upstream("a").limiter.in_flight == 1
    while await stream.read() is not None:
        pass
    lease.finish(None)
    core.assert_idle()


# ---- barred replicas (a resumed stream's: router.resume) ---------------------------------------------


async def test_barred_replicas_are_never_picked_not_even_for_a_retry() -> None:
    core = await build_core(
        {"a": [Fail(UpstreamReset("reset"))], "b": [Answer(text="from b")]},
        [
            {
                "path": "/chat/a",
                "model": "m",
                "upstreams": [{"name": "a"}],
                "max_retries": 3,
                "fallbacks": ["/chat/b"],
            },
            {"path": "/chat/b", "model": "m", "upstream": "b"},
        ],
    )
    request, raw = parse_chat_request(BODY)
    record = RequestRecord("rid")
    (data, _), lease = await dispatch(
        core.route("/chat/a"),
        request,
        raw,
        "rid",
        core.registry,
        complete,
        record,
        never=lambda route: {"a"} if route.path == "/chat/a" else (),
    )
    lease.finish(None)
    assert b"from b" in data and core.log == ["b"] and record.retries == 0
    core.assert_idle()
