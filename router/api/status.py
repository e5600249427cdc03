"""What operators and the chat page see of the router's state: `/status` (a snapshot) and `/events` (changes).

Both describe the live table: per route its replicas with health, breaker and load; and the config
version. `/events` is a Server-Sent Events stream that starts with a full snapshot, then sends every
health, breaker and reload event as it happens, so an open page learns "qwen3 is back" without polling.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any, Protocol

import msgspec
from litestar import Request, get
from litestar.handlers import HTTPRouteHandler
from litestar.response.base import ASGIResponse
from litestar.types import ASGIApp

from router.errors import RouterError
from router.events import EventBus, Subscription
from router.security import Access, OpenAccess, Redactor, public_url
from router.streaming import KEEPALIVE, SSE_HEADERS, SSEStreamBody
from router.table import Route, RouteReplica, RouteTable

_EVENTS_HEARTBEAT = 15.0


class StatusSource(Protocol):
    """What `/status`, `/debug` and `/events` read of the running router, and nothing more."""

    @property
    def started_at(self) -> float:
        """When the process started (epoch seconds)."""

    @property
    def events(self) -> EventBus:
        """The bus `/events` listens to."""

    def served(self) -> tuple[RouteTable, float]:
        """The table being served and when it went live."""

    def reload_status(self) -> dict[str, Any]:
        """How the last reload went."""

    def session_counts(self) -> dict[str, Any]:
        """Sessions in use and their bounds."""

    def probe_loops(self) -> list[dict[str, Any]]:
        """The probe loops running now."""

    def state_status(self) -> dict[str, Any]:
        """Whether the shared state backend (`state:`) is reachable, and what it shares."""

    @property
    def redactor(self) -> Redactor:
        """Masks every known secret: the documents quote text upstreams wrote."""


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


def snapshot(source: StatusSource) -> dict[str, Any]:
    """The whole `/status` document, with every known secret masked.

    It quotes text the upstreams wrote (a probe's error may echo the request's credential headers) and
    may be readable by anyone (`auth.public_status`), so the whole document goes through the redactor.
    """
    return source.redactor.value(_snapshot(source))  # type: ignore[no-any-return]


def _snapshot(source: StatusSource) -> dict[str, Any]:
    table, loaded_at = source.served()
    config = table.config
    return {
        "config": {
            "version": config.version,
            "source": config.source,
            "sha256": config.sha256,
            "loaded_at": loaded_at,
            **source.reload_status(),
        },
        "started_at": source.started_at,
        "routes": [route_status(r) for r in table.routes],
        "sessions": source.session_counts(),
        "state": source.state_status(),
    }


def debug_snapshot(source: StatusSource) -> dict[str, Any]:
    """`/status` plus the machinery behind it: the shared probe loops and who listens to `/events`."""
    document = {
        **_snapshot(source),
        "probe_loops": source.probe_loops(),
        "event_subscribers": source.events.subscriber_count,
    }
    return source.redactor.value(document)  # type: ignore[no-any-return]


def status_handlers(source: StatusSource, access: Access | None = None) -> list[HTTPRouteHandler]:
    """`/status`, `/debug` (the same and more) and `/events` of `source`, readable as `access.check_status`
    allows."""
    check = (access or OpenAccess()).check_status

    @get("/status", operation_id="status", tags=["ops"], summary="Routes, health, breakers, load")
    async def status(request: Request[Any, Any, Any]) -> ASGIApp:
        check(request.scope["headers"])
        return ASGIResponse(body=msgspec.json.encode(snapshot(source)), media_type="application/json")

    @get("/debug", operation_id="debug", tags=["ops"], summary="/status plus probe loops and listeners")
    async def debug(request: Request[Any, Any, Any]) -> ASGIApp:
        check(request.scope["headers"])
        return ASGIResponse(body=msgspec.json.encode(debug_snapshot(source)), media_type="application/json")

    @get("/events", operation_id="events", tags=["ops"], summary="Server-Sent Events of state changes")
    async def events(request: Request[Any, Any, Any]) -> ASGIApp:
        check(request.scope["headers"])
        return EventsResponse(source, subscribe(source))

    return [status, debug, events]


class TooManySubscribers(RouterError):
    """503: `/events` already has `server.max_event_subscribers` listeners."""

    status = 503
    type = "server_error"
    code = "too_many_event_subscribers"


EVENTS_RETRY_AFTER = 5.0
"""Seconds a refused `/events` listener is told to wait: listeners stay for long, a slot frees rarely."""


def subscribe(source: StatusSource) -> Subscription:
    """A listener registered now, or 503 past the cap: each one holds a queue and a connection for long.

    Checked and registered in one step, with no await between, so concurrent requests cannot overshoot.
    """
    limit = source.served()[0].config.server.max_event_subscribers
    if source.events.subscriber_count >= limit:
        raise TooManySubscribers(
            f"/events already has {limit} listeners (server.max_event_subscribers); close another page "
            "or dashboard that follows the router's events, or retry later",
            retry_after=EVENTS_RETRY_AFTER,
        )
    return source.events.subscription()


class EventsResponse(SSEStreamBody):
    """The `/events` stream of one listener, whose subscription ends with the response, however it ends.

    The generator's own cleanup does not run if it never started (the client left at once), so the
    response closes the subscription itself; closing is idempotent.
    """

    def __init__(self, source: StatusSource, subscription: Subscription) -> None:
        super().__init__(_event_stream(source, subscription), headers=SSE_HEADERS)
        self._subscription = subscription

    async def send_body(self, send: Any, receive: Any) -> None:
        """Send the events; then let go of the subscription."""
        try:
            await super().send_body(send, receive)
        finally:
            self._subscription.close()


async def _event_stream(source: StatusSource, subscription: Subscription) -> AsyncGenerator[bytes, None]:
    # Subscribed before the snapshot: a change made while the snapshot is on its way is then sent after
    # it, instead of falling between the two and leaving the page with a stale state.
    with subscription:
        yield _sse("snapshot", snapshot(source))
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
