"""Per-upstream concurrency limit with a bounded FIFO queue in front of it.

A released slot is handed straight to the oldest waiter (in_flight never dips while someone waits), so
newcomers cannot overtake the queue. Nothing is buffered beyond `max_queue`: a caller that finds the queue
full, or waits longer than `queue_timeout`, gets `QueueFull` with an estimated Retry-After.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType

__all__ = ["ConcurrencyLimiter", "QueueFull", "Slot"]

_EWMA_ALPHA = 0.2
_MIN_RETRY_AFTER = 1.0  # Retry-After has one-second granularity; never invite an immediate stampede


class QueueFull(Exception):
    """The upstream is saturated: `timed_out` False when rejected at once, True after waiting in line."""

    def __init__(self, retry_after: float, *, timed_out: bool, in_flight: int, queued: int) -> None:
        self.retry_after = retry_after
        self.timed_out = timed_out
        why = "waited too long in the queue" if timed_out else "the queue is full"
        super().__init__(
            f"concurrency limit reached ({in_flight} in flight, {queued} queued) and {why}; "
            f"retry in about {retry_after:.0f}s"
        )


class Slot:
    """One held slot. `release()` is idempotent; prefer `async with limiter.slot():` where scope allows."""

    __slots__ = ("_limiter", "_released", "_started")

    def __init__(self, limiter: ConcurrencyLimiter, started: float | None) -> None:
        self._limiter = limiter
        self._started = started
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._limiter._release(self._started)

    def __enter__(self) -> Slot:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class _SlotContext:
    __slots__ = ("_limiter", "_slot")

    def __init__(self, limiter: ConcurrencyLimiter) -> None:
        self._limiter = limiter
        self._slot: Slot | None = None

    async def __aenter__(self) -> Slot:
        self._slot = await self._limiter.acquire()
        return self._slot

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._slot is not None:
            self._slot.release()


class ConcurrencyLimiter:
    """Not thread-safe: one event loop. `max_concurrency=None` means unlimited (only counts in_flight)."""

    def __init__(
        self,
        max_concurrency: int | None,
        max_queue: int = 0,
        queue_timeout: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1 or None, got {max_concurrency}")
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {max_queue}")
        if queue_timeout <= 0:
            raise ValueError(f"queue_timeout must be > 0, got {queue_timeout}")
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self._clock = clock
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._avg_hold: float | None = None  # EWMA of how long a slot is held, for Retry-After

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def queued(self) -> int:
        return sum(1 for fut in self._waiters if not fut.done())

    def slot(self) -> _SlotContext:
        """`async with limiter.slot():` holds one slot for the block; raises QueueFull."""
        return _SlotContext(self)

    async def acquire(self) -> Slot:
        """Take a slot, waiting in line if allowed. Raises QueueFull; cancellation never leaks a slot."""
        limit = self.max_concurrency
        if limit is None:
            self._in_flight += 1
            return Slot(self, None)
        # Invariant: a slot is handed to a waiter on release, so in_flight < limit implies no live waiter.
        if self._in_flight < limit:
            self._in_flight += 1
            return Slot(self, self._clock())
        if len(self._waiters) >= self.max_queue:
            raise QueueFull(
                self.estimate_retry_after(), timed_out=False, in_flight=self._in_flight, queued=self.queued
            )
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            async with asyncio.timeout(self.queue_timeout):
                try:
                    await fut
                except BaseException:
                    if fut.done() and not fut.cancelled():
                        # Handed a slot in the same tick we were cancelled or timed out: pass it on.
                        self._hand_off()
                    else:
                        fut.cancel()
                        try:
                            self._waiters.remove(fut)
                        except ValueError:
                            pass
                    raise
        except TimeoutError:
            raise QueueFull(
                self.estimate_retry_after(), timed_out=True, in_flight=self._in_flight, queued=self.queued
            ) from None
        return Slot(self, self._clock())

    def estimate_retry_after(self) -> float:
        """Roughly when a slot frees for a newcomer: average hold time x queue depth / concurrency."""
        limit = self.max_concurrency
        if limit is None or self._avg_hold is None:
            return _MIN_RETRY_AFTER
        return max(_MIN_RETRY_AFTER, self._avg_hold * (len(self._waiters) + 1) / limit)

    def _release(self, started: float | None) -> None:
        if started is not None:
            held = max(0.0, self._clock() - started)
            avg = self._avg_hold
            self._avg_hold = held if avg is None else avg + _EWMA_ALPHA * (held - avg)
        self._hand_off()

    def _hand_off(self) -> None:
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():  # skip waiters cancelled but not yet cleaned up
                fut.set_result(None)
                return
        self._in_flight -= 1
