"""Adopting a state another router process reached (shared state): breakers and health trackers."""

from __future__ import annotations

from router.config.models import CircuitBreakerPolicy, HealthCheckPolicy
from router.policies import BreakerState, CircuitBreaker, HealthState, HealthTracker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_breaker_adopts_an_open_period_and_a_close() -> None:
    clock = Clock()
    seen: list[tuple[BreakerState, BreakerState]] = []
    breaker = CircuitBreaker(
        CircuitBreakerPolicy(open_seconds=30),
        clock,
        on_transition=lambda old, new, _: seen.append((old, new)),
    )
    assert breaker.adopt(BreakerState.OPEN, 110.0, "shared")
    assert breaker.try_acquire() is None and breaker.retry_after() == 10.0
    assert not breaker.adopt(BreakerState.OPEN, 105.0, "shared")  # never shortens an open period
    assert breaker.adopt(BreakerState.OPEN, 120.0, "shared") and breaker.retry_after() == 20.0
    assert not breaker.adopt(BreakerState.HALF_OPEN, None, "shared")  # each process reaches it by time
    assert breaker.adopt(BreakerState.CLOSED, None, "shared")
    assert breaker.try_acquire() is not None
    assert seen == [(BreakerState.CLOSED, BreakerState.OPEN), (BreakerState.OPEN, BreakerState.CLOSED)]
    assert not breaker.adopt(BreakerState.OPEN, 99.0, "shared")  # already over


def test_a_health_tracker_adopts_a_verdict_once() -> None:
    seen: list[HealthState] = []
    tracker = HealthTracker(HealthCheckPolicy(), on_transition=lambda _, new, __: seen.append(new))
    assert tracker.adopt(HealthState.UNHEALTHY, "shared") and not tracker.accepts_traffic
    assert not tracker.adopt(HealthState.UNHEALTHY, "shared")
    assert not tracker.adopt(HealthState.INITIAL, "shared")
    assert tracker.adopt(HealthState.HEALTHY, "shared") and tracker.accepts_traffic
    assert seen == [HealthState.UNHEALTHY, HealthState.HEALTHY]
