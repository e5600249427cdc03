"""`/ops` and `/ops/series`: who may read them, and whether the sampled numbers are the router's own.

Over real sockets: the page is a data-free static file with the chat page's CSP; its numbers need the
admin key when keys are configured (or `auth.public_status`). In process: the sampler's rates and
quantiles against known counter readings, and the reload history's bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from router.api.web import CONTENT_SECURITY_POLICY
from router.observability.series import RELOADS, OpsSeries, _Histogram, quantile
from tests.fakes import FakeOllama, FakeOpenAI, wait_for
from tests.support.router_server import RunningRouter, table

Start = Callable[..., RunningRouter]
MESSAGES = [{"role": "user", "content": "hello there"}]
ALICE = "alice-key-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdef"
ENV = {"ALICE_KEY": ALICE, "ADMIN_KEY": ADMIN}


def keyed(ollama: FakeOllama, openai: FakeOpenAI, public_status: bool = False) -> str:
    return table(
        upstreams={
            "ollama": {"type": "ollama", "base_url": ollama.base_url},
            "local": {"type": "openai", "base_url": openai.base_url},
        },
        routes=[
            {"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"},
            {"path": "/chat/local", "model": "smollm2", "upstream": "local"},
        ],
        auth={
            "api_keys": [{"name": "alice", "key": "${ALICE_KEY}"}],
            "admin_keys": [{"name": "ops", "key": "${ADMIN_KEY}"}],
            "public_status": public_status,
        },
    )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_ops_numbers_need_the_admin_key_when_keys_are_configured(
    fake_ollama: FakeOllama, fake_openai: FakeOpenAI, start_router: Start
) -> None:
    router = start_router(keyed(fake_ollama, fake_openai), env=ENV)
    series = router.url + "/ops/series"
    missing = httpx.get(series, timeout=5)
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
    assert httpx.get(series, headers=bearer("wrong-key-0123456789abcdef"), timeout=5).status_code == 401
    client = httpx.get(series, headers=bearer(ALICE), timeout=5)
    assert client.status_code == 403 and client.json()["error"]["type"] == "permission_error"
    admin = httpx.get(series, headers=bearer(ADMIN), timeout=5)
    assert admin.status_code == 200 and admin.headers["cache-control"] == "no-store"
    assert {"time", "routes", "reloads", "quotas"} <= set(admin.json())
    # The page itself holds no data: a browser opens it without a key, then sends the stored one.
    page = httpx.get(router.url + "/ops", timeout=5)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "/chat/qwen3" not in page.text and "qwen3" not in page.text
    assert "<script>" not in page.text, "no inline script: the CSP would refuse it"


def test_public_status_opens_the_numbers_without_a_key(
    fake_ollama: FakeOllama, fake_openai: FakeOpenAI, start_router: Start
) -> None:
    router = start_router(keyed(fake_ollama, fake_openai, public_status=True), env=ENV)
    assert httpx.get(router.url + "/ops/series", timeout=5).status_code == 200


def test_the_series_are_the_router_traffic(both_upstreams_router: RunningRouter) -> None:
    """Requests/s, tokens/s and latency per route follow the traffic sent, second by second."""
    router = both_upstreams_router

    def document() -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(router.url + "/ops/series", timeout=5).json()
        return body

    wait_for(lambda: len(document()["time"]) >= 1, timeout=5)
    sent = 0
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        response = httpx.post(router.url + "/chat/qwen3", json={"messages": MESSAGES}, timeout=10)
        assert response.status_code == 200
        sent += 1
    time.sleep(1.2)  # the sample that covers the last request
    doc = document()
    qwen3, local = doc["routes"]["/chat/qwen3"], doc["routes"]["/chat/local"]
    # Each sample's rate covers the time since the one before (the first one predates the traffic).
    times, rates = doc["time"], qwen3["requests_per_second"]
    assert rates[0] == 0
    counted = sum(rates[i] * (times[i] - times[i - 1]) for i in range(1, len(times)))
    assert abs(counted - sent) <= 0.1 * sent + 1, (counted, sent)
    assert sum(local["requests_per_second"]) == 0
    assert max(qwen3["tokens_per_second"]) > 0, "the fake answers 5 completion tokens a request"
    p50 = [v for v in qwen3["latency_p50"] if v is not None]
    assert p50 and all(0 < v < 1 for v in p50)
    assert len(doc["time"]) <= doc["capacity"]


def test_quantile_interpolates_like_histogram_quantile() -> None:
    before = _Histogram({0.1: 10, 0.5: 10, 1.0: 10, float("inf"): 10})
    after = _Histogram({0.1: 10, 0.5: 60, 1.0: 110, float("inf"): 110})  # 50 in (0.1, 0.5], 50 in (0.5, 1]
    assert quantile(0.5, before, after) == pytest.approx(0.5)
    assert quantile(0.25, before, after) == pytest.approx(0.3)
    assert quantile(0.99, before, after) == pytest.approx(0.99)
    assert quantile(0.5, after, after) is None, "nothing observed in between"
    beyond = _Histogram({0.1: 0, float("inf"): 4})
    assert quantile(0.5, None, beyond) == 0.1, "past the last finite bucket: its bound"


def test_sampling_reads_the_registry_and_keeps_a_bounded_history(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("router.observability.series.time.time", lambda: clock[0])
    registry = CollectorRegistry(auto_describe=False)
    requests = Counter("router_requests", "", ["route", "status", "outcome"], registry=registry)
    name = "router_request_duration_seconds"
    duration = Histogram(name, "", ["route"], buckets=(0.1, 1.0), registry=registry)
    tokens = Counter("router_completion_tokens", "", ["route"], registry=registry)
    series = OpsSeries(registry, lambda: ["/a"], history=3)
    series.sample()
    assert series.document()["time"] == [], "one reading is not a rate yet"
    for _ in range(10):
        requests.labels("/a", "200", "ok").inc()
        duration.labels("/a").observe(0.05)
    requests.labels("/a", "502", "upstream_error").inc(2)
    tokens.labels("/a").inc(40)
    clock[0] += 2.0
    series.sample()
    column = series.document()["routes"]["/a"]
    assert column["requests_per_second"] == [6.0]  # 12 requests in 2 s
    assert column["errors_per_second"] == [1.0]
    assert column["tokens_per_second"] == [20.0]
    assert column["latency_p50"][0] == pytest.approx(0.05), "half way up the (0, 0.1] bucket"
    assert column["in_flight"] == [0.0] and column["queued"] == [0.0]
    for _ in range(5):
        clock[0] += 1.0
        series.sample()
    assert len(series.document()["time"]) == 3, "the ring buffer keeps `history` samples"
    for n in range(RELOADS + 5):
        series.event("reload", {"time": n, "ok": True, "trigger": "admin", "changes": [f"change {n}"]})
    series.event("health", {"upstream": "x"})
    reloads = series.document()["reloads"]
    assert len(reloads) == RELOADS and reloads[-1]["changes"] == [f"change {RELOADS + 4}"]


def test_tokens_per_key_replace_the_per_route_counters(monkeypatch: pytest.MonkeyPatch) -> None:
    """Token accounting per key (router_tokens_total) counts each token once; the older per-route counters
    may be kept beside it, so the sampler must not add the two."""
    clock = [1000.0]
    monkeypatch.setattr("router.observability.series.time.time", lambda: clock[0])
    registry = CollectorRegistry(auto_describe=False)
    old = Counter("router_completion_tokens", "", ["route"], registry=registry)
    detailed = Counter("router_tokens", "", ["route", "key", "type"], registry=registry)
    series = OpsSeries(registry, lambda: ["/a"])
    series.sample()
    old.labels("/a").inc(30)
    detailed.labels("/a", "team-a", "completion").inc(30)
    detailed.labels("/a", "team-b", "prompt").inc(10)
    clock[0] += 2.0
    series.sample()
    doc = series.document()
    assert doc["time"] == [1002.0]
    assert doc["routes"]["/a"]["tokens_per_second"] == [20.0], "40 tokens in 2 s, not 70"
    assert doc["tokens_by_key"] == {"team-a": 30, "team-b": 10}


def test_sampling_runs_only_while_someone_watches(
    both_upstreams_router: RunningRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No reading at all until the first /ops/series request, and none again once nobody asks."""
    monkeypatch.setattr("router.observability.series.IDLE", 1.5)
    router = both_upstreams_router
    ops = router.runtime.ops
    time.sleep(1.2)
    assert not ops.sampling and ops.document()["time"] == [], "nobody asked: nothing was read"
    url = router.url + "/ops/series"
    assert httpx.get(url, timeout=5).status_code == 200
    assert router.sync(lambda: ops.sampling)
    first = wait_for(lambda: httpx.get(url, timeout=5).json()["time"], timeout=5)
    newer = wait_for(lambda: httpx.get(url, params={"since": first[-1]}, timeout=5).json()["time"], timeout=5)
    assert newer and min(newer) > first[-1], "`since` answers only the samples after it"
    wait_for(lambda: not router.sync(lambda: ops.sampling), timeout=5)
    kept = len(ops.document()["time"])
    time.sleep(1.2)
    assert len(ops.document()["time"]) == kept, "stopped: no reading while nobody watches"
    bad = httpx.get(url, params={"since": "yesterday"}, timeout=5)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "since"
    assert "yesterday" not in bad.text, "the client's text is not echoed"


def test_a_costly_reading_slows_the_sampler_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sampling takes at most 1/COST_FACTOR of the loop, whatever the table's size."""
    import asyncio

    from router.observability import series as module

    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) >= 3:
            raise asyncio.CancelledError

    clock = [0.0]

    def slow_sample(self: OpsSeries) -> None:
        clock[0] += 0.1  # a reading that takes 100 ms

    monkeypatch.setattr(module.asyncio, "sleep", fake_sleep)
    monkeypatch.setattr(module.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(OpsSeries, "sample", slow_sample)
    series = OpsSeries(CollectorRegistry(), lambda: [])
    series._watched_at = module.time.monotonic()

    async def run() -> None:
        with pytest.raises(asyncio.CancelledError):
            await series._run()

    asyncio.run(run())
    assert sleeps == [pytest.approx(0.1 * module.COST_FACTOR - 0.1)] * 3
