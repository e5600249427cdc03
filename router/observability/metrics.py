"""Prometheus metrics: an observer for what requests did, a collector for what the table looks like now.

Counters and histograms are fed by finished request records. Their label values come from the route
table (route paths; the record's route is "-" when the request never resolved to a route), from the
router's own status codes and from `outcome_of`, never from client input, so an unknown path or model
adds no series. Label children are looked up once per route and per (route, status, outcome) and kept,
so a finished request costs a few dictionary hits and lock-protected increments.

Live state (in flight, queued, health, breakers) is not tracked incrementally: `LiveStateCollector`
reads it from the current table when Prometheus scrapes, so it can never drift from what `/status` says.
The registry is the runtime's own, not prometheus_client's global one, so tests and several runtimes in
one process never share series.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from router.observability.observer import Observer
from router.observability.record import RequestRecord
from router.policies import BreakerState

if TYPE_CHECKING:
    from router.table import RouteTable

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The Prometheus text format `generate_latest` writes."""

DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_BREAKER_STATES = tuple(str(state) for state in BreakerState)
_BOOL = {False: "false", True: "true"}


@dataclass(slots=True)
class _RouteSeries:
    """The label children of one route, created on first use and kept."""

    duration: Any
    ttft: Any
    prompt_tokens: Any
    completion_tokens: Any
    retries: Any
    cancellations: Any
    time_per_output_token: Any
    overhead: Any


class RouterMetrics(Observer):
    """The router's metrics and the observer that feeds them."""

    def __init__(self, table: Callable[[], RouteTable | None]) -> None:
        # `_created` series would double the exposition for a timestamp nobody graphs; the switch is
        # process-wide, and this process's only metrics are these.
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.requests = Counter(
            "router_requests",
            "Chat requests by route, status and outcome.",
            ["route", "status", "outcome"],
            registry=r,
        )
        self.duration = Histogram(
            "router_request_duration_seconds",
            "Seconds from a chat request's arrival to the end of its answer.",
            ["route"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "router_time_to_first_token_seconds",
            "Seconds from a streamed chat request's arrival to its first token.",
            ["route"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "router_prompt_tokens",
            "Prompt tokens (in) by route, estimates included (router_tokens_total has the detail).",
            ["route"],
            registry=r,
        )
        self.completion_tokens = Counter(
            "router_completion_tokens",
            "Completion tokens (out) by route, estimates included (router_tokens_total has the detail).",
            ["route"],
            registry=r,
        )
        self.tokens = Counter(
            "router_tokens",
            "Tokens by route, upstream, client key, client dialect, type (prompt or completion) and whether "
            "the figure is the router's estimate (the upstream reported none).",
            ["route", "upstream", "key", "dialect", "type", "estimated"],
            registry=r,
        )
        self.retries = Counter("router_retries", "Retries of upstream attempts.", ["route"], registry=r)
        self.cancellations = Counter(
            "router_client_cancellations",
            "Requests the client abandoned before the end.",
            ["route"],
            registry=r,
        )
        self.time_per_output_token = Histogram(
            "router_time_per_output_token_seconds",
            "Seconds per output token after the first, in complete streams whose upstream counted tokens:"
            " (end - first token) / (completion tokens - 1).",
            ["route"],
            buckets=TPOT_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "router_overhead_seconds",
            "Seconds the router itself added to a request that got an answer: its time minus the waits on"
            " upstreams (slot, retry backoff, attempts); to the end of a whole answer, to a stream's first"
            " byte.",
            ["route"],
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.reloads = Counter("router_config_reloads", "Reload attempts by result.", ["result"], registry=r)
        self.resumes = Counter(
            "router_stream_resumes",
            "Streams that broke after their answer started and went on on another upstream (router.resume),"
            " by route and cause: error (an error event or status mid-answer), reset (the connection died),"
            " stall (silent past stall_timeout), malformed (data that is not the protocol).",
            ["route", "cause"],
            registry=r,
        )
        self.resume_failures = Counter(
            "router_stream_resume_failures",
            "Broken streams of routes with resume on that found no upstream to continue them (they ended"
            " with the error event), by route and cause.",
            ["route", "cause"],
            registry=r,
        )
        self.last_reload_ok = Gauge(
            "router_config_last_reload_successful", "1 if the last reload attempt succeeded.", registry=r
        )
        self.last_reload_success = Gauge(
            "router_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful reload (or of start-up).",
            registry=r,
        )
        self.last_reload_ok.set(1)
        self.last_reload_success.set(time.time())
        for result in ("success", "failure"):
            self.reloads.labels(result)
        r.register(LiveStateCollector(table))
        self._series: dict[str, _RouteSeries] = {}
        self._requests: dict[tuple[str, int, str], Any] = {}
        self._tokens: dict[tuple[str, str, str | None, str, bool, bool], tuple[Any, Any]] = {}

    def prepare(self, table: RouteTable) -> None:
        """Create every route's series now, so they show (at zero) before the first request."""
        for route in table.routes:
            self._route(route.path)

    def _route(self, route: str) -> _RouteSeries:
        series = self._series.get(route)
        if series is None:
            series = _RouteSeries(
                duration=self.duration.labels(route),
                ttft=self.ttft.labels(route),
                prompt_tokens=self.prompt_tokens.labels(route),
                completion_tokens=self.completion_tokens.labels(route),
                retries=self.retries.labels(route),
                cancellations=self.cancellations.labels(route),
                time_per_output_token=self.time_per_output_token.labels(route),
                overhead=self.overhead.labels(route),
            )
            self._series[route] = series
        return series

    def request_finished(self, record: RequestRecord) -> None:
        route = record.route
        series = self._series.get(route) or self._route(route)
        key = (route, record.status, record.outcome)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = self.requests.labels(route, str(record.status), record.outcome)
        counter.inc()
        series.duration.observe(record.duration)
        ttft = record.ttft
        if ttft is not None:
            series.ttft.observe(ttft)
        if record.prompt_tokens or record.completion_tokens:
            self._count_tokens(record, series)
        if record.retries:
            series.retries.inc(record.retries)
        if record.outcome == "client_cancelled":
            series.cancellations.inc()
        overhead = record.overhead
        if overhead is not None:
            series.overhead.observe(overhead)
        per_token = record.time_per_output_token
        if per_token is not None:
            series.time_per_output_token.observe(per_token)

    def _count_tokens(self, record: RequestRecord, series: _RouteSeries) -> None:
        """`router_tokens_total` (and the older per-route totals, which include estimates too).

        Labels come from the table (route, upstream and key names) and the router's own dialect names,
        so series are bounded by routes x their upstreams x keys x dialects x 4.
        """
        key = (
            record.route,
            record.upstream,
            record.principal,
            record.dialect,
            record.prompt_estimated,
            record.completion_estimated,
        )
        children = self._tokens.get(key)
        if children is None:
            labels = (record.route, record.upstream, record.principal or "-", record.dialect)
            children = self._tokens[key] = (
                self.tokens.labels(*labels, "prompt", _BOOL[record.prompt_estimated]),
                self.tokens.labels(*labels, "completion", _BOOL[record.completion_estimated]),
            )
        if record.prompt_tokens:
            children[0].inc(record.prompt_tokens)
            series.prompt_tokens.inc(record.prompt_tokens)
        if record.completion_tokens:
            children[1].inc(record.completion_tokens)
            series.completion_tokens.inc(record.completion_tokens)

    def event(self, kind: str, fields: dict[str, Any]) -> None:
        """Count resumed streams (the `resume` events of `router.resume`); labels come from the table
        (the route's path) and the router's own cause names."""
        if kind == "resume":
            counter = self.resumes if fields.get("ok") else self.resume_failures
            counter.labels(str(fields.get("route")), str(fields.get("cause"))).inc()

    def reloaded(self, ok: bool, sha256: str, trigger: str) -> None:
        self.reloads.labels("success" if ok else "failure").inc()
        self.last_reload_ok.set(1 if ok else 0)
        if ok:
            self.last_reload_success.set(time.time())

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)


class LiveStateCollector(Collector):
    """Gauges of live state, read from the current table at scrape time."""

    def __init__(self, table: Callable[[], RouteTable | None]) -> None:
        self._table = table

    def collect(self) -> Iterator[Metric]:
        table = self._table()
        if table is None:
            return
        in_flight = GaugeMetricFamily(
            "router_in_flight_requests",
            "Chat requests being answered or waiting for a slot, by route.",
            labels=["route"],
        )
        queued = GaugeMetricFamily(
            "router_queued_requests",
            "Requests waiting for a concurrency slot on the route's upstreams (shared by routes on them).",
            labels=["route"],
        )
        healthy = GaugeMetricFamily(
            "router_upstream_healthy",
            "1 if the route's model passes its health checks on the upstream (or is not checked), else 0.",
            labels=["route", "upstream"],
        )
        available = GaugeMetricFamily(
            "router_route_available", "1 if some replica of the route can take traffic now.", labels=["route"]
        )
        breaker = GaugeMetricFamily(
            "router_circuit_breaker_state",
            "Circuit breaker state of each upstream: 1 for the current state, 0 for the others.",
            labels=["upstream", "state"],
        )
        upstream_in_flight = GaugeMetricFamily(
            "router_upstream_in_flight_requests",
            "Requests holding a slot on the upstream.",
            labels=["upstream"],
        )
        upstream_queued = GaugeMetricFamily(
            "router_upstream_queued_requests",
            "Requests waiting for a slot on the upstream.",
            labels=["upstream"],
        )
        for route in table.routes:
            path = route.path
            replicas = route.replicas
            in_flight.add_metric([path], sum(r.in_flight for r in replicas))
            upstreams = {id(r.upstream): r.upstream for r in replicas}.values()
            queued.add_metric([path], sum(u.limiter.queued for u in upstreams))
            for replica in replicas:
                health = replica.health
                healthy.add_metric(
                    [path, replica.name], 1.0 if health is None or health.accepts_traffic else 0.0
                )
            available.add_metric([path], 1.0 if any(r.available for r in replicas) else 0.0)
        for upstream in sorted(table.upstreams(), key=lambda u: u.name):
            state = str(upstream.breaker.state)
            for name in _BREAKER_STATES:
                breaker.add_metric([upstream.name, name], 1.0 if name == state else 0.0)
            upstream_in_flight.add_metric([upstream.name], upstream.limiter.in_flight)
            upstream_queued.add_metric([upstream.name], upstream.limiter.queued)
        config = GaugeMetricFamily(
            "router_config_info", "The routing table being served (its SHA-256).", labels=["sha256"]
        )
        config.add_metric([table.config.sha256], 1.0)
        routes = GaugeMetricFamily("router_routes", "Routes in the table being served.", len(table.routes))
        yield from (in_flight, queued, healthy, available, breaker, upstream_in_flight, upstream_queued)
        yield from (config, routes)
