"""Passive circuit breaker for one upstream, fed by real traffic (resilience4j-style, consecutive failures).

closed --N consecutive failures--> open --open_seconds elapse--> half_open --trial ok--> closed
                                    ^                               |
                                    +---------trial failed----------+

Admission hands out a `Permit`; the caller reports through it how the call ended: `success()`,
`failure()` (an upstream fault) or `release()` (neutral: client cancelled, 4xx caused by the request).
Permits carry the breaker's epoch (bumped on every transition) so that a call admitted under a state that
has since gone cannot steer the new one: a slow request started while closed that fails after the breaker
opened must not extend the open period, and one that succeeds during half_open is not the trial and must
not close it. A permit used as a context manager is released neutrally on exit unless already reported,
so a trial slot can never leak.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType

from router.config.models import CircuitBreakerPolicy

__all__ = ["BreakerSnapshot", "BreakerState", "BreakerTransition", "CircuitBreaker", "Permit"]

logger = logging.getLogger(__name__)


class BreakerState(StrEnum):
    """Where a breaker stands; string values so /status, /events and metrics can show them as they are."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


BreakerTransition = Callable[[BreakerState, BreakerState, str], None]
"""on_transition(old, new, reason): called once per state change, after the breaker is consistent."""


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """A consistent copy of a breaker's state for /status and /events, read without touching it."""

    state: BreakerState
    consecutive_failures: int
    opened_at: float | None  # in the breaker's clock (monotonic by default); None unless open/half_open
    retry_after: float  # seconds until the open period ends; 0.0 when closed or half_open
    trials_in_flight: int


_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN

_SUCCESS, _FAILURE, _NEUTRAL = 0, 1, 2


class Permit:
    """Admission of one call. Report exactly one outcome; later reports are ignored."""

    __slots__ = ("_breaker", "_done", "_epoch", "trial")

    def __init__(self, breaker: CircuitBreaker, epoch: int, trial: bool) -> None:
        self._breaker = breaker
        self._epoch = epoch
        self._done = False
        self.trial = trial  # True when this call is a half_open trial

    def success(self) -> None:
        self._finish(_SUCCESS)

    def failure(self) -> None:
        """An upstream fault: refused, DNS, timeout, reset, 5xx, unparseable body."""
        self._finish(_FAILURE)

    def release(self) -> None:
        """Neither success nor failure (client went away, 4xx caused by the request): frees a trial slot."""
        self._finish(_NEUTRAL)

    def _finish(self, outcome: int) -> None:
        if self._done:
            return
        self._done = True
        self._breaker._record(self, outcome)

    def __enter__(self) -> Permit:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Deliberately neutral even on an exception: only the caller can tell an upstream fault from a
        # client disconnect, so it must call failure() itself.
        self.release()


class CircuitBreaker:
    """One upstream's breaker. Not thread-safe: it lives on one event loop.

    `policy` is a public attribute so a reload that keeps the upstream can swap thresholds in place; the
    new values apply from the next admission or report.
    """

    def __init__(
        self,
        policy: CircuitBreakerPolicy,
        clock: Callable[[], float] = time.monotonic,
        on_transition: BreakerTransition | None = None,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._on_transition = on_transition
        self._state = _CLOSED
        self._epoch = 0
        self._failures = 0
        self._opened_at: float | None = None
        self._open_until = 0.0
        self._trials = 0

    # -- admission -------------------------------------------------------------------------------------

    def try_acquire(self) -> Permit | None:
        """Admit one call, or None when the breaker rejects it (answer 503 with `retry_after()`)."""
        state = self._state
        if state is _CLOSED:
            return Permit(self, self._epoch, False)
        if state is _OPEN:
            if self._clock() < self._open_until:
                return None
            self._transition(_HALF_OPEN, f"open for {self.policy.open_seconds:g}s, admitting trial calls")
        if self._trials >= self.policy.half_open_max_requests:
            return None
        self._trials += 1
        return Permit(self, self._epoch, True)

    def is_available(self) -> bool:
        """Would `try_acquire()` admit a call now? No side effects: for routing decisions and /status."""
        state = self._state
        if state is _CLOSED:
            return True
        if state is _OPEN:
            return self._clock() >= self._open_until
        return self._trials < self.policy.half_open_max_requests

    def retry_after(self) -> float:
        """Seconds left in the open period; 0.0 when closed or half_open (a caller picks its own floor)."""
        if self._state is not _OPEN:
            return 0.0
        return max(0.0, self._open_until - self._clock())

    @property
    def state(self) -> BreakerState:
        """The current state; an expired open period turns into half_open when observed."""
        if self._state is _OPEN and self._clock() >= self._open_until:
            self._transition(_HALF_OPEN, f"open for {self.policy.open_seconds:g}s, admitting trial calls")
        return self._state

    def snapshot(self) -> BreakerSnapshot:
        state = self.state
        return BreakerSnapshot(
            state=state,
            consecutive_failures=self._failures,
            opened_at=self._opened_at,
            retry_after=self.retry_after(),
            trials_in_flight=self._trials,
        )

    def end_open_period(self, reason: str) -> bool:
        """Cut an open period short and admit trial calls now; True if the breaker was open.

        For outside evidence that the upstream is back, like an active health check that went from
        unhealthy to healthy (Envoy's `successful_active_health_check_uneject_host`): without it a
        recovered model would keep answering 503 until `open_seconds` ran out. The breaker still wants a
        trial call to succeed before it closes, so a probe that lies costs one failed request, not many.
        """
        if self._state is not _OPEN:
            return False
        self._open_until = self._clock()
        self._transition(_HALF_OPEN, reason)
        return True

    def adopt(self, state: BreakerState, until: float | None, reason: str) -> bool:
        """Take on a state another router process reached (shared state); True if anything changed.

        `open` until `until` (this breaker's clock) opens it, or lengthens an open period that would end
        sooner; `closed` closes it. `half_open` is not adopted: each process turns half_open by itself
        when the shared open period ends. Permits already out become stale, as on any transition.
        """
        if state is _OPEN:
            now = self._clock()
            if until is None or until <= now or (self._state is _OPEN and self._open_until >= until):
                return False
            self._open_until = until
            if self._state is _OPEN:
                return True
            self._opened_at = now
            self._transition(_OPEN, reason)
            return True
        if state is _CLOSED and self._state is not _CLOSED:
            self._failures = 0
            self._transition(_CLOSED, reason)
            return True
        return False

    def reset(self, reason: str = "reset") -> None:
        """Force closed (admin action). Permits already out become stale."""
        self._failures = 0
        if self._state is not _CLOSED:
            self._transition(_CLOSED, reason)

    # -- outcomes --------------------------------------------------------------------------------------

    def _record(self, permit: Permit, outcome: int) -> None:
        if permit._epoch != self._epoch:
            return  # admitted under a state that has since changed: its outcome says nothing about now
        if self._state is _CLOSED:
            if outcome == _SUCCESS:
                self._failures = 0
            elif outcome == _FAILURE:
                self._failures += 1
                threshold = self.policy.failure_threshold
                if self._failures >= threshold:
                    self._open(f"{self._failures} consecutive failures (threshold {threshold})")
            return
        # Current-epoch permits are only issued in closed and half_open, so this is a trial.
        self._trials -= 1
        if outcome == _SUCCESS:
            self._failures = 0
            self._transition(_CLOSED, "trial call succeeded")
        elif outcome == _FAILURE:
            self._failures += 1
            self._open("trial call failed")

    def _open(self, reason: str) -> None:
        now = self._clock()
        self._opened_at = now
        self._open_until = now + self.policy.open_seconds
        self._transition(_OPEN, reason)

    def _transition(self, new: BreakerState, reason: str) -> None:
        old = self._state
        self._state = new
        self._epoch += 1
        self._trials = 0
        if new is _CLOSED:
            self._opened_at = None
        callback = self._on_transition
        if callback is not None:
            try:
                callback(old, new, reason)
            except Exception:
                # A logging/events bug must not break admission on the request path.
                logger.exception("circuit breaker on_transition callback failed (%s -> %s)", old, new)
