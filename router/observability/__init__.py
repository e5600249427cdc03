"""What operators see: one record per request, reported to observers (metrics, structured logs)."""

from router.observability.observer import Observer, Observers
from router.observability.record import RequestRecord, outcome_of

__all__ = ["Observer", "Observers", "RequestRecord", "outcome_of"]
