"""Per-upstream max_concurrency with a bounded queue: beyond it 429 + Retry-After, never unbounded buffering.

The fake records its own peak of simultaneous requests, so the limit is checked where it matters: at the
model server.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

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


def test_queue_full_is_429_and_the_limit_holds(fake: FakeUpstream, start_router: Start) -> None:
    router = start_router(
        one_route(
            fake,
            max_concurrency=2,
            max_queue=1,
            queue_timeout=5,
            breaker={"failure_threshold": 1, "open_seconds": 30},
        )
    )
    fake.set_behaviour("slow_first_token", seconds=0.5)
    with ThreadPoolExecutor(5) as pool:
        running = [pool.submit(post, router, "/chat/m") for _ in range(2)]
        wait_for(lambda: fake.in_flight == 2)
        queued = pool.submit(post, router, "/chat/m")
        wait_for(lambda: replica(router)["queued"] == 1)
        seen = replica(router)
        assert (seen["upstream_in_flight"], seen["in_flight"]) == (2, 3)
        with timer() as elapsed:
            rejected = [pool.submit(post, router, "/chat/m") for _ in range(2)]
            responses = [f.result() for f in rejected]
        assert elapsed() < 0.3, "a full queue answers at once"
        for response in responses:
            assert response.status_code == 429
            error = error_of(response)
            assert (error["type"], error["code"]) == ("rate_limit_error", "queue_full")
            assert int(response.headers["retry-after"]) >= 1
        assert [f.result().status_code for f in [*running, queued]] == [200, 200, 200]
    assert fake.max_in_flight == 2, "the upstream never saw more than max_concurrency"
    assert fake.chat_count == 3, "rejected requests never reached it"
    assert breaker_state(router) == "closed", "our own 429s are not upstream faults"


def test_queue_timeout_is_429(fake: FakeUpstream, start_router: Start) -> None:
    router = start_router(one_route(fake, max_concurrency=1, max_queue=2, queue_timeout=0.2))
    fake.set_behaviour("slow_first_token", seconds=0.5)
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(post, router, "/chat/m")
        wait_for(lambda: fake.in_flight == 1)
        with timer() as elapsed:
            waiting = [pool.submit(post, router, "/chat/m") for _ in range(2)]
            codes = [f.result().status_code for f in waiting]
        assert codes == [429, 429]
        assert 0.2 <= elapsed() < 0.2 + SLACK
        assert "waited too long" in error_of(waiting[0].result())["message"]
        assert first.result().status_code == 200
    assert fake.max_in_flight == 1


def test_a_stream_holds_its_slot_until_it_ends(fake: FakeUpstream, start_router: Start) -> None:
    router = start_router(one_route(fake, max_concurrency=1, max_queue=0))
    fake.chunk_delay = 0.06  # five chunks: the answer streams for ~0.25 s
    with ThreadPoolExecutor(1) as pool:
        long = pool.submit(stream, router, "/chat/m")
        wait_for(lambda: fake.in_flight == 1)
        assert post(router, "/chat/m").status_code == 429
        assert long.result().done
    wait_for(lambda: replica(router)["upstream_in_flight"] == 0)
    assert post(router, "/chat/m").status_code == 200
    assert fake.max_in_flight == 1


def test_queued_requests_run_in_order_within_the_limit(fake: FakeUpstream, start_router: Start) -> None:
    """A burst larger than the limit but within the queue is served completely, max_concurrency at a time."""
    router = start_router(one_route(fake, max_concurrency=2, max_queue=8, queue_timeout=5))
    fake.set_behaviour("slow_first_token", seconds=0.1)
    with ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(lambda _: post(router, "/chat/m").status_code, range(10)))
    assert codes == [200] * 10
    assert fake.max_in_flight == 2
