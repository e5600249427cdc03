"""Live state that must outlive a single routing table: pools, breakers, limiters, health.

Route tables come and go with reloads. Like Caddy, state that outlives a config is shared by identity
while each config's upstream keeps its own settings:

- a `Pool` (one adapter, one connection pool) belongs to a server identity (type, address, key,
  headers, pool size) and is shared by every named upstream with that identity;
- an `UpstreamState` (breaker, limiter, their policies) belongs to one *named* upstream on one identity,
  so two names on one server never share a breaker or a limit, and a reload that changes one upstream's
  policy changes only that upstream;
- a `HealthKey` with its tracker belongs to one (named upstream, model or endpoint) question.

A reload goes through a `RegistryPlan`: everything the new table needs is prepared as values, without
touching what serves (that part may run off the event loop), then `commit` applies it in one synchronous
step right after the swap, or `discard` throws it away if the table could not be built. The registry knows
nothing of routes' internals.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Protocol

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


class TransitionSink(Protocol):
    """Who else hears of breaker and health transitions: the shared state (`router.state.sync`), which
    tells the other processes. A narrow interface, so the registry knows nothing of how it is shared."""

    def breaker_changed(self, upstream: str, new: BreakerState, breaker: CircuitBreaker, reason: str) -> None:
        """A breaker of this process changed state."""

    def health_changed(self, upstream: str, what: str | None, new: HealthState, reason: str) -> None:
        """A health verdict of this process changed (`what`: the model or endpoint probed)."""


_TIMER_SLACK = 0.005  # event-loop timers may fire a hair early; look just after the open period ends

UpstreamKey = tuple[str, Hashable]
"""(name, identity): what must stay equal for a reload to keep a named upstream's breaker and limiter."""


class Pool:
    """One server's adapter and connection pool, shared by the named upstreams that reach it alike.

    Made without its adapter (an aiohttp session belongs to the event loop, and a plan may be prepared in
    a thread); `open` creates it on the loop before the table using it is swapped in. `in_flight` lets a
    pool no table uses any more close only after its last request.
    """

    __slots__ = ("_adapter", "config", "identity", "in_flight", "retired")

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self.identity: Hashable = config.identity()
        self._adapter: UpstreamAdapter | None = None
        self.in_flight = 0
        self.retired = False

    @property
    def adapter(self) -> UpstreamAdapter:
        """The adapter (only a pool that was opened is ever served)."""
        assert self._adapter is not None, "a pool is opened before its table is served"
        return self._adapter

    @property
    def opened(self) -> bool:
        """Whether `open` created the adapter."""
        return self._adapter is not None

    def open(self) -> None:
        """Create the adapter and its connection pool (call inside the event loop)."""
        if self._adapter is None:
            self._adapter = build_adapter(self.config)

    async def close(self) -> None:
        """Close the connection pool, if it was ever opened."""
        if self._adapter is not None:
            await self._adapter.close()


class UpstreamState:
    """One named upstream's live objects: its own breaker and limiter, over a pool it may share."""

    __slots__ = ("breaker", "config", "key", "limiter", "pool")

    def __init__(
        self, config: UpstreamConfig, pool: Pool, breaker: CircuitBreaker, limiter: ConcurrencyLimiter
    ) -> None:
        self.config = config
        self.key: UpstreamKey = (config.name, pool.identity)
        self.pool = pool
        self.breaker = breaker
        self.limiter = limiter

    @property
    def name(self) -> str:
        """The upstream's name in the table."""
        return self.config.name

    @property
    def adapter(self) -> UpstreamAdapter:
        """The adapter of the pool this upstream uses."""
        return self.pool.adapter

    @property
    def in_flight(self) -> int:
        """Requests on this upstream's pool (shared with the other names of the same server)."""
        return self.pool.in_flight

    @in_flight.setter
    def in_flight(self, value: int) -> None:
        self.pool.in_flight = value

    @property
    def retired(self) -> bool:
        """Whether no served table uses this upstream's pool any more."""
        return self.pool.retired


@dataclass(eq=False)
class HealthKey:
    """Which probe answers a health question: one named upstream, one model (or a plain endpoint)."""

    upstream: UpstreamState
    model: str | None
    endpoint: str | None
    routes: set[str] = field(default_factory=set)


HealthCheck = tuple[HealthKey, HealthTracker]


@dataclass(frozen=True, slots=True)
class _PolicyChange:
    """A reused upstream's new settings, applied at commit: the breaker's policy, maybe a new limiter."""

    state: UpstreamState
    config: UpstreamConfig
    limiter: ConcurrencyLimiter | None


class RegistryPlan:
    """The registry's part of one table version, prepared without changing anything that serves.

    `upstream` and `health` answer the table builder with reused or new state; policy changes of reused
    state are kept as values until `Registry.commit`. Preparing is safe off the event loop; `open` (new
    pools), `commit` and `discard` run on it.
    """

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self.upstreams: dict[str, UpstreamState] = {}
        self.pools: dict[Hashable, Pool] = {}
        self.changes: list[_PolicyChange] = []
        self.checks: dict[Hashable, HealthCheck] = {}
        self.health_routes: dict[HealthKey, set[str]] = {}
        self.health_policies: list[tuple[HealthTracker, HealthCheckPolicy]] = []

    def upstream(self, config: UpstreamConfig) -> UpstreamState:
        """The state the new table uses for the upstream `config` names: kept when name and identity are."""
        state = self.upstreams.get(config.name)
        if state is not None:
            return state
        registry = self._registry
        identity = config.identity()
        pool = self.pools.get(identity) or registry.pools.get(identity) or Pool(config)
        self.pools[identity] = pool
        state = registry.upstreams.get((config.name, identity))
        if state is None:
            state = registry.new_upstream(config, pool)
        elif state.config != config:
            limiter = state.limiter
            wanted = (config.max_concurrency, config.max_queue, config.queue_timeout)
            same = (limiter.max_concurrency, limiter.max_queue, limiter.queue_timeout) == wanted
            self.changes.append(_PolicyChange(state, config, None if same else _limiter(config)))
        self.upstreams[config.name] = state
        return state

    def health(
        self, upstream: UpstreamState, model: str | None, policy: HealthCheckPolicy, route_path: str
    ) -> HealthCheck:
        """The health tracker for (upstream, model or endpoint); routes asking the same question share it."""
        model_key = None if policy.endpoint else model
        key = (upstream.key, model_key, policy.endpoint)
        found = self.checks.get(key)
        if found is None:
            found = self._registry.checks.get(key)
            if found is None or found[0].upstream is not upstream:
                found = self._registry.new_health(upstream, model_key, policy)
            self.checks[key] = found
        if found[1].policy != policy:
            self.health_policies.append((found[1], policy))
        self.health_routes.setdefault(found[0], set()).add(route_path)
        return found

    def open(self) -> None:
        """Open the pools this version adds (call inside the event loop, before the swap)."""
        for pool in self.pools.values():
            pool.open()

    async def discard(self) -> None:
        """Close what `open` created for a version that will never be served."""
        served = {id(pool) for pool in self._registry.pools.values()}
        for pool in self.pools.values():
            if id(pool) not in served:
                await pool.close()


class Registry:
    """Creates, reuses and retires upstream state across table versions."""

    def __init__(self, events: EventBus) -> None:
        self.events = events
        self.pools: dict[Hashable, Pool] = {}
        self.upstreams: dict[UpstreamKey, UpstreamState] = {}
        self.checks: dict[Hashable, HealthCheck] = {}
        self.sync: TransitionSink | None = None  # shares transitions with other processes (router.state)

    def plan(self) -> RegistryPlan:
        """A fresh plan for the next table version."""
        return RegistryPlan(self)

    def commit(self, plan: RegistryPlan) -> None:
        """Make `plan` the registry's state (call right after the swap, in the same loop turn).

        Applies the planned policy changes, forgets what the new table no longer uses, and retires pools
        no named upstream uses any more: each closes once its last request ends.
        """
        for change in plan.changes:
            change.state.breaker.policy = change.config.circuit_breaker
            if change.limiter is not None:
                change.state.limiter = change.limiter
            change.state.config = change.config
        for tracker, policy in plan.health_policies:
            tracker.policy = policy
        for health_key, routes in plan.health_routes.items():
            health_key.routes = routes
        old_pools = self.pools
        self.pools = dict(plan.pools)
        self.upstreams = {state.key: state for state in plan.upstreams.values()}
        self.checks = dict(plan.checks)
        kept = {id(pool) for pool in self.pools.values()}
        for pool in old_pools.values():
            if id(pool) not in kept:
                pool.retired = True
                if pool.in_flight == 0:
                    _close_soon(pool)

    def health_checks(self) -> list[HealthCheck]:
        """Every health question currently asked, for the prober."""
        return list(self.checks.values())

    def release(self, upstream: UpstreamState) -> None:
        """One request on `upstream` ended; closes a retired pool when it was the last."""
        pool = upstream.pool
        pool.in_flight -= 1
        if pool.retired and pool.in_flight == 0:
            _close_soon(pool)

    async def close(self) -> None:
        """Close every pool (shutdown)."""
        for pool in self.pools.values():
            await pool.close()
        self.pools.clear()
        self.upstreams.clear()
        self.checks.clear()

    def new_upstream(self, config: UpstreamConfig, pool: Pool) -> UpstreamState:
        """A named upstream's fresh breaker and limiter over `pool` (the seam for shared breaker state)."""
        holder: list[UpstreamState] = []  # the breaker's hook needs the state the breaker goes into
        breaker = CircuitBreaker(config.circuit_breaker, on_transition=self._breaker_hook(holder))
        state = UpstreamState(config, pool, breaker, _limiter(config))
        holder.append(state)
        return state

    def new_health(
        self, upstream: UpstreamState, model: str | None, policy: HealthCheckPolicy
    ) -> HealthCheck:
        """A fresh tracker for one health question (the seam for shared health state)."""
        health_key = HealthKey(upstream=upstream, model=model, endpoint=policy.endpoint)
        return health_key, HealthTracker(policy, on_transition=self._health_hook(health_key))

    def _breaker_hook(self, holder: list[UpstreamState]) -> BreakerTransition:
        def on_transition(old: BreakerState, new: BreakerState, reason: str) -> None:
            state = holder[0]
            self.events.publish(
                "breaker",
                message=f"circuit breaker of upstream {state.name}: {old} -> {new} ({reason})",
                upstream=state.name,
                old=str(old),
                new=str(new),
                reason=reason,
                retry_after=round(state.breaker.retry_after(), 3),
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
            plural = "s" if len(routes) > 1 else ""
            self.events.publish(
                "health",
                message=f"health of route{plural} {', '.join(routes)} ({what} on upstream {upstream.name}): "
                f"{old} -> {new} ({reason})",
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


def _limiter(config: UpstreamConfig) -> ConcurrencyLimiter:
    return ConcurrencyLimiter(config.max_concurrency, config.max_queue, config.queue_timeout)


def _close_soon(pool: Pool) -> None:
    """Close a retired pool from a task; without a loop (shutdown already ran) there is nothing to close."""
    with contextlib.suppress(RuntimeError):
        asyncio.get_running_loop().create_task(pool.close())


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
