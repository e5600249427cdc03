"""What operators and the chat page see of the router's state: `/status` (a snapshot) and `/events` (changes).

Both describe the live table: per route its replicas with health, breaker and load; and the config
version. `/events` is a Server-Sent Events stream that starts with a full snapshot, then sends every
health, breaker and reload event as it happens, so an open page learns "qwen3 is back" without polling.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Request, get
from litestar.handlers import HTTPRouteHandler
from litestar.response.base import ASGIResponse
from litestar.types import ASGIApp

from router.security import Access, OpenAccess, public_url
from router.streaming import KEEPALIVE, SSE_HEADERS, SSEStreamBody
from router.table import Route, RouteReplica

if TYPE_CHECKING:
    from router.runtime import Runtime

_EVENTS_HEARTBEAT = 15.0


def replica_status(replica: RouteReplica) -> dict[str, Any]:
    """One replica: its health for this model, its upstream's breaker and load."""
    upstream = replica.upstream
    breaker = upstream.breaker.snapshot()
    health = replica.health.snapshot() if replica.health else None
    return {
        "upstream": replica.name,
        "type": upstream.config.type,
        "base_url": public_url(upstream.config.base_url),
        "weight": replica.weight,
        "available": replica.available,
        "health": None
        if health is None
        else {
            "state": str(health.state),
            "consecutive_successes": health.consecutive_successes,
            "consecutive_failures": health.consecutive_failures,
            "last_probe_at": health.last_probe_at,
            "last_latency_ms": None if health.last_latency is None else round(health.last_latency * 1000, 2),
            "last_error": health.last_error,
            "changed_at": health.changed_at,
        },
        "breaker": {
            "state": str(breaker.state),
            "consecutive_failures": breaker.consecutive_failures,
            "retry_after": round(breaker.retry_after, 3),  # seconds left in the open period
            "trials_in_flight": breaker.trials_in_flight,
        },
        "in_flight": replica.in_flight,
        "upstream_in_flight": upstream.limiter.in_flight,
        "queued": upstream.limiter.queued,
    }


def route_status(route: Route) -> dict[str, Any]:
    """One route, summarised for a dashboard: `state` is the worst news a user needs."""
    replicas = [replica_status(r) for r in route.replicas]
    if any(r["available"] for r in replicas):
        healths = {r["health"]["state"] for r in replicas if r["health"]}
        state = "healthy" if healths <= {"healthy"} else ("initial" if "initial" in healths else "degraded")
    else:
        state = "unavailable"
    return {
        "path": route.path,
        "name": route.name,
        "model": route.model,
        "state": state,
        "fallbacks": [f.path for f in route.fallbacks],
        "replicas": replicas,
    }


def snapshot(runtime: Runtime) -> dict[str, Any]:
    """The whole `/status` document."""
    loaded = runtime.current
    assert loaded is not None
    config = loaded.table.config
    return {
        "config": {
            "version": config.version,
            "source": config.source,
            "sha256": config.sha256,
            "loaded_at": loaded.loaded_at,
            **runtime.reload_status(),
        },
        "started_at": runtime.started_at,
        "routes": [route_status(r) for r in loaded.table.routes],
        "sessions": runtime.sessions.counts(),
        "state": runtime.state.status(),
    }


def debug_snapshot(runtime: Runtime) -> dict[str, Any]:
    """`/status` plus the machinery behind it: the shared probe loops and who listens to `/events`."""
    return {
        **snapshot(runtime),
        "probe_loops": runtime.prober.loops(),
        "event_subscribers": runtime.events.subscriber_count,
    }


def status_handlers(runtime: Runtime, access: Access | None = None) -> list[HTTPRouteHandler]:
    """`/status`, `/debug` (the same and more) and `/events`, readable as `access.check_status` allows."""
    check = (access or OpenAccess()).check_status

    @get("/status", operation_id="status", tags=["ops"], summary="Routes, health, breakers, load")
    async def status(request: Request[Any, Any, Any]) -> ASGIApp:
        check(request.scope["headers"])
        return ASGIResponse(body=msgspec.json.encode(snapshot(runtime)), media_type="application/json")

    @get("/debug", operation_id="debug", tags=["ops"], summary="/status plus probe loops and listeners")
    async def debug(request: Request[Any, Any, Any]) -> ASGIApp:
        check(request.scope["headers"])
        return ASGIResponse(body=msgspec.json.encode(debug_snapshot(runtime)), media_type="application/json")

    @get("/events", operation_id="events", tags=["ops"], summary="Server-Sent Events of state changes")
    async def events(request: Request[Any, Any, Any]) -> ASGIApp:
        check(request.scope["headers"])
        return SSEStreamBody(_event_stream(runtime), headers=SSE_HEADERS)

    return [status, debug, events]


async def _event_stream(runtime: Runtime) -> AsyncGenerator[bytes, None]:
    # Subscribe before the snapshot: a change made while the snapshot is on its way is then sent after
    # it, instead of falling between the two and leaving the page with a stale state.
    with runtime.events.subscription() as subscription:
        yield _sse("snapshot", snapshot(runtime))
        while True:
            try:
                async with asyncio.timeout(_EVENTS_HEARTBEAT):
                    event = await subscription.get()
            except TimeoutError:
                yield KEEPALIVE
                continue
            yield _sse(event["type"], event)


def _sse(kind: str, data: Any) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + msgspec.json.encode(data) + b"\n\n"
