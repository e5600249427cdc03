"""A real Prometheus scraping a real router: the series arrive, the alert rules evaluate, an alert fires.

Prometheus (Debian's package) runs on a free loopback port with a 1 s scrape and evaluation interval and a
temporary TSDB (tests/support/prometheus.py). The rules it loads are deploy/prometheus/router-rules.yaml
with every `for:` cut to 1 s, so "route unavailable" fires within seconds of the upstream going away.
Also here: every metric name the rules and the Grafana dashboard read is in the router's /metrics, so
a renamed metric fails this test instead of silently emptying a panel or disarming an alert.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.fakes import FakeOllama, FakeOpenAI
from tests.observability import scrape
from tests.support.prometheus import (
    RULES,
    PrometheusServer,
    alert_rules,
    concrete,
    dashboard_expressions,
    metric_names,
    number,
)
from tests.support.router_server import RunningRouter, table

Start = Callable[..., RunningRouter]
MESSAGES = [{"role": "user", "content": "hello there"}]
HEALTH = {
    "enabled": True,
    "interval": 0.2,
    "timeout": 0.5,
    "failure_threshold": 1,
    "recovery_threshold": 1,
    "recovery_interval": 0.2,
    "jitter": 0.0,
}
# Metrics the rules and dashboard read that other work adds (they appear once it is merged, or only when
# their feature is configured): name -> where it comes from. Anything else must be in /metrics.
PENDING = {
    "router_quota_used": "quotas per key (issue 15, token accounting); only with quotas configured",
    "router_quota_limit": "quotas per key (issue 15, token accounting); only with quotas configured",
}


@pytest.fixture
def watched_router(fake_ollama: FakeOllama, fake_openai: FakeOpenAI, start_router: Start) -> RunningRouter:
    """/chat/qwen3 (fake Ollama) and /chat/local (fake OpenAI server), health-checked 5 times a second."""
    return start_router(
        table(
            upstreams={
                "ollama": {"type": "ollama", "base_url": fake_ollama.base_url},
                "local": {"type": "openai", "base_url": fake_openai.base_url},
            },
            routes=[
                {"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"},
                {"path": "/chat/local", "model": "smollm2", "upstream": "local"},
            ],
            defaults={"health_check": HEALTH, "max_retries": 0},
        )
    )


def traffic(router: RunningRouter) -> None:
    """Whole answers and streams on both routes: three requests each, one of them streamed."""
    for path in ("/chat/qwen3", "/chat/local"):
        for stream in (False, True, False):
            response = chat(router, path, stream)
            assert response.status_code == 200, response.text


def chat(router: RunningRouter, path: str, stream: bool = False) -> httpx.Response:
    return httpx.post(router.url + path, json={"messages": MESSAGES, "stream": stream}, timeout=10)


def fast_rules() -> str:
    """The shipped rules with every `for:` at 1 s, so an alert fires within a bounded test."""
    text, count = re.subn(r"(?m)^(\s+for:) \S+$", r"\1 1s", RULES.read_text())
    assert count == len(alert_rules())
    return text


@pytest.fixture
def prometheus(watched_router: RunningRouter) -> Iterator[PrometheusServer]:
    with PrometheusServer([f"127.0.0.1:{watched_router.port}"], rules=fast_rules()) as server:
        yield server


def test_every_metric_the_rules_and_dashboard_read_is_exposed(watched_router: RunningRouter) -> None:
    traffic(watched_router)
    exposed = {name for name, _ in scrape(watched_router)}
    used = metric_names([rule["expr"] for rule in alert_rules()]) | metric_names(dashboard_expressions())
    assert {"router_requests_total", "router_request_duration_seconds_bucket"} <= used
    missing = {name for name in used - exposed if name not in PENDING}
    assert not missing, f"the rules or the dashboard read metrics the router does not expose: {missing}"


def test_prometheus_scrapes_the_router_and_sees_its_series(
    watched_router: RunningRouter, prometheus: PrometheusServer
) -> None:
    router = watched_router
    assert number(prometheus.wait_for('up{job="router"} == 1')) == 1
    traffic(router)
    samples = scrape(router)

    def exposed(name: str) -> float:
        return sum(v for (n, _), v in samples.items() if n == name)

    requests = prometheus.wait_for('sum(router_requests_total{job="router"}) >= 6')
    assert number(requests) == exposed("router_requests_total") == 6
    by_route = prometheus.query('sum by (route) (router_request_duration_seconds_count{job="router"})')
    counts = {r["metric"]["route"]: float(r["value"][1]) for r in by_route}
    assert counts == {"/chat/qwen3": 3, "/chat/local": 3}
    assert number(prometheus.query('sum(router_time_to_first_token_seconds_count{job="router"})')) == 2
    for name in ("router_prompt_tokens_total", "router_completion_tokens_total", "router_tokens_total"):
        if name not in {n for n, _ in samples}:
            continue  # router_tokens_total comes with token accounting per key (issue 15)
        total = number(prometheus.wait_for(f'sum({name}{{job="router"}}) > 0'))
        assert total == exposed(name) > 0, name
    assert number(prometheus.query('sum(router_route_available{job="router"})')) == 2
    assert number(prometheus.query('router_routes{job="router"}')) == 2


def test_the_rules_load_evaluate_and_fire_when_a_route_goes_down(
    watched_router: RunningRouter, prometheus: PrometheusServer, fake_ollama: FakeOllama
) -> None:
    prometheus.wait_for('up{job="router"} == 1')
    traffic(watched_router)
    prometheus.wait_for('sum(router_requests_total{job="router"}) >= 6')
    rules = _rules(prometheus)
    assert set(rules) == {rule["alert"] for rule in alert_rules()}
    assert all(rule["health"] == "ok" for rule in rules.values()), {
        name: rule.get("lastError") for name, rule in rules.items()
    }
    assert _firing(prometheus) == [], "nothing fires while every route is healthy"

    fake_ollama.go_down()
    fired = _wait_firing(prometheus, "RouterRouteUnavailable", timeout=20)
    assert fired["labels"]["route"] == "/chat/qwen3" and fired["labels"]["severity"] == "critical"
    assert "/chat/qwen3" in fired["annotations"]["summary"]
    assert _wait_firing(prometheus, "RouterUpstreamUnhealthy", timeout=20)["labels"]["upstream"] == "ollama"
    down = {a["labels"].get("route") for a in _firing(prometheus, "RouterRouteUnavailable")}
    assert down == {"/chat/qwen3"}, "only the route on the upstream that went away"

    fake_ollama.come_up()
    _wait(lambda: not _firing(prometheus, "RouterRouteUnavailable"), "the alert resolves", timeout=20)


def test_every_dashboard_query_runs_on_prometheus(
    watched_router: RunningRouter, prometheus: PrometheusServer, fake_openai: FakeOpenAI
) -> None:
    """Grafana would send these (variables filled in): each parses and the core panels have data."""
    prometheus.wait_for('up{job="router"} == 1')
    traffic(watched_router)
    fake_openai.fail_n_times(1, code=500)
    assert chat(watched_router, "/chat/local").status_code == 502
    prometheus.wait_for('sum(router_requests_total{job="router"}) >= 7')
    # A (route, status, outcome) series is born with its first request, so only a second round of
    # traffic shows as an increase: rate() needs two samples of a series.
    traffic(watched_router)
    fake_openai.fail_n_times(1, code=500)
    assert chat(watched_router, "/chat/local").status_code == 502
    _wait(lambda: _has_rate(prometheus), "a rate over the traffic", timeout=10)
    empty = []
    for expr in dashboard_expressions():
        if expr.startswith("label_values("):
            continue  # a Grafana function, not PromQL; its metric is checked in the test above
        result = prometheus.query(concrete(expr, rate_interval="30s"))
        if not result and not metric_names([expr]) & set(PENDING):
            empty.append(expr)
    # Without errors or cancellations some panels are rightly empty; the ones every router fills are not.
    for expr in empty:
        assert not re.search(r"router_(requests_total|request_duration|routes|route_available)", expr), expr
    assert len(empty) < len(dashboard_expressions()) // 2, empty


def _has_rate(prometheus: PrometheusServer) -> bool:
    return bool(prometheus.query('sum(rate(router_requests_total{job="router"}[30s])) > 0'))


def _rules(prometheus: PrometheusServer) -> dict[str, dict[str, Any]]:
    groups = prometheus.api("rules", type="alert")["groups"]
    return {rule["name"]: rule for group in groups for rule in group["rules"]}


def _firing(prometheus: PrometheusServer, name: str | None = None) -> list[dict[str, Any]]:
    alerts = prometheus.api("alerts")["alerts"]
    return [a for a in alerts if a["state"] == "firing" and name in (None, a["labels"]["alertname"])]


def _wait_firing(prometheus: PrometheusServer, name: str, timeout: float) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def firing() -> bool:
        found[:] = _firing(prometheus, name)
        return bool(found)

    _wait(firing, f"{name} fires", timeout)
    return found[0]


def _wait(predicate: Callable[[], bool], what: str, timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting until {what}"
        time.sleep(0.25)


def test_with_keys_prometheus_scrapes_with_the_admin_key(
    fake_ollama: FakeOllama, fake_openai: FakeOpenAI, start_router: Start
) -> None:
    """/metrics needs the admin key when keys are configured: a scrape with it is up, one without is not."""
    admin = "admin-key-0123456789abcdef"
    router = start_router(
        table(
            upstreams={"ollama": {"type": "ollama", "base_url": fake_ollama.base_url}},
            routes=[{"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"}],
            auth={"admin_keys": [{"name": "prometheus", "key": "${ADMIN_KEY}"}]},
        ),
        env={"ADMIN_KEY": admin},
    )
    target = [f"127.0.0.1:{router.port}"]
    keyed_server = PrometheusServer(target, bearer=admin)
    with keyed_server as keyed, PrometheusServer(target, job="anonymous") as anonymous:
        assert number(keyed.wait_for('up{job="router"} == 1')) == 1
        assert number(keyed.wait_for('router_routes{job="router"}')) == 1
        assert number(anonymous.wait_for('up{job="anonymous"} == 0')) == 0
        assert anonymous.query('router_routes{job="anonymous"}') == []
