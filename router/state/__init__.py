"""State several router processes must agree on: sessions, per-key rate limits, breaker and health.

`backend.py` is the narrow interface the rest of the router calls; `memory.py` keeps everything in the
process (the behaviour of a single router), `redis.py` shares it through Redis so every worker of every
replica behaves as one router. `build_state` picks one from the table's `state:` block.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Gauge

from router.config.models import RouterConfig, StateSettings
from router.state.backend import SharedState, StateUnavailable
from router.state.checks import multi_process_refusal

__all__ = [
    "SharedState",
    "StateUnavailable",
    "build_state",
    "multi_process_refusal",
    "register_state_metrics",
    "state_secrets",
]


def build_state(settings: StateSettings) -> SharedState:
    """The backend the table asks for (Redis is only imported when it is used)."""
    if settings.backend == "redis":
        from router.state.redis import RedisState

        return RedisState(settings)
    from router.state.memory import MemoryState

    return MemoryState()


def state_secrets(config: RouterConfig) -> set[str]:
    """The Redis password in `state.url`, for the redactor (it must never reach a log or /status)."""
    url = config.state.url
    password = urlsplit(url.get_secret_value()).password if url is not None else None
    return {password} if password else set()


def register_state_metrics(registry: CollectorRegistry, state: SharedState) -> None:
    """`router_state_backend_up`: 1 while the shared store answers (always 1 in memory)."""
    gauge = Gauge(
        "router_state_backend_up",
        "Whether the shared-state backend (state.backend) answers: 1 yes, 0 lost (local state in use)",
        ["backend"],
        registry=registry,
    )
    gauge.labels(state.backend).set_function(lambda: float(state.up))
