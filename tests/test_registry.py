"""The registry and the route table in process: state per named upstream, reuse across reloads, two phases.

No sockets: tables are built against a registry plan and committed by hand, as the runtime does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from router.config import RouterConfig, load_config_text
from router.events import EventBus
from router.policies import BreakerState
from router.registry import Registry
from router.table import RouteTable, build_table
from tests.support.router_server import table

SERVER = "http://127.0.0.1:9/v1"


def config(
    upstreams: dict[str, Any], routes: list[dict[str, Any]] | None = None, **defaults: Any
) -> RouterConfig:
    routes = routes or [{"path": f"/chat/{name}", "model": "m", "upstream": name} for name in upstreams]
    return load_config_text(table(upstreams, routes, defaults=defaults or None), "t.yaml", env={})


def two_names(brk: dict[str, Any] | None = None, slow: dict[str, Any] | None = None) -> RouterConfig:
    """Two named upstreams on one server, alike in everything the pool depends on."""
    return config(
        {
            "brk": {"type": "openai", "base_url": SERVER, **(brk or {})},
            "slow": {"type": "openai", "base_url": SERVER, **(slow or {})},
        }
    )


def install(registry: Registry, cfg: RouterConfig) -> RouteTable:
    """Build, open and commit a table version, as `Runtime` does around its swap."""
    plan = registry.plan()
    built = build_table(cfg, plan)
    plan.open()
    registry.commit(plan)
    return built


def state(built: RouteTable, name: str) -> Any:
    return next(r.upstream for route in built.routes for r in route.replicas if r.name == name)


def fail(breaker: Any, times: int) -> None:
    for _ in range(times):
        permit = breaker.try_acquire()
        assert permit is not None
        permit.failure()


async def test_two_names_on_one_server_keep_their_own_breaker_and_limiter() -> None:
    registry = Registry(EventBus())
    built = install(
        registry,
        two_names({"circuit_breaker": {"failure_threshold": 3, "open_seconds": 2}}, {"max_concurrency": 1}),
    )
    brk, slow = state(built, "brk"), state(built, "slow")
    assert brk is not slow and brk.breaker is not slow.breaker and brk.limiter is not slow.limiter
    assert brk.pool is slow.pool, "one server, one connection pool"
    assert brk.breaker.policy.failure_threshold == 3 and slow.breaker.policy.failure_threshold == 5
    assert brk.limiter.max_concurrency is None and slow.limiter.max_concurrency == 1
    fail(brk.breaker, 3)
    assert brk.breaker.state is BreakerState.OPEN
    assert slow.breaker.state is BreakerState.CLOSED
    await registry.close()


async def test_a_reload_keeps_state_and_changes_only_the_upstream_whose_policy_changed() -> None:
    registry = Registry(EventBus())
    first = install(
        registry, two_names({"circuit_breaker": {"failure_threshold": 3}}, {"max_concurrency": 1})
    )
    brk, slow = state(first, "brk"), state(first, "slow")
    brk_limiter, slow_limiter, pool = brk.limiter, slow.limiter, brk.pool
    fail(slow.breaker, 2)  # history that must survive the reload
    second = install(
        registry, two_names({"circuit_breaker": {"failure_threshold": 3}}, {"max_concurrency": 2})
    )
    assert state(second, "brk") is brk and state(second, "slow") is slow, "same name and server: kept"
    assert brk.pool is pool and slow.pool is pool and not pool.retired
    assert brk.limiter is brk_limiter, "brk's settings did not change"
    assert slow.limiter is not slow_limiter and slow.limiter.max_concurrency == 2
    assert brk.breaker.policy.failure_threshold == 3 and slow.breaker.policy.failure_threshold == 5
    assert slow.breaker.snapshot().consecutive_failures == 2
    await registry.close()


async def test_a_plan_changes_nothing_until_it_is_committed() -> None:
    registry = Registry(EventBus())
    first = install(registry, two_names({"circuit_breaker": {"failure_threshold": 3}}))
    brk = state(first, "brk")
    plan = registry.plan()
    build_table(two_names({"circuit_breaker": {"failure_threshold": 9}, "max_concurrency": 4}), plan)
    assert brk.breaker.policy.failure_threshold == 3 and brk.limiter.max_concurrency is None
    assert registry.upstreams[brk.key] is brk
    await plan.discard()
    assert not brk.pool.retired
    await registry.close()


async def test_a_removed_upstreams_pool_closes_after_its_last_request() -> None:
    registry = Registry(EventBus())
    other = "http://127.0.0.1:8/v1"
    first = install(
        registry,
        config({"a": {"type": "openai", "base_url": SERVER}, "b": {"type": "openai", "base_url": other}}),
    )
    gone = state(first, "b")
    gone.in_flight += 1  # a request still running on the old table
    install(registry, config({"a": {"type": "openai", "base_url": SERVER}}))
    assert gone.retired
    await asyncio.sleep(0)
    assert not gone.adapter.session.closed, "closed under a running request"
    registry.release(gone)
    for _ in range(10):
        await asyncio.sleep(0)
    assert gone.adapter.session.closed
    await registry.close()


async def test_a_renamed_upstream_keeps_the_pool_but_gets_a_fresh_breaker() -> None:
    registry = Registry(EventBus())
    old = state(install(registry, config({"a": {"type": "openai", "base_url": SERVER}})), "a")
    fail(old.breaker, 5)
    new = state(install(registry, config({"z": {"type": "openai", "base_url": SERVER}})), "z")
    assert new.pool is old.pool and not new.pool.retired
    assert new.breaker.state is BreakerState.CLOSED
    await registry.close()


async def test_health_trackers_are_per_named_upstream_and_kept_across_reloads() -> None:
    registry = Registry(EventBus())
    health = {"health_check": {"enabled": True, "interval": 30}}
    first = install(
        registry,
        config(
            {"a": {"type": "openai", "base_url": SERVER}, "b": {"type": "openai", "base_url": SERVER}},
            **health,
        ),
    )
    trackers = {r.name: r.health for route in first.routes for r in route.replicas}
    assert trackers["a"] is not trackers["b"]
    health["health_check"]["interval"] = 60
    second = install(
        registry,
        config(
            {"a": {"type": "openai", "base_url": SERVER}, "b": {"type": "openai", "base_url": SERVER}},
            **health,
        ),
    )
    again = {r.name: r.health for route in second.routes for r in route.replicas}
    assert again == trackers and again["a"] is not None and again["a"].policy.interval == 60
    assert len(registry.health_checks()) == 2
    await registry.close()
