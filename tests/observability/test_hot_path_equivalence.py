"""The request path's cheap observers write exactly what the general machinery wrote before them.

`RouterMetrics` counts request figures in plain Python and exports them at scrape time; the JSON request
line skips structlog's chain. Both must stay byte-for-byte what prometheus_client's own counters and
histograms, and the structlog chain, produce from the same records: dashboards, alerts and log pipelines
read them. These tests feed varied records to both and compare the outputs.
"""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

import router.observability.logs as logs
from router.config.models import LoggingSettings
from router.observability import RequestRecord, RouterMetrics, StructuredLog
from router.observability.metrics import (
    DURATION_BUCKETS,
    OVERHEAD_BUCKETS,
    TPOT_BUCKETS,
    TTFT_BUCKETS,
)

ROUTES = ["/a", "/b", "/c", "-"]


def records(count: int, seed: int) -> list[RequestRecord]:
    """Records covering every branch: streams or not, tokens counted or estimated or absent, retries,
    cancellations, errors, long names, no answer at all."""
    rnd = random.Random(seed)
    out = []
    for i in range(count):
        r = RequestRecord(f"req-{i}")
        r.route = rnd.choice(ROUTES)
        r.model = rnd.choice(["m", "-", "é" * 10, "x" * 300])
        r.upstream = rnd.choice(["u1", "u2", "-"])
        r.principal = rnd.choice([None, "k1", "k2", "k" * 250])
        r.dialect = rnd.choice(["openai_chat", "ollama_api"])
        r.stream = rnd.random() < 0.5
        r.started = 100.0
        r.ended_at = 100.0 + rnd.choice([0.0, 0.001, 0.0123, 0.5, 3.0, 400.0, rnd.random() * 10])
        if rnd.random() < 0.7:
            r.served_at = 100.0 + rnd.random() * 0.01
            r.upstream_wait = rnd.random() * 0.005
        if r.stream and rnd.random() < 0.8:
            r.first_token_at = 100.0 + rnd.random() * 2
        r.status = rnd.choice([200, 200, 429, 499, 500, 502])
        r.outcome = rnd.choice(["ok", "ok", "client_cancelled", "timeout", "upstream_error"])
        r.retries = rnd.choice([0, 0, 1, 2])
        r.prompt_tokens = rnd.choice([None, 0, 9, 123])
        r.completion_tokens = rnd.choice([None, 0, 1, 7, 50])
        r.prompt_estimated = rnd.random() < 0.2
        r.completion_estimated = rnd.random() < 0.2
        r.trace_id = rnd.choice([None, "0af7651916cd43dd8448eb211c80319c"])
        r.error = rnd.choice([None, None, "upstream said sekrit-123", "e" * 3000])
        out.append(r)
    return out


class ReferenceMetrics:
    """The request figures as prometheus_client's own counters and histograms keep them."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=False)
        route = ["route"]
        self.requests = Counter(
            "router_requests",
            "Chat requests by route, status and outcome.",
            ["route", "status", "outcome"],
            registry=r,
        )
        self.duration = Histogram(
            "router_request_duration_seconds",
            "Seconds from a chat request's arrival to the end of its answer.",
            route,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "router_time_to_first_token_seconds",
            "Seconds from a streamed chat request's arrival to its first token.",
            route,
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.prompt = Counter(
            "router_prompt_tokens",
            "Prompt tokens (in) by route, estimates included (router_tokens_total has the detail).",
            route,
            registry=r,
        )
        self.completion = Counter(
            "router_completion_tokens",
            "Completion tokens (out) by route, estimates included (router_tokens_total has the detail).",
            route,
            registry=r,
        )
        self.tokens = Counter(
            "router_tokens",
            "Tokens by route, upstream, client key, client dialect, type (prompt or completion) and whether "
            "the figure is the router's estimate (the upstream reported none).",
            ["route", "upstream", "key", "dialect", "type", "estimated"],
            registry=r,
        )
        self.retries = Counter("router_retries", "Retries of upstream attempts.", route, registry=r)
        self.cancellations = Counter(
            "router_client_cancellations", "Requests the client abandoned before the end.", route, registry=r
        )
        self.tpot = Histogram(
            "router_time_per_output_token_seconds",
            "Seconds per output token after the first, in complete streams whose upstream counted tokens:"
            " (end - first token) / (completion tokens - 1).",
            route,
            buckets=TPOT_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "router_overhead_seconds",
            "Seconds the router itself added to a request that got an answer: its time minus the waits on"
            " upstreams (slot, retry backoff, attempts); to the end of a whole answer, to a stream's first"
            " byte.",
            route,
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.per_route = (
            self.duration,
            self.ttft,
            self.prompt,
            self.completion,
            self.retries,
            self.cancellations,
            self.tpot,
            self.overhead,
        )

    def route(self, path: str) -> None:
        for metric in self.per_route:
            metric.labels(path)

    def finished(self, record: RequestRecord) -> None:
        route = record.route
        self.route(route)
        self.requests.labels(route, str(record.status), record.outcome).inc()
        self.duration.labels(route).observe(record.duration)
        if record.ttft is not None:
            self.ttft.labels(route).observe(record.ttft)
        if record.prompt_tokens or record.completion_tokens:
            labels = (route, record.upstream, record.principal or "-", record.dialect)
            prompt = self.tokens.labels(*labels, "prompt", str(record.prompt_estimated).lower())
            completion = self.tokens.labels(*labels, "completion", str(record.completion_estimated).lower())
            if record.prompt_tokens:
                prompt.inc(record.prompt_tokens)
                self.prompt.labels(route).inc(record.prompt_tokens)
            if record.completion_tokens:
                completion.inc(record.completion_tokens)
                self.completion.labels(route).inc(record.completion_tokens)
        if record.retries:
            self.retries.labels(route).inc(record.retries)
        if record.outcome == "client_cancelled":
            self.cancellations.labels(route).inc()
        if record.overhead is not None:
            self.overhead.labels(route).observe(record.overhead)
        if record.time_per_output_token is not None:
            self.tpot.labels(route).observe(record.time_per_output_token)


def request_families(text: str) -> str:
    """The exposition without the reload, resume and live-state families (not request figures)."""
    return "".join(
        block
        for block in re.split(r"(?m)^(?=# HELP )", text)
        if block and "router_config" not in block and "router_stream_resume" not in block
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_metrics_exposition_is_what_prometheus_client_writes(seed: int) -> None:
    metrics = RouterMetrics(lambda: None)  # unused routes at zero: tests/observability/test_route_series.py
    reference = ReferenceMetrics()
    for record in records(2000, seed):
        metrics.request_finished(record)
        reference.finished(record)
    ours = request_families(metrics.render().decode())
    theirs = generate_latest(reference.registry).decode()
    assert "router_tokens_total{" in ours and "router_overhead_seconds_bucket{" in ours
    assert ours == theirs


@pytest.mark.parametrize("level", ["info", "warning"])
def test_json_request_line_is_what_the_structlog_chain_writes(
    tmp_path: Path, level: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "_now", lambda: "2026-11-30T00:00:00.000Z")
    redact = lambda text: text.replace("sekrit-123", "***")  # noqa: E731

    def write(path: Path, fast: bool) -> list[str]:
        log = StructuredLog(LoggingSettings(level=level, format="json", file=str(path)), redact)
        if not fast:
            log._json_sink = None  # the structlog chain, as every line went before

        async def feed() -> None:
            for i, record in enumerate(records(600, 5)):
                log.request_finished(record)
                if i % 7 == 0:
                    await asyncio.sleep(0)  # lines batched in one write per loop turn, and not

        asyncio.run(feed())
        log.close()
        return path.read_text().splitlines()

    fast, chain = write(tmp_path / "fast.log", True), write(tmp_path / "chain.log", False)
    assert len(fast) > 100
    assert fast == chain
    assert any('"error":"upstream said ***"' in line for line in fast)


def test_observers_fan_out_flat_to_every_observer_that_acts() -> None:
    from router.observability import Observer, Observers

    calls: list[tuple[str, str]] = []

    class Acting(Observer):
        def __init__(self, name: str) -> None:
            self.name = name

        def request_finished(self, record: RequestRecord) -> None:
            calls.append((self.name, record.request_id))

        def reloaded(self, ok: bool, sha256: str, trigger: str) -> None:
            calls.append((self.name, "reload"))

    class Passive(Observer):
        def reloaded(self, ok: bool, sha256: str, trigger: str) -> None:
            calls.append(("passive", "reload"))

    fan = Observers([Observers([Acting("a"), Passive(), Acting("b")]), Acting("c")])
    fan.request_finished(RequestRecord("r1"))
    fan.reloaded(True, "x", "t")
    assert calls == [
        ("a", "r1"),
        ("b", "r1"),
        ("c", "r1"),
        ("a", "reload"),
        ("passive", "reload"),
        ("b", "reload"),
        ("c", "reload"),
    ]


def test_usage_counts_each_utc_day_apart_across_midnight() -> None:
    from router.state.usage import DAY, MemoryUsage

    now = [10 * DAY - 1.0]  # one second before a UTC midnight
    usage = MemoryUsage(clock=lambda: now[0])
    usage.add("k", "/a", 1, 2, 0)
    now[0] += 2.0  # the next day
    usage.add("k", "/a", 10, 20, 0)
    usage.add("k", "/a", 100, 200, 0)
    now[0] -= 2.0  # a clock stepped back: the day before again
    usage.add("k", "/a", 1000, 2000, 0)
    days = sorted(usage.days)
    assert len(days) == 2
    first, second = (usage.days[day][("k", "/a")] for day in days)
    assert (first.requests, first.prompt_tokens, first.completion_tokens) == (2, 1001, 2002)
    assert (second.requests, second.prompt_tokens, second.completion_tokens) == (2, 110, 220)


def test_request_lines_are_batched_briefly_and_bounded(tmp_path: Path) -> None:
    """Lines wait at most FLUSH_AFTER seconds, or until FLUSH_BYTES wait, and a close writes the rest."""
    path = tmp_path / "sink.log"
    sink = logs.Sink(str(path))

    def written() -> list[str]:
        return path.read_text().splitlines()

    async def scenario() -> None:
        sink.msg(b'{"n":1}')
        sink.msg(b'{"n":2}')
        assert written() == []  # waiting for company
        await asyncio.sleep(logs.FLUSH_AFTER * 4)
        assert written() == ['{"n":1}', '{"n":2}']  # one write, soon after
        big = b'{"pad":"' + b"x" * (logs.FLUSH_BYTES // 4) + b'"}'
        for _ in range(5):  # past FLUSH_BYTES: written at once, without waiting for the timer
            sink.msg(big)
            assert sink._size <= logs.FLUSH_BYTES  # what waits stays bounded
        assert len(written()) == 2 + 4  # the fourth went past the bound: those four are out
        sink.msg(b'{"n":3}')

    asyncio.run(scenario())
    sink.close()  # what still waited is written at a clean stop
    assert written()[-1] == '{"n":3}' and len(written()) == 8
