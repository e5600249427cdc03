"""A token bucket per client key: `rate_limit_per_minute` requests a minute, bursts up to that many."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """Holds up to `per_minute` tokens, refilled continuously at `per_minute / 60` a second.

    The whole minute's allowance is the burst on purpose: a client that was idle may send its minute's
    worth at once, which is what people expect "60 a minute" to mean, and the long-run rate still holds.
    """

    __slots__ = ("_clock", "_rate", "_stamp", "_tokens", "capacity")

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._clock = clock
        self._tokens = self.capacity
        self._stamp = clock()

    def take(self) -> float:
        """Take one token: 0.0 when there was one, else the seconds until there will be."""
        now = self._clock()
        tokens = min(self.capacity, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return 0.0
        self._tokens = tokens
        return (1.0 - tokens) / self._rate
