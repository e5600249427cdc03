"""Pure policy building blocks: breaker, health state, concurrency limit, balancer, retry, limits.

Each is alone and unit-testable with an injectable clock; none does HTTP. The request path and the prober
wire them together.
"""

from router.policies.balancer import InFlight, Replica, choose
from router.policies.breaker import BreakerSnapshot, BreakerState, BreakerTransition, CircuitBreaker, Permit
from router.policies.concurrency import ConcurrencyLimiter, QueueFull, Slot
from router.policies.health import HealthSnapshot, HealthState, HealthTracker, HealthTransition
from router.policies.limits import clamp_max_tokens
from router.policies.retry import (
    backoff_delays,
    format_retry_after,
    parse_retry_after,
    retry_after_from_headers,
)

__all__ = [
    "BreakerSnapshot",
    "BreakerState",
    "BreakerTransition",
    "CircuitBreaker",
    "ConcurrencyLimiter",
    "HealthSnapshot",
    "HealthState",
    "HealthTracker",
    "HealthTransition",
    "InFlight",
    "Permit",
    "QueueFull",
    "Replica",
    "Slot",
    "backoff_delays",
    "choose",
    "clamp_max_tokens",
    "format_retry_after",
    "parse_retry_after",
    "retry_after_from_headers",
]
