"""The circuit breaker per upstream, fed by real traffic: what counts, fail-fast, half-open trials.

closed -> open after `failure_threshold` consecutive upstream faults (refused, timeout, 5xx, reset,
garbage; never 4xx, never a client that hangs up); open answers 503 with Retry-After = time left without
touching the upstream; after `open_seconds` half_open lets `half_open_max_requests` through; a success
closes it, a failure re-opens it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.chaos import (
    SLACK,
    breaker_state,
    error_of,
    one_route,
    post,
    replica,
    stream,
    timer,
)
from tests.fakes import FakeUpstream, wait_for
from tests.support.router_server import RunningRouter

Start = Callable[..., RunningRouter]


NO_RETRY = {"max_retries": 0}  # one request = one upstream call, so the counts below are exact


def start(
    start_router: Start,
    fake: FakeUpstream,
    threshold: int,
    open_seconds: float,
    trials: int = 1,
    **defaults: object,
) -> RunningRouter:
    breaker = {
        "failure_threshold": threshold,
        "open_seconds": open_seconds,
        "half_open_max_requests": trials,
    }
    return start_router(one_route(fake, defaults={**NO_RETRY, **defaults}, breaker=breaker))


def test_opens_after_threshold_then_fails_fast_without_touching_upstream(
    fake: FakeUpstream, start_router: Start
) -> None:
    router = start(start_router, fake, threshold=3, open_seconds=5.0)
    fake.set_behaviour("status", code=500)
    for _ in range(3):
        assert post(router, "/chat/m").status_code == 502
    assert breaker_state(router) == "open"
    assert fake.chat_count == 3
    fake.reset()  # the upstream is fine again, but the breaker does not know yet
    for streamed in (False, True):
        with timer() as elapsed:
            response = post(router, "/chat/m", stream=streamed)
        assert response.status_code == 503
        assert elapsed() < SLACK
        error = error_of(response)
        assert error["code"] == "upstream_unavailable"
        assert "circuit breaker open" in error["message"]
        assert response.headers["retry-after"] in ("4", "5"), "Retry-After is the time left, rounded up"
    assert fake.chat_count == 0, "an open breaker does not touch the upstream"
    left = replica(router)["breaker"]["retry_after"]
    assert 3.5 < left <= 5.0


@pytest.mark.parametrize("kind", ["refused", "timeout", "5xx", "reset", "garbage"])
def test_upstream_faults_count(fake: FakeUpstream, start_router: Start, kind: str) -> None:
    router = start(start_router, fake, threshold=2, open_seconds=30.0, timeout=0.2)
    if kind == "refused":
        fake.go_down()
    elif kind == "timeout":
        fake.set_behaviour("slow_first_token", seconds=5.0)
    elif kind == "5xx":
        fake.set_behaviour("status", code=503)
    elif kind == "reset":
        fake.set_behaviour("reset_before_response")
    else:
        fake.set_behaviour("garbage")
    first = post(router, "/chat/m")
    assert first.status_code in (502, 503, 504)
    assert breaker_state(router) == "closed"
    post(router, "/chat/m")
    assert breaker_state(router) == "open"


@pytest.mark.parametrize("code", [400, 404, 429])
def test_client_errors_do_not_count(fake: FakeUpstream, start_router: Start, code: int) -> None:
    router = start(start_router, fake, threshold=1, open_seconds=30.0)
    fake.set_behaviour("status", code=code)
    for _ in range(3):
        assert post(router, "/chat/m").status_code == code
    assert fake.chat_count == 3
    assert breaker_state(router) == "closed"
    assert replica(router)["breaker"]["consecutive_failures"] == 0


def test_client_disconnects_do_not_count(fake: FakeUpstream, start_router: Start) -> None:
    router = start(start_router, fake, threshold=1, open_seconds=30.0)
    fake.set_behaviour("stall_mid_stream", after=2, seconds=10.0)
    for n in (1, 2):
        result = stream(router, "/chat/m", close_after=1)  # hang up while the model is still "thinking"
        assert result.status == 200
        fake.wait_for(lambda n=n: fake.disconnects == n)  # the router passed the hang-up on upstream
    wait_for(lambda: replica(router)["in_flight"] == 0)
    assert breaker_state(router) == "closed"
    fake.reset()
    assert post(router, "/chat/m").status_code == 200


def open_it(router: RunningRouter, fake: FakeUpstream, failures: int) -> float:
    """Fail `failures` requests so the breaker opens; returns when it opened (monotonic)."""
    fake.set_behaviour("status", code=500)
    for _ in range(failures):
        post(router, "/chat/m")
    opened = time.monotonic()
    assert breaker_state(router) == "open"
    fake.reset()
    return opened


def test_half_open_after_open_seconds_then_success_closes(fake: FakeUpstream, start_router: Start) -> None:
    router = start(start_router, fake, threshold=2, open_seconds=0.3)
    opened = open_it(router, fake, 2)
    assert post(router, "/chat/m").status_code == 503
    wait_for(lambda: breaker_state(router) == "half_open", timeout=0.3 + SLACK)
    assert time.monotonic() - opened >= 0.3 * 0.9
    assert fake.chat_count == 0, "nothing reached the upstream while open"
    assert post(router, "/chat/m").status_code == 200
    assert breaker_state(router) == "closed"
    assert post(router, "/chat/m").status_code == 200


def test_half_open_admits_only_max_trials(fake: FakeUpstream, start_router: Start) -> None:
    router = start(start_router, fake, threshold=1, open_seconds=0.3, trials=2)
    open_it(router, fake, 1)
    wait_for(lambda: breaker_state(router) == "half_open", timeout=0.3 + SLACK)
    fake.set_behaviour("slow_first_token", seconds=0.4)  # trials succeed, slowly
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(post, router, "/chat/m") for _ in range(2)]
        wait_for(lambda: fake.in_flight == 2)  # both trials are at the upstream
        with timer() as elapsed:
            rejected = [pool.submit(post, router, "/chat/m") for _ in range(2)]
            codes = sorted(f.result().status_code for f in rejected)
        assert codes == [503, 503]
        assert elapsed() < 0.3, "the extra requests were refused at once, not queued behind the trials"
        assert "half-open" in error_of(rejected[0].result())["message"]
        assert [f.result().status_code for f in futures] == [200, 200]
    assert fake.chat_count == 2
    assert breaker_state(router) == "closed"


def test_failed_trial_reopens(fake: FakeUpstream, start_router: Start) -> None:
    router = start(start_router, fake, threshold=1, open_seconds=0.3)
    open_it(router, fake, 1)
    wait_for(lambda: breaker_state(router) == "half_open", timeout=0.3 + SLACK)
    fake.set_behaviour("reset_before_response")
    assert post(router, "/chat/m").status_code == 502
    assert breaker_state(router) == "open"
    before = fake.chat_count
    response = post(router, "/chat/m")
    assert response.status_code == 503
    assert fake.chat_count == before
    assert int(response.headers["retry-after"]) >= 1
