"""The operations page's data: the router's own counters sampled every second into a bounded ring buffer,
and the recent reloads with their diffs.

The page (`/ops`) draws requests/s, latency and tokens/s per route. Parsing the Prometheus text in the
browser every second would be slow and fragile; instead a task reads the metric families from the
runtime's registry once a second (the same numbers `/metrics` serves, so the page and Prometheus never
disagree), keeps the differences between two readings, and `/ops/series` hands out the columns. The
sampler reads families by name, so a metric another observer adds (tokens per key, quotas) shows up once
it exists and is simply absent before.

What it costs: nothing on the request path (no per-request work), and nothing while nobody watches: the
task starts with the first `/ops/series` request and stops `IDLE` seconds after the last one. A reading
is a registry collection, as a Prometheus scrape is (milliseconds for a few routes, more for hundreds),
so the task waits at least `COST_FACTOR` times as long as its last reading took: sampling never takes
more than 1/COST_FACTOR of the event loop, whatever the table's size.

Bounded: `HISTORY` samples of a handful of numbers per route, and `RELOADS` reloads; a page asks only
for the samples it has not seen (`since`). Each process samples its own counters, like `/status`:
behind several workers the page shows the one that answered.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from router.observability.observer import Observer

log = logging.getLogger("router.observability.series")

INTERVAL = 1.0
"""Seconds between two samples."""
HISTORY = 300
"""Samples kept: five minutes at one a second."""
RELOADS = 20
"""Reloads kept, newest last."""
IDLE = 60.0
"""Seconds without a `/ops/series` request after which sampling stops."""
COST_FACTOR = 50
"""The sampler sleeps at least this many times as long as its last reading took."""

# The per-route columns of one sample, in the order `RouteSample` holds them.
COLUMNS = (
    "requests_per_second",
    "errors_per_second",
    "latency_p50",
    "latency_p99",
    "ttft_p50",
    "tokens_per_second",
    "in_flight",
    "queued",
)


@dataclass(slots=True)
class _Histogram:
    """One route's cumulative histogram buckets (upper bound -> count)."""

    buckets: dict[float, float] = field(default_factory=dict)


@dataclass(slots=True)
class _Reading:
    """Cumulative counters and current gauges, per route, at one instant."""

    at: float
    requests: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    errors: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    tokens: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    tokens_by_key: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    duration: dict[str, _Histogram] = field(default_factory=lambda: defaultdict(_Histogram))
    ttft: dict[str, _Histogram] = field(default_factory=lambda: defaultdict(_Histogram))
    in_flight: dict[str, float] = field(default_factory=dict)
    queued: dict[str, float] = field(default_factory=dict)
    quotas: dict[tuple[str, str], dict[str, float]] = field(default_factory=lambda: defaultdict(dict))


def read(registry: CollectorRegistry) -> _Reading:
    """One reading of the registry's router families (tolerant of families that do not exist yet)."""
    reading = _Reading(at=time.time())
    per_key_tokens = False
    tokens_by_route: dict[str, float] = defaultdict(float)
    for family in registry.collect():
        name = family.name
        if name == "router_requests":
            for s in family.samples:
                if s.name.endswith("_total"):
                    route = s.labels.get("route", "-")
                    reading.requests[route] += s.value
                    if s.labels.get("status", "").startswith("5"):
                        reading.errors[route] += s.value
        elif name in ("router_request_duration_seconds", "router_time_to_first_token_seconds"):
            target = reading.duration if name == "router_request_duration_seconds" else reading.ttft
            for s in family.samples:
                if s.name.endswith("_bucket"):
                    target[s.labels["route"]].buckets[float(s.labels["le"])] = s.value
        elif name == "router_tokens":  # per route, upstream, key, dialect and type, when it exists
            per_key_tokens = True
            for s in family.samples:
                if s.name.endswith("_total"):
                    reading.tokens_by_key[s.labels.get("key") or "-"] += s.value
                    tokens_by_route[s.labels.get("route", "-")] += s.value
        elif name in ("router_prompt_tokens", "router_completion_tokens"):
            for s in family.samples:
                if s.name.endswith("_total"):
                    reading.tokens[s.labels.get("route", "-")] += s.value
        elif name in ("router_in_flight_requests", "router_queued_requests"):
            target_gauge = reading.in_flight if name == "router_in_flight_requests" else reading.queued
            for s in family.samples:
                target_gauge[s.labels["route"]] = s.value
        elif name in ("router_quota_used", "router_quota_limit"):
            for s in family.samples:
                slot = reading.quotas[s.labels.get("key", "-"), s.labels.get("quota", "-")]
                slot["used" if name == "router_quota_used" else "limit"] = s.value
    if per_key_tokens:
        # The detailed counter counts every token once: it replaces the per-route prompt and completion
        # counters (which may be kept beside it, or folded into it).
        reading.tokens = tokens_by_route
    return reading


def quantile(q: float, before: _Histogram | None, after: _Histogram) -> float | None:
    """The q-quantile of the observations between two readings, interpolated within buckets as
    Prometheus' `histogram_quantile` does; None when nothing was observed."""
    bounds = sorted(after.buckets)
    old = before.buckets if before is not None else {}
    counts = [after.buckets[b] - old.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the largest finite bucket: its bound is the best we know
            span = count - below
            return lower + (bound - lower) * ((rank - below) / span if span > 0 else 1.0)
        lower, below = bound, count
    return lower


def _rate(now: dict[str, float], then: dict[str, float], key: str, seconds: float) -> float:
    return max(0.0, now.get(key, 0.0) - then.get(key, 0.0)) / seconds


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


class OpsSeries(Observer):
    """The sampler and reload history behind `/ops/series`; an observer for the reload events."""

    def __init__(
        self,
        registry: CollectorRegistry,
        routes: Callable[[], Iterable[str]],
        interval: float = INTERVAL,
        history: int = HISTORY,
    ) -> None:
        self._registry = registry
        self._routes = routes
        self.interval = interval
        self._samples: deque[tuple[float, dict[str, tuple[float | None, ...]]]] = deque(maxlen=history)
        self._reloads: deque[dict[str, Any]] = deque(maxlen=RELOADS)
        self._last: _Reading | None = None
        self._tokens_by_key: dict[str, float] = {}
        self._quotas: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._watched_at = 0.0

    def event(self, kind: str, fields: dict[str, Any]) -> None:
        """Keep each reload (fields already redacted by the bus) for the page's history."""
        if kind != "reload":
            return
        self._reloads.append(
            {
                "time": fields.get("time", time.time()),
                "ok": bool(fields.get("ok")),
                "trigger": fields.get("trigger"),
                "sha256": fields.get("sha256"),
                "message": fields.get("message"),
                "changes": list(fields.get("changes") or ()),
                "problems": list(fields.get("problems") or ()),
            }
        )

    def sample(self) -> None:
        """Take one reading and, from the second one on, append the rates since the previous reading."""
        reading = read(self._registry)
        last, self._last = self._last, reading
        self._tokens_by_key = dict(reading.tokens_by_key)
        self._quotas = [
            {"key": key, "quota": quota, "used": slot.get("used"), "limit": slot.get("limit")}
            for (key, quota), slot in sorted(reading.quotas.items())
        ]
        if last is None:
            return
        seconds = max(reading.at - last.at, 1e-3)
        routes: dict[str, tuple[float | None, ...]] = {}
        for route in self._routes():
            routes[route] = (
                round(_rate(reading.requests, last.requests, route, seconds), 3),
                round(_rate(reading.errors, last.errors, route, seconds), 3),
                _round(quantile(0.5, last.duration.get(route), reading.duration[route])),
                _round(quantile(0.99, last.duration.get(route), reading.duration[route])),
                _round(quantile(0.5, last.ttft.get(route), reading.ttft[route])),
                round(_rate(reading.tokens, last.tokens, route, seconds), 3),
                reading.in_flight.get(route, 0.0),
                reading.queued.get(route, 0.0),
            )
        self._samples.append((round(reading.at, 3), routes))

    def document(self, since: float | None = None) -> dict[str, Any]:
        """What `/ops/series` answers: time and per-route columns (null where a route did not exist yet)
        for the samples after `since` (all kept ones without it), token totals per key and quotas when
        those metrics exist, and the recent reloads."""
        samples = [s for s in self._samples if since is None or s[0] > since]
        names: list[str] = list(dict.fromkeys(r for _, routes in samples for r in routes))
        empty: tuple[None, ...] = (None,) * len(COLUMNS)
        columns = {
            route: {
                column: [routes.get(route, empty)[i] for _, routes in samples]
                for i, column in enumerate(COLUMNS)
            }
            for route in names
        }
        return {
            "interval": self.interval,
            "capacity": self._samples.maxlen,
            "time": [at for at, _ in samples],
            "routes": columns,
            "tokens_by_key": self._tokens_by_key or None,
            "quotas": self._quotas,
            "reloads": list(self._reloads),
        }

    def watched(self) -> None:
        """Someone reads the series: sample (from now on, if the task was idle) for `IDLE` more seconds."""
        self._watched_at = time.monotonic()
        if self._task is None or self._task.done():
            self._last = None  # a reading from before an idle spell is no baseline for a rate
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ops-series")

    @property
    def sampling(self) -> bool:
        """Whether the sampler task runs now."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Stop sampling."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while time.monotonic() - self._watched_at < IDLE:
            started = time.perf_counter()
            try:
                self.sample()
            except Exception:  # a sampler bug must not take the page's numbers down for good
                log.exception("sampling the metrics for /ops failed")
            cost = time.perf_counter() - started
            await asyncio.sleep(max(self.interval, cost * COST_FACTOR) - cost)
