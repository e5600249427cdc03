"""Active health state of one route's model, fed by probe results (Envoy-style thresholds).

initial --1 success--> healthy --failure_threshold consecutive failures--> unhealthy
initial --failure_threshold consecutive failures--> unhealthy --recovery_threshold successes--> healthy

Traffic flows while initial: a router that has just started (or reloaded) must not refuse everything
until the first probe lands. The tracker only keeps state and says when to probe next; the prober that
does the HTTP lives elsewhere.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from router.config.models import HealthCheckPolicy

__all__ = ["HealthSnapshot", "HealthState", "HealthTracker", "HealthTransition"]

logger = logging.getLogger(__name__)


class HealthState(StrEnum):
    """A route's health verdict; `initial` lets traffic through until the first probes have spoken."""

    INITIAL = "initial"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


HealthTransition = Callable[[HealthState, HealthState, str], None]
"""on_transition(old, new, reason): called once per state change, after the tracker is consistent."""


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """A consistent copy of a tracker's state for /status and /events, read without touching it."""

    state: HealthState
    consecutive_successes: int
    consecutive_failures: int
    last_probe_at: float | None  # wall clock (time.time()); None before the first probe
    last_latency: float | None  # seconds
    last_error: str | None  # from the most recent failed probe; cleared by a success
    changed_at: float | None  # wall clock of the last transition


class HealthTracker:
    """`policy` is public so a reload that keeps the route can swap thresholds and intervals in place."""

    def __init__(
        self,
        policy: HealthCheckPolicy,
        on_transition: HealthTransition | None = None,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy
        self._on_transition = on_transition
        self._clock = clock
        self._rng = rng
        self._state = HealthState.INITIAL
        self._successes = 0
        self._failures = 0
        self._last_probe_at: float | None = None
        self._last_latency: float | None = None
        self._last_error: str | None = None
        self._changed_at: float | None = None

    @property
    def state(self) -> HealthState:
        return self._state

    @property
    def accepts_traffic(self) -> bool:
        return self._state is not HealthState.UNHEALTHY

    def record_probe(self, ok: bool, latency: float | None = None, error: str | None = None) -> None:
        """One probe's result. A probe timeout is a failure (pass ok=False, error='timed out after 5s')."""
        self._last_probe_at = self._clock()
        self._last_latency = latency
        policy = self.policy
        if ok:
            self._successes += 1
            self._failures = 0
            self._last_error = None
            if self._state is HealthState.INITIAL:
                self._transition(HealthState.HEALTHY, "first probe succeeded")
            elif self._state is HealthState.UNHEALTHY and self._successes >= policy.recovery_threshold:
                self._transition(HealthState.HEALTHY, f"{self._successes} consecutive probes succeeded")
        else:
            self._failures += 1
            self._successes = 0
            self._last_error = error
            if self._state is not HealthState.UNHEALTHY and self._failures >= policy.failure_threshold:
                detail = f": {error}" if error else ""
                self._transition(HealthState.UNHEALTHY, f"{self._failures} consecutive probes failed{detail}")

    def adopt(self, state: HealthState, reason: str) -> bool:
        """Take on a verdict another router process reached (shared state); True if it changed anything.

        The streaks restart: the next local probe, if this process probes, counts from the new state.
        """
        if state is self._state or state is HealthState.INITIAL:
            return False
        self._successes = self._failures = 0
        self._last_probe_at = self._clock()
        self._transition(state, reason)
        return True

    def next_delay(self) -> float:
        """Seconds until the next probe: interval (recovery_interval while unhealthy) +- jitter fraction."""
        policy = self.policy
        base = policy.recovery_interval if self._state is HealthState.UNHEALTHY else policy.interval
        return max(0.0, base * (1.0 + policy.jitter * (2.0 * self._rng() - 1.0)))

    def snapshot(self) -> HealthSnapshot:
        return HealthSnapshot(
            state=self._state,
            consecutive_successes=self._successes,
            consecutive_failures=self._failures,
            last_probe_at=self._last_probe_at,
            last_latency=self._last_latency,
            last_error=self._last_error,
            changed_at=self._changed_at,
        )

    def _transition(self, new: HealthState, reason: str) -> None:
        old = self._state
        self._state = new
        self._changed_at = self._last_probe_at
        callback = self._on_transition
        if callback is not None:
            try:
                callback(old, new, reason)
            except Exception:
                logger.exception("health tracker on_transition callback failed (%s -> %s)", old, new)
