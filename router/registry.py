"""Live state that must outlive a single routing table: pools, breakers, limiters, health.

Route tables come and go with reloads; an upstream whose settings did not change keeps its connection
pool, its breaker and its concurrency limiter, and a (model, upstream) pair keeps its health history. That
state lives here, keyed by identity rather than by table, like Prometheus keeps scrape pools across
reloads. The registry knows nothing of routes' internals.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from router.config.models import HealthCheckPolicy, UpstreamConfig
from router.events import EventBus
from router.policies import CircuitBreaker, ConcurrencyLimiter, HealthTracker
from router.upstreams import build_adapter
from router.upstreams.base import UpstreamAdapter

log = logging.getLogger("router.registry")


@dataclass(eq=False)
class UpstreamState:
    """One upstream's live objects. `in_flight` lets a removed upstream close its pool only when idle."""

    config: UpstreamConfig
    adapter: UpstreamAdapter
    breaker: CircuitBreaker
    limiter: ConcurrencyLimiter
    in_flight: int = 0
    retired: bool = False

    @property
    def name(self) -> str:
        """The upstream's name in the current table."""
        return self.config.name


@dataclass(eq=False)
class HealthKey:
    """Which probe answers a health question: one upstream, one model (or a plain endpoint)."""

    upstream: UpstreamState
    model: str | None
    endpoint: str | None
    routes: set[str] = field(default_factory=set)


class Registry:
    """Creates, reuses and retires upstream state across table versions."""

    def __init__(self, events: EventBus) -> None:
        self.events = events
        self._upstreams: dict[Hashable, UpstreamState] = {}
        self._health: dict[Hashable, tuple[HealthKey, HealthTracker]] = {}

    def upstream(self, config: UpstreamConfig) -> UpstreamState:
        """The state for this upstream, reused when an equal one exists (policies updated in place)."""
        key = config.identity()
        state = self._upstreams.get(key)
        if state is None or state.retired:
            state = UpstreamState(
                config=config,
                adapter=build_adapter(config),
                breaker=CircuitBreaker(config.circuit_breaker, on_transition=self._breaker_hook(config.name)),
                limiter=ConcurrencyLimiter(config.max_concurrency, config.max_queue, config.queue_timeout),
            )
            self._upstreams[key] = state
            return state
        if state.config != config:
            state.breaker.policy = config.circuit_breaker
            limiter = state.limiter
            if (limiter.max_concurrency, limiter.max_queue, limiter.queue_timeout) != (
                config.max_concurrency,
                config.max_queue,
                config.queue_timeout,
            ):
                state.limiter = ConcurrencyLimiter(
                    config.max_concurrency, config.max_queue, config.queue_timeout
                )
            state.config = config
        return state

    def health(
        self, upstream: UpstreamState, model: str | None, policy: HealthCheckPolicy, route_path: str
    ) -> tuple[HealthKey, HealthTracker]:
        """The shared health tracker for (upstream, model or endpoint); routes asking the same share it."""
        model_key = None if policy.endpoint else model
        key = (upstream.config.identity(), model_key, policy.endpoint)
        found = self._health.get(key)
        if found is None or found[0].upstream is not upstream:
            health_key = HealthKey(upstream=upstream, model=model_key, endpoint=policy.endpoint)
            tracker = HealthTracker(policy, on_transition=self._health_hook(health_key))
            found = (health_key, tracker)
            self._health[key] = found
        found[0].routes.add(route_path)
        found[1].policy = policy
        return found

    def health_checks(self) -> list[tuple[HealthKey, HealthTracker]]:
        """Every health question currently asked, for the prober."""
        return list(self._health.values())

    def keep_only(self, upstreams: Iterable[UpstreamState], health_keys: Iterable[HealthKey]) -> None:
        """Forget what the new table no longer uses; retired pools close once their last request ends."""
        keep = {id(u) for u in upstreams}
        keep_health = {id(k) for k in health_keys}
        for key, state in list(self._upstreams.items()):
            if id(state) not in keep:
                del self._upstreams[key]
                state.retired = True
                if state.in_flight == 0:
                    asyncio.get_running_loop().create_task(state.adapter.close())
        for key, (health_key, _) in list(self._health.items()):
            if id(health_key) not in keep_health:
                del self._health[key]

    def release(self, upstream: UpstreamState) -> None:
        """One request on `upstream` ended; closes a retired upstream's pool when it was the last."""
        upstream.in_flight -= 1
        if upstream.retired and upstream.in_flight == 0:
            asyncio.get_running_loop().create_task(upstream.adapter.close())

    async def close(self) -> None:
        """Close every pool (shutdown)."""
        for state in self._upstreams.values():
            await state.adapter.close()
        self._upstreams.clear()
        self._health.clear()

    def _breaker_hook(self, name: str) -> Any:
        def on_transition(old: Any, new: Any, reason: str) -> None:
            log.warning("breaker %s: %s -> %s (%s)", name, old, new, reason)
            self.events.publish("breaker", upstream=name, old=str(old), new=str(new), reason=reason)

        return on_transition

    def _health_hook(self, key: HealthKey) -> Any:
        def on_transition(old: Any, new: Any, reason: str) -> None:
            routes = sorted(key.routes)
            log.warning(
                "health %s on %s (routes %s): %s -> %s (%s)",
                key.model or key.endpoint,
                key.upstream.name,
                ",".join(routes),
                old,
                new,
                reason,
            )
            self.events.publish(
                "health",
                upstream=key.upstream.name,
                model=key.model,
                routes=routes,
                old=str(old),
                new=str(new),
                reason=reason,
            )

        return on_transition
