"""Prometheus metrics: an observer for what requests did, a collector for what the table looks like now.

Counters and histograms are fed by finished request records. Their label values come from the route
table (route paths; the record's route is "-" when the request never resolved to a route), from the
router's own status codes and from `outcome_of`, never from client input, so an unknown path or model
adds no series. The request figures are counted in plain Python (integers and bucket counts per route,
per (route, status, outcome) and per token label set) and exported by `RequestCollector` when Prometheus
scrapes, with the same names, labels and values prometheus_client's own counters and histograms gave:
a finished request costs a few dictionary hits and integer additions, where a dozen lock-protected
prometheus_client updates cost close to a tenth of the router's own work on a request. Everything happens
on the event loop (requests and scrapes alike), so no lock is needed.

Live state (in flight, queued, health, breakers) is not tracked incrementally: `LiveStateCollector`
reads it from the current table when Prometheus scrapes, so it can never drift from what `/status` says.
The registry is the runtime's own, not prometheus_client's global one, so tests and several runtimes in
one process never share series.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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


class _Histogram:
    """One label child of a histogram: a count per bucket (not cumulative, as prometheus_client keeps
    them: the bucket an observation falls in is found by bisection) and the running sum."""

    __slots__ = ("counts", "sum")

    def __init__(self, size: int) -> None:
        self.counts = [0] * size
        self.sum = 0.0

    def observe(self, value: float, bounds: tuple[float, ...]) -> None:
        """Count `value` in the first bucket whose upper bound is at least `value`."""
        self.sum += value
        self.counts[bisect_left(bounds, value)] += 1


class _RouteSeries:
    """The per-route figures of one route, created on first use (or at a table's load) and kept."""

    __slots__ = (
        "cancellations",
        "completion_tokens",
        "duration",
        "overhead",
        "prompt_tokens",
        "retries",
        "time_per_output_token",
        "ttft",
    )

    def __init__(self) -> None:
        self.duration = _Histogram(len(_DURATION_BOUNDS))
        self.ttft = _Histogram(len(_TTFT_BOUNDS))
        self.time_per_output_token = _Histogram(len(_TPOT_BOUNDS))
        self.overhead = _Histogram(len(_OVERHEAD_BOUNDS))
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.retries = 0
        self.cancellations = 0


_INF = float("inf")
_DURATION_BOUNDS = (*DURATION_BUCKETS, _INF)
_TTFT_BOUNDS = (*TTFT_BUCKETS, _INF)
_TPOT_BOUNDS = (*TPOT_BUCKETS, _INF)
_OVERHEAD_BOUNDS = (*OVERHEAD_BUCKETS, _INF)


class RouterMetrics(Observer):
    """The router's metrics and the observer that feeds them."""

    def __init__(self, table: Callable[[], RouteTable | None]) -> None:
        # `_created` series would double the exposition for a timestamp nobody graphs; the switch is
        # process-wide, and this process's only metrics are these.
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        # The request figures: plain numbers here, exported by `RequestCollector` at scrape time (first,
        # so the exposition keeps its order).
        self._series: dict[str, _RouteSeries] = {}
        self._requests: dict[tuple[str, int, str], list[int]] = {}  # (route, status, outcome) -> [count]
        # router_tokens_total: one cell per exported label tuple, and the two cells of each record key
        self._token_cells: dict[tuple[str, str, str, str, str, str], list[int]] = {}
        self._tokens: dict[tuple[str, str, str | None, str, bool, bool], tuple[list[int], list[int]]] = {}
        r.register(RequestCollector(self))
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
        self._table = table
        # Every route of the served table shows (at zero) before its first request, as one text per family
        # (a fresh series' lines with the route filled in) rather than a series object per route: a
        # 10,000-route table would otherwise make 80,000 of them and spend seconds writing them.
        self._at_zero = {family.name: _zero_template(family) for family in self._fresh_families()}

    def _fresh_families(self) -> Iterator[Metric]:
        """The per-route families of one unused route (named by a placeholder), to learn their zero lines."""
        families = _request_families([(_ROUTE, _RouteSeries())], {}, {})
        return (family for family in families if family.name in _PER_ROUTE)

    def _unused_routes(self) -> list[str]:
        """The served table's routes that no request has used yet (they have no series of their own)."""
        table, series = self._table(), self._series
        return [] if table is None else [route.path for route in table.routes if route.path not in series]

    def _route(self, route: str) -> _RouteSeries:
        series = self._series.get(route)
        if series is None:
            series = self._series[route] = _RouteSeries()
        return series

    def request_finished(self, record: RequestRecord) -> None:
        route = record.route
        series = self._series.get(route) or self._route(route)
        key = (route, record.status, record.outcome)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = [0]
        counter[0] += 1
        started = record.started
        ended = record.ended_at
        if ended is None:
            ended = time.perf_counter()
        series.duration.observe(ended - started, _DURATION_BOUNDS)
        first = record.first_token_at
        if first is not None:
            series.ttft.observe(first - started, _TTFT_BOUNDS)
        if record.prompt_tokens or record.completion_tokens:
            self._count_tokens(record, series)
        if record.retries:
            series.retries += record.retries
        if record.outcome == "client_cancelled":
            series.cancellations += 1
        overhead = record.overhead
        if overhead is not None:
            series.overhead.observe(overhead, _OVERHEAD_BOUNDS)
        per_token = record.time_per_output_token
        if per_token is not None:
            series.time_per_output_token.observe(per_token, _TPOT_BOUNDS)

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
        cells = self._tokens.get(key)
        if cells is None:
            cells = self._tokens[key] = self._token_pair(record)
        prompt, completion = record.prompt_tokens, record.completion_tokens
        if prompt:
            cells[0][0] += prompt
            series.prompt_tokens += prompt
        if completion:
            cells[1][0] += completion
            series.completion_tokens += completion

    def _token_pair(self, record: RequestRecord) -> tuple[list[int], list[int]]:
        """The prompt and completion cells of a record's labels (shared by every key that has them)."""
        route, upstream, key, dialect = record.route, record.upstream, record.principal or "-", record.dialect
        cells = self._token_cells
        prompt = cells.setdefault(
            (route, upstream, key, dialect, "prompt", _BOOL[record.prompt_estimated]), [0]
        )
        completion = cells.setdefault(
            (route, upstream, key, dialect, "completion", _BOOL[record.completion_estimated]), [0]
        )
        return prompt, completion

    def collect_requests(self) -> Iterator[Metric]:
        """The request figures as metric families, in the order (and with the names, help texts, labels
        and values) the exposition has always had."""
        return _request_families(list(self._series.items()), self._requests, self._token_cells)

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
        """The text exposition of every metric; a per-route family ends with its unused routes at zero."""
        unused: list[str] | None = None
        parts: list[bytes] = []
        for family in self.registry.collect():
            parts.append(generate_latest(_Family(family)))
            template = self._at_zero.get(family.name)
            if template is not None:
                unused = self._unused_routes() if unused is None else unused
                parts.append(_zero_text(template, unused).encode())
        return b"".join(parts)


_ROUTE = "\x00"  # where a route goes in the text of a fresh series (no label value holds it)
_PER_ROUTE = frozenset(
    {
        "router_request_duration_seconds",
        "router_time_to_first_token_seconds",
        "router_prompt_tokens",
        "router_completion_tokens",
        "router_retries",
        "router_client_cancellations",
        "router_time_per_output_token_seconds",
        "router_overhead_seconds",
    }
)


class _Family(Collector):
    """One metric family as a collector, so the exposition can be written family by family."""

    def __init__(self, family: Metric) -> None:
        self.family = family

    def collect(self) -> Iterator[Metric]:
        yield self.family


def _zero_template(family: Metric) -> str:
    """The sample lines of a fresh series of `family` (one placeholder route), as the exposition has them."""
    lines = generate_latest(_Family(family)).decode().splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("#"))


def _zero_text(template: str, routes: Iterable[str]) -> str:
    """The sample lines of `routes` at zero."""
    return "".join(template.replace(_ROUTE, _label_value(route)) for route in routes)


def _label_value(value: str) -> str:
    """A label value escaped as the text format wants it (as prometheus_client writes it)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _request_families(
    series: list[tuple[str, _RouteSeries]],
    request_counts: dict[tuple[str, int, str], list[int]],
    token_cells: dict[tuple[str, str, str, str, str, str], list[int]],
) -> Iterator[Metric]:
    """The request figures as metric families (`RouterMetrics.collect_requests`)."""
    requests = CounterMetricFamily(
        "router_requests",
        "Chat requests by route, status and outcome.",
        labels=["route", "status", "outcome"],
    )
    for (route, status, outcome), count in list(request_counts.items()):
        requests.add_metric([route, str(status), outcome], float(count[0]))
    yield requests
    yield _histogram(
        "router_request_duration_seconds",
        "Seconds from a chat request's arrival to the end of its answer.",
        _DURATION_BOUNDS,
        [(route, s.duration) for route, s in series],
    )
    yield _histogram(
        "router_time_to_first_token_seconds",
        "Seconds from a streamed chat request's arrival to its first token.",
        _TTFT_BOUNDS,
        [(route, s.ttft) for route, s in series],
    )
    yield _counter(
        "router_prompt_tokens",
        "Prompt tokens (in) by route, estimates included (router_tokens_total has the detail).",
        [(route, s.prompt_tokens) for route, s in series],
    )
    yield _counter(
        "router_completion_tokens",
        "Completion tokens (out) by route, estimates included (router_tokens_total has the detail).",
        [(route, s.completion_tokens) for route, s in series],
    )
    tokens = CounterMetricFamily(
        "router_tokens",
        "Tokens by route, upstream, client key, client dialect, type (prompt or completion) and whether "
        "the figure is the router's estimate (the upstream reported none).",
        labels=["route", "upstream", "key", "dialect", "type", "estimated"],
    )
    for labels, cell in list(token_cells.items()):
        tokens.add_metric(labels, float(cell[0]))
    yield tokens
    yield _counter("router_retries", "Retries of upstream attempts.", [(r, s.retries) for r, s in series])
    yield _counter(
        "router_client_cancellations",
        "Requests the client abandoned before the end.",
        [(route, s.cancellations) for route, s in series],
    )
    yield _histogram(
        "router_time_per_output_token_seconds",
        "Seconds per output token after the first, in complete streams whose upstream counted tokens:"
        " (end - first token) / (completion tokens - 1).",
        _TPOT_BOUNDS,
        [(route, s.time_per_output_token) for route, s in series],
    )
    yield _histogram(
        "router_overhead_seconds",
        "Seconds the router itself added to a request that got an answer: its time minus the waits on"
        " upstreams (slot, retry backoff, attempts); to the end of a whole answer, to a stream's first"
        " byte.",
        _OVERHEAD_BOUNDS,
        [(route, s.overhead) for route, s in series],
    )


def _counter(name: str, documentation: str, values: list[tuple[str, int]]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=["route"])
    for route, value in values:
        family.add_metric([route], float(value))
    return family


def _histogram(
    name: str, documentation: str, bounds: tuple[float, ...], children: list[tuple[str, _Histogram]]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["route"])
    les = [floatToGoString(bound) for bound in bounds]
    for route, child in children:
        cumulative, total = [], 0.0
        for le, count in zip(les, list(child.counts), strict=True):
            total += count
            cumulative.append((le, total))
        family.add_metric([route], cumulative, child.sum)
    return family


class RequestCollector(Collector):
    """The request figures `RouterMetrics` counts in plain Python, exported when Prometheus scrapes.

    A finished request then costs a few dictionary hits and integer additions, not a dozen
    lock-protected prometheus_client updates; the exposition is the same series with the same values.
    """

    def __init__(self, metrics: RouterMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.collect_requests()


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
