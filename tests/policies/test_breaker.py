from __future__ import annotations

import pytest

from router.config.models import CircuitBreakerPolicy
from router.policies.breaker import BreakerState, CircuitBreaker, Permit

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(threshold: int = 3, open_seconds: float = 30.0, trials: int = 1):
    clock = FakeClock()
    events: list[tuple[BreakerState, BreakerState, str]] = []
    policy = CircuitBreakerPolicy(
        failure_threshold=threshold, open_seconds=open_seconds, half_open_max_requests=trials
    )
    breaker = CircuitBreaker(policy, clock=clock, on_transition=lambda o, n, r: events.append((o, n, r)))
    return breaker, clock, events


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        permit = breaker.try_acquire()
        assert permit is not None
        permit.failure()


def acquire(breaker: CircuitBreaker) -> Permit:
    permit = breaker.try_acquire()
    assert permit is not None
    return permit


def open_then_half_open(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, breaker.policy.failure_threshold)
    clock.now += breaker.policy.open_seconds


def test_starts_closed_and_admits() -> None:
    breaker, _, events = make()
    permit = acquire(breaker)
    assert not permit.trial
    assert breaker.state is CLOSED
    assert breaker.is_available()
    assert breaker.retry_after() == 0.0
    assert events == []


def test_consecutive_failures_open_it() -> None:
    breaker, clock, events = make(threshold=3, open_seconds=30)
    fail(breaker, 2)
    assert breaker.state is CLOSED
    assert breaker.snapshot().consecutive_failures == 2
    fail(breaker, 1)
    assert breaker.state is OPEN
    assert events == [(CLOSED, OPEN, "3 consecutive failures (threshold 3)")]
    snap = breaker.snapshot()
    assert snap.opened_at == clock.now
    assert snap.retry_after == 30.0
    assert snap.consecutive_failures == 3


def test_success_in_closed_resets_failure_count() -> None:
    breaker, _, _ = make(threshold=3)
    fail(breaker, 2)
    acquire(breaker).success()
    assert breaker.snapshot().consecutive_failures == 0
    fail(breaker, 2)
    assert breaker.state is CLOSED


def test_neutral_in_closed_neither_counts_nor_resets() -> None:
    breaker, _, _ = make(threshold=3)
    fail(breaker, 2)
    acquire(breaker).release()
    with acquire(breaker):
        pass
    assert breaker.snapshot().consecutive_failures == 2
    fail(breaker, 1)
    assert breaker.state is OPEN


def test_open_rejects_until_open_seconds_elapse() -> None:
    breaker, clock, events = make(threshold=1, open_seconds=30)
    fail(breaker, 1)
    clock.now += 10
    assert breaker.try_acquire() is None
    assert not breaker.is_available()
    assert breaker.retry_after() == pytest.approx(20.0)
    clock.now += 19.999
    assert breaker.try_acquire() is None
    clock.now += 0.001
    assert breaker.is_available()
    assert breaker.retry_after() == 0.0
    permit = acquire(breaker)
    assert permit.trial
    assert breaker.state is HALF_OPEN
    assert events[-1][:2] == (OPEN, HALF_OPEN)


def test_state_read_turns_expired_open_into_half_open_once() -> None:
    breaker, clock, events = make(threshold=1, open_seconds=5)
    fail(breaker, 1)
    clock.now += 5
    assert breaker.state is HALF_OPEN
    assert breaker.snapshot().state is HALF_OPEN
    assert [e[:2] for e in events] == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]


def test_half_open_admits_at_most_max_concurrent_trials() -> None:
    breaker, clock, _ = make(threshold=1, trials=2)
    open_then_half_open(breaker, clock)
    first, second = acquire(breaker), acquire(breaker)
    assert first.trial and second.trial
    assert breaker.try_acquire() is None
    assert not breaker.is_available()
    assert breaker.snapshot().trials_in_flight == 2


def test_trial_success_closes() -> None:
    breaker, clock, events = make(threshold=2)
    open_then_half_open(breaker, clock)
    acquire(breaker).success()
    assert breaker.state is CLOSED
    assert events[-1] == (HALF_OPEN, CLOSED, "trial call succeeded")
    snap = breaker.snapshot()
    assert snap.consecutive_failures == 0
    assert snap.opened_at is None
    # Closed again: it takes the full threshold to re-open.
    fail(breaker, 1)
    assert breaker.state is CLOSED


def test_trial_failure_reopens_with_fresh_open_seconds() -> None:
    breaker, clock, events = make(threshold=1, open_seconds=30)
    open_then_half_open(breaker, clock)
    trial = acquire(breaker)
    clock.now += 7
    trial.failure()
    assert breaker.state is OPEN
    assert events[-1] == (HALF_OPEN, OPEN, "trial call failed")
    assert breaker.retry_after() == 30.0
    assert breaker.snapshot().opened_at == clock.now
    clock.now += 29
    assert breaker.try_acquire() is None
    clock.now += 1
    assert acquire(breaker).trial


def test_neutral_release_frees_trial_slot() -> None:
    breaker, clock, events = make(threshold=1, trials=1)
    open_then_half_open(breaker, clock)
    trial = acquire(breaker)
    assert breaker.try_acquire() is None
    trial.release()
    assert breaker.state is HALF_OPEN
    assert acquire(breaker).trial
    assert [e[:2] for e in events] == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]


def test_context_manager_releases_trial_even_on_exception() -> None:
    breaker, clock, _ = make(threshold=1, trials=1)
    open_then_half_open(breaker, clock)
    with pytest.raises(RuntimeError), acquire(breaker):
        raise RuntimeError("client went away")
    assert breaker.state is HALF_OPEN
    assert breaker.try_acquire() is not None


def test_context_manager_keeps_explicit_outcome() -> None:
    breaker, clock, _ = make(threshold=1, trials=1)
    open_then_half_open(breaker, clock)
    with acquire(breaker) as permit:
        permit.failure()
    assert breaker.state is OPEN


def test_outcome_is_reported_once() -> None:
    breaker, _, _ = make(threshold=2)
    permit = acquire(breaker)
    permit.failure()
    permit.failure()
    permit.success()
    assert breaker.snapshot().consecutive_failures == 1


def test_stale_failure_does_not_extend_open_period() -> None:
    breaker, clock, events = make(threshold=1, open_seconds=30)
    slow = acquire(breaker)  # admitted while closed
    fail(breaker, 1)
    clock.now += 20
    slow.failure()
    assert breaker.retry_after() == pytest.approx(10.0)
    assert len(events) == 1


def test_stale_success_during_half_open_does_not_close() -> None:
    breaker, clock, _ = make(threshold=1, trials=1)
    slow = acquire(breaker)
    open_then_half_open(breaker, clock)
    trial = acquire(breaker)
    slow.success()
    assert breaker.state is HALF_OPEN
    assert breaker.try_acquire() is None  # the trial slot is still taken
    trial.success()
    assert breaker.state is CLOSED


def test_other_trials_are_stale_once_one_decides() -> None:
    breaker, clock, _ = make(threshold=1, trials=2)
    open_then_half_open(breaker, clock)
    first, second = acquire(breaker), acquire(breaker)
    first.success()
    second.failure()  # belongs to the half_open that is over
    assert breaker.state is CLOSED
    assert breaker.snapshot().consecutive_failures == 0


def test_reset_closes_and_reports() -> None:
    breaker, _, events = make(threshold=1)
    fail(breaker, 1)
    breaker.reset("admin reset")
    assert breaker.state is CLOSED
    assert events[-1] == (OPEN, CLOSED, "admin reset")
    breaker.reset()
    assert len(events) == 2  # no transition when already closed


def test_every_transition_reported_once_in_order() -> None:
    breaker, clock, events = make(threshold=2, open_seconds=10)
    fail(breaker, 2)
    clock.now += 10
    acquire(breaker).failure()
    clock.now += 10
    acquire(breaker).success()
    assert [e[:2] for e in events] == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]


def test_failing_callback_does_not_break_the_breaker(caplog: pytest.LogCaptureFixture) -> None:
    def boom(*_: object) -> None:
        raise ValueError("bad listener")

    breaker = CircuitBreaker(CircuitBreakerPolicy(failure_threshold=1), on_transition=boom)
    acquire(breaker).failure()
    assert breaker.state is OPEN
    assert "on_transition callback failed" in caplog.text


def test_policy_swap_applies_to_next_report() -> None:
    breaker, _, _ = make(threshold=5)
    fail(breaker, 2)
    breaker.policy = CircuitBreakerPolicy(failure_threshold=3)
    fail(breaker, 1)
    assert breaker.state is OPEN


def test_snapshot_is_frozen() -> None:
    breaker, _, _ = make()
    snap = breaker.snapshot()
    with pytest.raises(AttributeError):
        setattr(snap, "state", OPEN)  # noqa: B010
    assert snap.state == "closed"
