from __future__ import annotations

import random

import pytest

from router.config.models import HealthCheckPolicy
from router.policies.health import HealthState, HealthTracker

INITIAL, HEALTHY, UNHEALTHY = HealthState.INITIAL, HealthState.HEALTHY, HealthState.UNHEALTHY


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def make(failures: int = 2, recovery: int = 3, rng: float = 0.5, **kw: float):
    events: list[tuple[HealthState, HealthState, str]] = []
    clock = FakeClock()
    policy = HealthCheckPolicy(failure_threshold=failures, recovery_threshold=recovery, **kw)  # type: ignore[arg-type]
    tracker = HealthTracker(
        policy, on_transition=lambda o, n, r: events.append((o, n, r)), clock=clock, rng=lambda: rng
    )
    return tracker, clock, events


def probes(tracker: HealthTracker, *results: bool) -> None:
    for ok in results:
        tracker.record_probe(ok, 0.01, None if ok else "connection refused")


def test_initial_accepts_traffic() -> None:
    tracker, _, events = make()
    assert tracker.state is INITIAL
    assert tracker.accepts_traffic
    assert events == []


def test_initial_to_healthy_on_first_success() -> None:
    tracker, _, events = make(recovery=3)
    probes(tracker, True)
    assert tracker.state is HEALTHY
    assert events == [(INITIAL, HEALTHY, "first probe succeeded")]


def test_initial_to_unhealthy_after_failure_threshold() -> None:
    tracker, _, events = make(failures=2)
    probes(tracker, False)
    assert tracker.state is INITIAL
    assert tracker.accepts_traffic
    probes(tracker, False)
    assert tracker.state is UNHEALTHY
    assert not tracker.accepts_traffic
    assert events == [(INITIAL, UNHEALTHY, "2 consecutive probes failed: connection refused")]


def test_healthy_to_unhealthy_needs_consecutive_failures() -> None:
    tracker, _, events = make(failures=3)
    probes(tracker, True, False, False, True, False, False)
    assert tracker.state is HEALTHY
    probes(tracker, False)
    assert tracker.state is UNHEALTHY
    assert [e[:2] for e in events] == [(INITIAL, HEALTHY), (HEALTHY, UNHEALTHY)]


def test_unhealthy_to_healthy_needs_recovery_threshold() -> None:
    tracker, _, events = make(failures=1, recovery=3)
    probes(tracker, False)
    probes(tracker, True, True, False, True, True)
    assert tracker.state is UNHEALTHY
    probes(tracker, True)
    assert tracker.state is HEALTHY
    assert events[-1] == (UNHEALTHY, HEALTHY, "3 consecutive probes succeeded")


def test_callback_once_per_transition() -> None:
    tracker, _, events = make(failures=1, recovery=1)
    probes(tracker, False, False, False, True, True, True, False)
    assert [e[:2] for e in events] == [(INITIAL, UNHEALTHY), (UNHEALTHY, HEALTHY), (HEALTHY, UNHEALTHY)]


def test_snapshot_records_last_probe() -> None:
    tracker, clock, _ = make(failures=5)
    assert tracker.snapshot().last_probe_at is None
    tracker.record_probe(False, None, "timed out after 5s")
    snap = tracker.snapshot()
    assert (snap.consecutive_failures, snap.consecutive_successes) == (1, 0)
    assert snap.last_probe_at == clock.now
    assert snap.last_latency is None
    assert snap.last_error == "timed out after 5s"
    clock.now += 30
    tracker.record_probe(True, 0.25, None)
    snap = tracker.snapshot()
    assert (snap.consecutive_failures, snap.consecutive_successes) == (0, 1)
    assert snap.last_probe_at == clock.now
    assert snap.changed_at == clock.now
    assert snap.last_latency == 0.25
    assert snap.last_error is None
    assert snap.state is HEALTHY


def test_next_delay_uses_interval_then_recovery_interval() -> None:
    tracker, _, _ = make(failures=1, interval=30.0, recovery_interval=10.0, jitter=0.1)
    assert tracker.next_delay() == pytest.approx(30.0)  # rng 0.5 -> no jitter
    probes(tracker, True)
    assert tracker.next_delay() == pytest.approx(30.0)
    probes(tracker, False)
    assert tracker.next_delay() == pytest.approx(10.0)


@pytest.mark.parametrize(("rng", "expected"), [(0.0, 27.0), (1.0, 33.0), (0.75, 31.5)])
def test_next_delay_jitter_bounds(rng: float, expected: float) -> None:
    tracker, _, _ = make(rng=rng, interval=30.0, jitter=0.1)
    assert tracker.next_delay() == pytest.approx(expected)


def test_next_delay_random_jitter_stays_in_bounds_and_spreads() -> None:
    policy = HealthCheckPolicy(interval=10.0, jitter=0.2)
    tracker = HealthTracker(policy, rng=random.Random(7).random)
    delays = [tracker.next_delay() for _ in range(1000)]
    assert all(8.0 <= d <= 12.0 for d in delays)
    assert min(delays) < 8.2 and max(delays) > 11.8


def test_no_jitter_is_exact() -> None:
    tracker, _, _ = make(rng=0.0, interval=5.0, jitter=0.0)
    assert tracker.next_delay() == 5.0


def test_policy_swap_applies_to_next_probe() -> None:
    tracker, _, _ = make(failures=3)
    probes(tracker, True, False)
    tracker.policy = HealthCheckPolicy(failure_threshold=2)
    probes(tracker, False)
    assert tracker.state is UNHEALTHY
