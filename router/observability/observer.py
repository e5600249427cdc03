"""The observer interface: how the request path and the runtime report what happened.

The request path calls these methods and knows nothing of Prometheus or log formats; metrics and logs
are observers. The base class does nothing, so a router without observers pays one method call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from router.observability.record import RequestRecord


class Observer:
    """Receives request records and runtime events; every method is optional."""

    def request_finished(self, record: RequestRecord) -> None:
        """A chat request ended (whole answer, stream end, error or cancellation)."""

    def reloaded(self, ok: bool, sha256: str, trigger: str) -> None:
        """A reload was attempted."""

    def event(self, kind: str, fields: dict[str, Any]) -> None:
        """A state change (health, breaker) happened."""


class Observers(Observer):
    """Fan-out to several observers.

    Every request pays the fan-out, so it is flattened when built: nested `Observers` are unfolded, and
    the observers that do nothing with finished requests (the base method) are left out of that one
    loop; `request_finished` then calls the bound methods that do something, and nothing else.
    """

    def __init__(self, observers: Sequence[Observer]) -> None:
        flat: list[Observer] = []
        for observer in observers:
            flat.extend(observer.observers if isinstance(observer, Observers) else (observer,))
        self.observers: tuple[Observer, ...] = tuple(flat)
        self._finished = tuple(
            observer.request_finished
            for observer in flat
            if type(observer).request_finished is not Observer.request_finished
        )

    def request_finished(self, record: RequestRecord) -> None:
        for finished in self._finished:
            finished(record)

    def reloaded(self, ok: bool, sha256: str, trigger: str) -> None:
        for observer in self.observers:
            observer.reloaded(ok, sha256, trigger)

    def event(self, kind: str, fields: dict[str, Any]) -> None:
        for observer in self.observers:
            observer.event(kind, fields)
