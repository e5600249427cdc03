"""What operators see: one record per request, reported to observers (metrics, structured logs)."""

from router.observability.bus import ObservedEventBus
from router.observability.logs import StructuredLog
from router.observability.metrics import RouterMetrics
from router.observability.observer import Observer, Observers
from router.observability.record import RequestRecord, outcome_of

__all__ = [
    "ObservedEventBus",
    "Observer",
    "Observers",
    "RequestRecord",
    "RouterMetrics",
    "StructuredLog",
    "outcome_of",
]
