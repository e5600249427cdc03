"""From a route and a request to an upstream answer: pick a replica, respect the policies, retry, fail over.

The order of one attempt is: choose an available replica (health and breaker agree, least in-flight
weighted) -> take a concurrency slot (bounded queue, else 429) -> ask the breaker for a permit -> call the
adapter. Failures before the answer starts are retried with full-jitter backoff (only those that may
help: connect errors, resets, 5xx, garbage), then the route's fallbacks are tried, those the caller may
use only (a key limited to some routes must not be served by another one through a fallback). Nothing is
retried once a byte reached the client; that is the streaming relay's side of the contract.

What an attempt holds (in-flight count, slot, permit) travels with the answer as a `Lease`, because a
streamed answer keeps occupying the upstream until its last chunk; so does the attempt's span, when the
request is traced (`Trace`: None when tracing is off, and then dispatch makes no tracing call at all).
The time spent waiting on upstreams (slot, backoff, attempts) is added to `Tally.upstream_wait`: what is
left of a request's time is the router's own overhead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Set
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from router.errors import Overloaded, RouterError, RouteUnavailable
from router.policies import InFlight, Permit, QueueFull, Slot, backoff_delays, choose, clamp_max_tokens
from router.protocol.openai_chat import ChatRequest
from router.registry import Registry
from router.table import Route, RouteReplica
from router.upstreams.base import ChatCall, Limits, UpstreamAdapter
from router.upstreams.errors import UpstreamError

T = TypeVar("T")
Attempt = Callable[[UpstreamAdapter, ChatCall, Limits], Awaitable[T]]


class Tally(Protocol):
    """Where dispatch counts its retries (the request record): errors stay as they were raised."""

    retries: int
    upstream_wait: float


class SpanEnd(Protocol):
    """A child span of the request, ended once with the outcome (None: success)."""

    def end(self, error: BaseException | None) -> None: ...


class Trace(Protocol):
    """The spans of one traced request (`router.observability.tracing.RequestTrace`)."""

    def queue_wait(self, replica: RouteReplica) -> SpanEnd: ...

    def attempt(
        self, route: Route, replica: RouteReplica, number: int, fallback: bool, call: ChatCall
    ) -> SpanEnd: ...


@dataclass(slots=True)
class Lease:
    """What one answer occupies until it ends; its owner calls `finish` once, with the outcome."""

    route: Route
    replica: RouteReplica
    registry: Registry
    in_flight: InFlight
    slot: Slot
    permit: Permit
    span: SpanEnd | None = None  # the attempt's client span, when the request is traced

    @property
    def upstream_name(self) -> str:
        """The upstream that served the answer (the `X-Router-Upstream` header), as the route names it."""
        return self.replica.name

    def finish(self, error: BaseException | None) -> None:
        """Free everything; the breaker learns of upstream faults only, never of client cancellations."""
        if error is None:
            self.permit.success()
        elif isinstance(error, UpstreamError) and error.upstream_fault:
            self.permit.failure()
        else:
            self.permit.release()
        self.slot.release()
        self.in_flight.release()
        self.registry.release(self.replica.upstream)
        if self.span is not None:
            self.span.end(error)


def bind(
    route: Route, request: ChatRequest, body: dict[str, Any], request_id: str, collect_text: bool = False
) -> ChatCall:
    """The request as this route will send it: its model, its options, its token cap."""
    requested = request.max_completion_tokens or request.max_tokens
    options = request.stream_options
    return ChatCall(
        body=body,
        model=route.model,
        stream=request.stream,
        max_tokens=clamp_max_tokens(requested, route.config.policy.max_tokens),
        include_usage=bool(options and options.include_usage),
        options=route.options,
        request_id=request_id,
        collect_text=collect_text,
    )


async def dispatch(
    route: Route,
    request: ChatRequest,
    body: dict[str, Any],
    request_id: str,
    registry: Registry,
    attempt: Attempt[T],
    tally: Tally,
    allowed: Set[str] | None = None,
    collect_text: bool = False,
    trace: Trace | None = None,
    never: Callable[[Route], Collection[str]] | None = None,
) -> tuple[T, Lease]:
    """Run `attempt` on the best replica of `route` or of its fallbacks; raise the most telling error.

    `allowed` holds the route paths the caller may use (None: all); fallbacks outside it are skipped.
    Every retry is counted in `tally.retries`, whether the request succeeds in the end or not. `never`
    names, per candidate route, replicas that must not be picked at all (a resumed stream's: the ones
    that broke, and those that cannot continue an answer; `router.resume`).
    """
    last_error: RouterError | None = None
    for candidate in route.candidates():
        if allowed is not None and candidate is not route and candidate.path not in allowed:
            continue
        call = bind(candidate, request, body, request_id, collect_text)
        policy = candidate.config.policy
        delays = None  # made on the first retry: most requests never need one
        tried: list[str] = []
        barred = () if never is None else never(candidate)
        for attempt_number in range(policy.max_retries + 1):
            replica = _pick(candidate, tried, last_error, barred)
            if replica is None:
                last_error = last_error or _unavailable(candidate)
                break
            began = time.perf_counter()
            if attempt_number:
                tally.retries += 1
                if delays is None:
                    delays = backoff_delays(
                        policy.max_retries, policy.retry_backoff, policy.retry_backoff_max
                    )
                await asyncio.sleep(next(delays))
            lease = await _lease(candidate, replica, registry, trace)
            if lease is None:  # its breaker refused while we waited for a slot: as if it was unavailable
                tally.upstream_wait += time.perf_counter() - began
                last_error = last_error or _unavailable(candidate)
                tried.append(replica.name)
                continue
            if trace is not None:
                lease.span = trace.attempt(candidate, replica, attempt_number, candidate is not route, call)
            try:
                result = await attempt(replica.upstream.adapter, call, candidate.limits)
            except UpstreamError as error:
                tally.upstream_wait += time.perf_counter() - began
                lease.finish(error)
                if not error.upstream_fault:
                    raise  # the request itself was refused (4xx, 429): another try would fare no better
                last_error = error
                tried.append(replica.name)
                continue
            except BaseException as error:
                tally.upstream_wait += time.perf_counter() - began
                lease.finish(error)
                raise
            tally.upstream_wait += time.perf_counter() - began
            return result, lease
    assert last_error is not None
    raise last_error


def _pick(
    route: Route, tried: list[str], last_error: RouterError | None, barred: Collection[str] = ()
) -> RouteReplica | None:
    """A replica not tried yet; a retryable failure may go back to one already tried if none is left.

    `barred` replicas are never picked, tried or not.
    """
    replica = choose(route.replicas, exclude=[*tried, *barred] if barred else tried)
    if replica is None and tried and isinstance(last_error, UpstreamError) and last_error.retryable:
        replica = choose(route.replicas, exclude=barred)
    return replica  # type: ignore[return-value]


async def _lease(
    route: Route, replica: RouteReplica, registry: Registry, trace: Trace | None = None
) -> Lease | None:
    """Occupy the replica: in-flight count first (so concurrent picks see it), then slot, then permit.

    None when the breaker refuses the permit: the slot wait may have outlasted the breaker's verdict
    (another request opened it, or took the last half-open trial), and that is the caller's cue to try
    elsewhere rather than an error of its own.
    """
    upstream = replica.upstream
    in_flight = replica.track()
    upstream.in_flight += 1
    queue = None  # a span for the slot wait, when traced and the upstream has a concurrency limit
    if trace is not None and upstream.limiter.max_concurrency is not None:
        queue = trace.queue_wait(replica)
    try:
        slot = await upstream.limiter.acquire()
    except BaseException as error:
        if queue is not None:
            queue.end(error)
        in_flight.release()
        registry.release(upstream)
        if isinstance(error, QueueFull):
            raise Overloaded(
                f"route {route.path}: upstream {replica.name!r} is at its concurrency limit: {error}",
                retry_after=error.retry_after,
            ) from None
        raise
    if queue is not None:
        queue.end(None)
    permit = upstream.breaker.try_acquire()
    if permit is None:
        slot.release()
        in_flight.release()
        registry.release(upstream)
        return None
    return Lease(
        route=route, replica=replica, registry=registry, in_flight=in_flight, slot=slot, permit=permit
    )


def _unavailable(route: Route) -> RouteUnavailable:
    """503 naming why no replica can take traffic, with the soonest time worth coming back."""
    reasons, waits = [], []
    for replica in route.replicas:
        upstream = replica.upstream
        if replica.health is not None and not replica.health.accepts_traffic:
            snap = replica.health.snapshot()
            reasons.append(f"{replica.name}: unhealthy ({snap.last_error or 'failing health checks'})")
            waits.append(replica.health.policy.recovery_interval * replica.health.policy.recovery_threshold)
        elif upstream.breaker.retry_after() > 0:
            wait = upstream.breaker.retry_after()
            reasons.append(f"{replica.name}: circuit breaker open for {wait:.1f}s more")
            waits.append(wait)
        else:
            reasons.append(f"{replica.name}: circuit breaker half-open, its trial requests are under way")
            waits.append(1.0)
    return RouteUnavailable(
        f"route {route.path} (model {route.model}) is unavailable: " + "; ".join(reasons),
        retry_after=max(1.0, min(waits, default=1.0)),
    )
