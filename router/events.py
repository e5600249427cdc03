"""A small in-process publish/subscribe hub for state changes (health, breaker, reloads).

`/events` subscribers each get a bounded queue: a page that stops reading loses its oldest events instead
of making the router buffer without limit; publishing never blocks and never awaits.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any

_QUEUE_SIZE = 256


class Subscription:
    """One listener's queue, registered from the moment it is created.

    Registration is synchronous on purpose: `/events` subscribes *before* it takes its opening snapshot,
    so a change that happens while the snapshot is being sent is queued rather than lost between the two.
    """

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_QUEUE_SIZE)
        bus._subscribers.add(self.queue)

    async def get(self) -> dict[str, Any]:
        """The next event (waits until one is published)."""
        return await self.queue.get()

    def close(self) -> None:
        """Stop receiving events. Idempotent."""
        self._bus._subscribers.discard(self.queue)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class EventBus:
    """Fan-out of state-change events to whoever listens right now."""

    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()

    def publish(self, kind: str, **fields: Any) -> None:
        """Send one event to every subscriber (dropping a slow subscriber's oldest event if needed)."""
        event = {"type": kind, "time": time.time(), **fields}
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)

    def subscription(self) -> Subscription:
        """A listener registered now; close it (or use it as a context manager) when done."""
        return Subscription(self)

    @property
    def subscriber_count(self) -> int:
        """How many listeners are attached (for /status and tests)."""
        return len(self._subscribers)
