"""Replicas and fallback routes: weighted least-in-flight, failing over before the first byte only.

`upstreams: [{name: a, weight: 2}, {name: b}]` spreads one route over two servers; `fallbacks:` names
other routes to try when this one cannot serve. X-Router-Upstream and X-Router-Route say who answered.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.chaos import (
    FAST_HEALTH,
    SLACK,
    error_of,
    health_state,
    post,
    stream,
    timer,
    upstream,
    wait_health,
)
from tests.fakes import FakeOllama, FakeOpenAI, FakeUpstream, wait_for
from tests.support.router_server import RunningRouter, table

Start = Callable[..., RunningRouter]


@pytest.fixture(params=["ollama", "openai"])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    """Two servers of one dialect serving the same model."""
    cls: type[FakeUpstream] = FakeOllama if request.param == "ollama" else FakeOpenAI
    with cls(["m1:7b"]) as a, cls(["m1:7b"]) as b:
        yield a, b


def replicas(
    a: FakeUpstream,
    b: FakeUpstream,
    weights: tuple[int, int] = (1, 1),
    defaults: dict[str, Any] | None = None,
    **route: Any,
) -> str:
    """Route /chat/m over replicas a and b."""
    return table(
        upstreams={"a": upstream(a), "b": upstream(b)},
        routes=[
            {
                "path": "/chat/m",
                "model": "m1:7b",
                "upstreams": [{"name": "a", "weight": weights[0]}, {"name": "b", "weight": weights[1]}],
                **route,
            }
        ],
        defaults=defaults,
    )


def with_fallback(a: FakeUpstream, b: FakeUpstream, fallback_path: str = "/chat/other", **main: Any) -> str:
    """/chat/main on a, falling back to /chat/other on b."""
    return table(
        upstreams={"a": upstream(a), "b": upstream(b)},
        routes=[
            {"path": "/chat/main", "model": "m1:7b", "upstream": "a", "fallbacks": [fallback_path], **main},
            {"path": "/chat/other", "model": "m1:7b", "upstream": "b"},
        ],
    )


def test_weights_split_sequential_traffic(
    pair: tuple[FakeUpstream, FakeUpstream], start_router: Start
) -> None:
    a, b = pair
    router = start_router(replicas(a, b, weights=(2, 1)))
    served = Counter()
    for _ in range(6):
        response = post(router, "/chat/m")
        assert response.status_code == 200
        assert response.headers["x-router-route"] == "/chat/m"
        served[response.headers["x-router-upstream"]] += 1
    assert served == {"a": 4, "b": 2}
    assert (a.chat_count, b.chat_count) == (4, 2)


def test_least_in_flight_avoids_the_busy_replica(
    pair: tuple[FakeUpstream, FakeUpstream], start_router: Start
) -> None:
    a, b = pair
    router = start_router(replicas(a, b))
    a.set_behaviour("slow_first_token", seconds=0.4)
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(post, router, "/chat/m")  # idle tie: the first replica (a) gets it
        wait_for(lambda: a.in_flight == 1)
        for _ in range(3):
            response = post(router, "/chat/m")
            assert response.headers["x-router-upstream"] == "b"
        assert held.result().headers["x-router-upstream"] == "a"
    assert (a.chat_count, b.chat_count) == (1, 3)


@pytest.mark.parametrize("streamed", [False, True])
def test_fails_over_to_another_replica(
    pair: tuple[FakeUpstream, FakeUpstream], start_router: Start, streamed: bool
) -> None:
    a, b = pair
    a.go_down()
    router = start_router(replicas(a, b))
    for _ in range(4):
        with timer() as elapsed:
            response = post(router, "/chat/m", stream=streamed)
        assert response.status_code == 200, response.text
        assert response.headers["x-router-upstream"] == "b"
        assert elapsed() < SLACK
    assert b.chat_count == 4


def test_5xx_fails_over_to_another_replica(
    pair: tuple[FakeUpstream, FakeUpstream], start_router: Start
) -> None:
    a, b = pair
    a.set_behaviour("status", code=500)
    router = start_router(replicas(a, b))
    for _ in range(3):
        response = post(router, "/chat/m")
        assert response.status_code == 200
        assert response.headers["x-router-upstream"] == "b"


@pytest.mark.parametrize("streamed", [False, True])
def test_fails_over_to_fallback_route(
    pair: tuple[FakeUpstream, FakeUpstream], start_router: Start, streamed: bool
) -> None:
    a, b = pair
    a.go_down()
    router = start_router(with_fallback(a, b))
    response = post(router, "/chat/main", stream=streamed)
    assert response.status_code == 200, response.text
    assert response.headers["x-router-route"] == "/chat/other"
    assert response.headers["x-router-upstream"] == "b"
    assert b.chat_count == 1


def test_fallback_path_matches_like_the_validator(
    pair: tuple[FakeUpstream, FakeUpstream], start_router: Start
) -> None:
    """The validator compares paths ignoring case, so `/Chat/Other` names /chat/other: the table must too."""
    a, b = pair
    a.go_down()
    router = start_router(with_fallback(a, b, fallback_path="/Chat/Other"))
    response = post(router, "/chat/main")
    assert response.status_code == 200
    assert response.headers["x-router-route"] == "/chat/other"


def test_unhealthy_route_goes_straight_to_its_fallback(
    pair: tuple[FakeUpstream, FakeUpstream], start_router: Start
) -> None:
    a, b = pair
    a.models = []  # a runs, but without the model
    router = start_router(with_fallback(a, b, health_check=FAST_HEALTH))
    wait_health(router, "unhealthy", "/chat/main")
    response = post(router, "/chat/main")
    assert response.status_code == 200
    assert response.headers["x-router-route"] == "/chat/other"
    assert a.chat_count == 0, "the unhealthy route's upstream was not asked"


def test_open_breaker_goes_to_fallback(pair: tuple[FakeUpstream, FakeUpstream], start_router: Start) -> None:
    a, b = pair
    text = table(
        upstreams={
            "a": upstream(a, circuit_breaker={"failure_threshold": 1, "open_seconds": 30}),
            "b": upstream(b),
        },
        routes=[
            {"path": "/chat/main", "model": "m1:7b", "upstream": "a", "fallbacks": ["/chat/other"]},
            {"path": "/chat/other", "model": "m1:7b", "upstream": "b"},
        ],
        defaults={"max_retries": 0},
    )
    router = start_router(text)
    a.set_behaviour("status", code=500)
    assert post(router, "/chat/main").headers["x-router-route"] == "/chat/other"  # a failed, b answered
    a.reset()
    response = post(router, "/chat/main")
    assert response.headers["x-router-route"] == "/chat/other"
    assert a.chat_count == 0, "a's breaker is open: a is skipped without being asked"


def test_client_errors_do_not_fail_over(pair: tuple[FakeUpstream, FakeUpstream], start_router: Start) -> None:
    """A 429 is the upstream's answer to this request, not a fault: passed on, not retried elsewhere."""
    a, b = pair
    a.set_behaviour("status", code=429, retry_after=3)
    router = start_router(with_fallback(a, b))
    response = post(router, "/chat/main")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert b.chat_count == 0


def test_no_failover_after_the_first_byte(
    pair: tuple[FakeUpstream, FakeUpstream], start_router: Start
) -> None:
    a, b = pair
    for fake in pair:
        fake.chunk_delay = 0.02
        fake.set_behaviour("reset_mid_stream", after=3)
    router = start_router(replicas(a, b))
    result = stream(router, "/chat/m")
    assert result.status == 200
    assert not result.done
    assert result.error is not None and result.error["code"] == "upstream_connection_reset"
    assert a.chat_count + b.chat_count == 1, "a stream that started is never replayed elsewhere"


def test_everything_down_is_503_naming_each_replica(
    pair: tuple[FakeUpstream, FakeUpstream], start_router: Start
) -> None:
    a, b = pair
    a.models = b.models = []
    router = start_router(replicas(a, b, health_check=FAST_HEALTH))
    wait_for(lambda: health_state(router, "/chat/m", "b") == "unhealthy")
    wait_health(router, "unhealthy")
    response = post(router, "/chat/m")
    assert response.status_code == 503
    message = error_of(response)["message"]
    assert "a: unhealthy" in message and "b: unhealthy" in message
    assert "m1:7b" in message
