"""The event bus as observers see it: every published state change also reaches `Observer.event`.

A subclass rather than a subscriber: a subscription is an asyncio queue read by a task, which would log a
transition late (or drop it when the queue is full) and show up in /debug as one more `/events` listener.
Here the observer is called synchronously, in order, at the moment of publishing. Event fields are passed
through the redactor before anyone sees them: a reload's diff may quote an upstream's headers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from router.events import EventBus
from router.observability.observer import Observer


class ObservedEventBus(EventBus):
    """An EventBus that also reports every event to an observer."""

    def __init__(self, observer: Observer, redact: Callable[[Any], Any]) -> None:
        super().__init__()
        self.observer = observer
        self.redact = redact  # `Redactor.value`; an empty Redactor returns every value as it is

    def publish(self, kind: str, **fields: Any) -> None:
        redact = self.redact
        fields = {key: redact(value) for key, value in fields.items()}
        super().publish(kind, **fields)
        self.observer.event(kind, fields)
