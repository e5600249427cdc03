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
    """Fan-out to several observers."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self.observers = tuple(observers)

    def request_finished(self, record: RequestRecord) -> None:
        for observer in self.observers:
            observer.request_finished(record)

    def reloaded(self, ok: bool, sha256: str, trigger: str) -> None:
        for observer in self.observers:
            observer.reloaded(ok, sha256, trigger)

    def event(self, kind: str, fields: dict[str, Any]) -> None:
        for observer in self.observers:
            observer.event(kind, fields)
