"""A small in-process publish/subscribe hub for state changes (health, breaker, reloads).

`/events` subscribers each get a bounded queue: a page that stops reading loses its oldest events instead
of making the router buffer without limit; publishing never blocks and never awaits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

_QUEUE_SIZE = 256


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

    async def subscribe(self) -> AsyncIterator[dict[str, Any]]:
        """Events from now on, until the caller stops iterating."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)

    @property
    def subscriber_count(self) -> int:
        """How many listeners are attached (for /status and tests)."""
        return len(self._subscribers)
