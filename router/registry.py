"""Live state that must outlive a single routing table: pools, breakers, limiters, health.

Route tables come and go with reloads; an upstream whose settings did not change keeps its connection
pool, its breaker and its concurrency limiter, and a (model, upstream) pair keeps its health history. That
state lives here, keyed by identity rather than by table, like Prometheus keeps scrape pools across
reloads. The registry knows nothing of routes' internals.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from router.config.models import HealthCheckPolicy, UpstreamConfig
from router.events import EventBus
from router.policies import (
    BreakerState,
    BreakerTransition,
    CircuitBreaker,
    ConcurrencyLimiter,
    HealthState,
    HealthTracker,
    HealthTransition,
)
from router.upstreams import build_adapter
from router.upstreams.base import UpstreamAdapter

if TYPE_CHECKING:
    from router.state.sync import StateSync

log = logging.getLogger("router.registry")

_TIMER_SLACK = 0.005  # event-loop timers may fire a hair early; look just after the open period ends


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
        self.sync: StateSync | None = None  # shares transitions with other processes (router.state)

    def upstream(self, config: UpstreamConfig) -> UpstreamState:
        """The state for this upstream, reused when an equal one exists (policies updated in place)."""
        key = config.identity()
        state = self._upstreams.get(key)
        if state is None or state.retired:
            state = self._new_upstream(config)
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

    def _new_upstream(self, config: UpstreamConfig) -> UpstreamState:
        holder: list[UpstreamState] = []  # the breaker's hook needs the state the breaker goes into
        breaker = CircuitBreaker(config.circuit_breaker, on_transition=self._breaker_hook(holder))
        state = UpstreamState(
            config=config,
            adapter=build_adapter(config),
            breaker=breaker,
            limiter=ConcurrencyLimiter(config.max_concurrency, config.max_queue, config.queue_timeout),
        )
        holder.append(state)
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
        found[0].routes.add(route_path)  # `keep_only` trims it to the routes of the newest table
        found[1].policy = policy
        return found

    def health_checks(self) -> list[tuple[HealthKey, HealthTracker]]:
        """Every health question currently asked, for the prober."""
        return list(self._health.values())

    def keep_only(
        self, upstreams: Iterable[UpstreamState], health_routes: Mapping[HealthKey, Iterable[str]]
    ) -> None:
        """Forget what the new table no longer uses; retired pools close once their last request ends.

        `health_routes` maps each health question the new table asks to the route paths asking it, so
        logs and events name the routes of the table being served, not of every table since start-up.
        """
        keep = {id(u) for u in upstreams}
        keep_health = {id(k) for k in health_routes}
        for key, state in list(self._upstreams.items()):
            if id(state) not in keep:
                del self._upstreams[key]
                state.retired = True
                if state.in_flight == 0:
                    asyncio.get_running_loop().create_task(state.adapter.close())
        for key, (health_key, _) in list(self._health.items()):
            if id(health_key) not in keep_health:
                del self._health[key]
        for health_key, routes in health_routes.items():
            health_key.routes = set(routes)

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

    def _breaker_hook(self, holder: list[UpstreamState]) -> BreakerTransition:
        def on_transition(old: BreakerState, new: BreakerState, reason: str) -> None:
            state = holder[0]
            level = logging.WARNING if new is BreakerState.OPEN else logging.INFO
            log.log(level, "circuit breaker of upstream %s: %s -> %s (%s)", state.name, old, new, reason)
            retry_after = round(state.breaker.retry_after(), 3)
            self.events.publish(
                "breaker",
                upstream=state.name,
                old=str(old),
                new=str(new),
                reason=reason,
                retry_after=retry_after,
            )
            if new is BreakerState.OPEN:
                _wake_when_open_ends(state.breaker)
            if self.sync is not None:
                self.sync.breaker_changed(state.name, new, state.breaker, reason)

        return on_transition

    def _health_hook(self, key: HealthKey) -> HealthTransition:
        def on_transition(old: HealthState, new: HealthState, reason: str) -> None:
            routes = sorted(key.routes)
            upstream = key.upstream
            what = f"model {key.model}" if key.model else f"endpoint {key.endpoint or '(default)'}"
            level = logging.WARNING if new is HealthState.UNHEALTHY else logging.INFO
            log.log(
                level,
                "health of route%s %s (%s on upstream %s): %s -> %s (%s)",
                "s" if len(routes) > 1 else "",
                ", ".join(routes),
                what,
                upstream.name,
                old,
                new,
                reason,
            )
            self.events.publish(
                "health",
                upstream=upstream.name,
                model=key.model,
                endpoint=key.endpoint,
                routes=routes,
                old=str(old),
                new=str(new),
                reason=reason,
            )
            if self.sync is not None:
                self.sync.health_changed(upstream.name, key.model or key.endpoint, new, reason)
            if old is HealthState.UNHEALTHY and new is HealthState.HEALTHY:
                upstream.breaker.end_open_period(f"active health check passed again ({reason})")

        return on_transition


def _wake_when_open_ends(breaker: CircuitBreaker) -> None:
    """Look at an open breaker again when its open period ends, so `open -> half_open` is published then.

    The breaker only changes state when observed; without this, `/events` would report half_open at the
    next request rather than when it happened. Looking is harmless if it re-opened or closed meanwhile.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no loop (a unit test driving the registry by hand): nothing to schedule
        return

    def look() -> None:
        if breaker.state is BreakerState.OPEN and breaker.retry_after() > 0:
            loop.call_later(breaker.retry_after() + _TIMER_SLACK, look)

    loop.call_later(breaker.retry_after() + _TIMER_SLACK, look)
