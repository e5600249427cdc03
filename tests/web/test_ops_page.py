"""The operations page (`/ops`) in Debian's Chromium: live table, charts and reloads against a real router.

Screenshots go to tests/artifacts/web/ops-*.png. The page is fed by /status, /events, /ops/series and
/usage; a router without /usage (before it existed) answers 404 there, which the page states instead of
failing (and which Chromium reports as a failed resource load, the one console error these tests allow).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes import FakeOllama, FakeOpenAI
from tests.support.router_server import RunningRouter, table
from tests.web.conftest import ARTIFACTS

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
ADMIN = "admin-key-0123456789abcdef"
UNHEALTHY_SHOWN_WITHIN = 3.0  # seconds from the upstream going away to the page saying so


def ops_table(ollama: FakeOllama, openai: FakeOpenAI, local_max_tokens: int = 64, **top: Any) -> str:
    return table(
        upstreams={
            "ollama": {"type": "ollama", "base_url": ollama.base_url},
            "local": {"type": "openai", "base_url": openai.base_url},
        },
        routes=[
            {"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"},
            {"path": "/chat/local", "model": "smollm2", "upstream": "local", "max_tokens": local_max_tokens},
        ],
        defaults={"health_check": HEALTH},
        **top,
    )


@pytest.fixture
def ops_router(fake_ollama: FakeOllama, fake_openai: FakeOpenAI, start_router: Start) -> RunningRouter:
    return start_router(ops_table(fake_ollama, fake_openai))


@pytest.fixture
def open_ops(browser: Any) -> Iterator[Callable[..., Any]]:
    """`open_ops(router)`: a fresh context (empty localStorage) on /ops, once the page has loaded."""
    contexts: list[Any] = []

    def open_(router: RunningRouter, key: str | None = None) -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 1100})
        context.set_default_timeout(10_000)
        contexts.append(context)
        if key is not None:
            context.add_init_script(f"localStorage.setItem('router.apiKey', {key!r})")
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
        page.goto(router.url + "/ops")
        page.wait_for_selector("body[data-ready=true]")
        return page

    yield open_
    for context in contexts:
        context.close()


def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    """Poll from Python: the page's CSP (no eval) refuses Playwright's wait_for_function."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not true within {timeout} s"
        time.sleep(0.1)


def shoot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def real_errors(page: Any) -> list[str]:
    """Page errors, but the failed load of /usage on a router that has none (a 404 the page explains)."""
    return [e for e in page.errors if not ("Failed to load resource" in e and "404" in e)]


class Traffic:
    """Requests on both routes from a background thread until stopped (bounded: at most 30 s)."""

    def __init__(self, router: RunningRouter) -> None:
        self.router = router
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                for path, stream in (("/chat/qwen3", False), ("/chat/local", True)):
                    body = {"messages": MESSAGES, "stream": stream}
                    client.post(self.router.url + path, json=body)
                    self.sent += 1
                time.sleep(0.05)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def test_the_table_and_charts_show_live_data(ops_router: RunningRouter, open_ops: Callable[..., Any]) -> None:
    page = open_ops(ops_router)
    for path in ("/chat/qwen3", "/chat/local"):
        page.wait_for_selector(f'tr[data-route="{path}"][data-state="healthy"]')
    with Traffic(ops_router):
        for chart in ("chart-rps", "chart-latency", "chart-tokens"):
            wait_for(lambda c=chart: int(page.locator(f"#{c}").get_attribute("data-points")) >= 4, 15)
        in_table = page.locator('tr[data-route="/chat/qwen3"] th').inner_text()
    assert in_table == "/chat/qwen3"
    rows = page.locator("#routes tbody tr")
    assert rows.count() == 2
    first = rows.nth(0).locator("td").all_inner_texts()
    assert first[0] == "qwen3:32b" and "healthy" in first[1] and first[2] == "ollama"
    assert "closed" in first[4], "the breaker column"
    for chart in ("chart-rps", "chart-latency", "chart-tokens"):
        assert page.locator(f"#{chart} canvas").count() == 1, f"uPlot drew {chart}"
    legend = page.locator("#chart-latency").inner_text()
    assert "p50 /chat/qwen3" in legend and "p99 /chat/local" in legend
    # the router has GET /usage: the page shows its document rather than a note that it has none
    wait_for(lambda: '"keep_days"' in (page.locator("#usage-raw").text_content() or ""), 5)
    assert "no GET /usage" not in page.locator("#usage-note").inner_text()
    assert page.locator("#live").get_attribute("data-state") == "live"
    shoot(page, "ops-live")
    assert real_errors(page) == [], page.errors


def test_a_route_going_down_shows_within_a_bound(
    ops_router: RunningRouter, open_ops: Callable[..., Any], fake_ollama: FakeOllama
) -> None:
    page = open_ops(ops_router)
    page.wait_for_selector('tr[data-route="/chat/qwen3"][data-state="healthy"]')
    started = time.monotonic()
    fake_ollama.go_down()
    page.wait_for_selector(
        'tr[data-route="/chat/qwen3"][data-state="unavailable"]', timeout=UNHEALTHY_SHOWN_WITHIN * 1000
    )
    elapsed = time.monotonic() - started
    assert elapsed < UNHEALTHY_SHOWN_WITHIN
    row = page.locator('tr[data-route="/chat/qwen3"]')
    assert "unhealthy" in row.locator("td").all_inner_texts()[3]
    assert page.locator('tr[data-route="/chat/local"]').get_attribute("data-state") == "healthy"
    shoot(page, "ops-route-down")
    fake_ollama.come_up()
    page.wait_for_selector('tr[data-route="/chat/qwen3"][data-state="healthy"]')
    assert real_errors(page) == [], page.errors


def test_a_reload_appears_in_the_history_with_its_diff(
    tmp_path: Path, fake_ollama: FakeOllama, fake_openai: FakeOpenAI, open_ops: Callable[..., Any]
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ops_table(fake_ollama, fake_openai))
    router = RunningRouter.from_file(str(routes))
    router.runtime.watch = False  # reloads come from POST /admin/reload only, so the test knows when
    with router:
        page = open_ops(router)
        assert page.locator("#reloads li.reload").count() == 0
        routes.write_text(ops_table(fake_ollama, fake_openai, local_max_tokens=128))
        assert httpx.post(router.url + "/admin/reload", timeout=10).status_code == 200
        page.wait_for_selector('li.reload[data-ok="true"]')
        applied = page.locator('li.reload[data-ok="true"]').inner_text()
        assert "applied" in applied and "on admin" in applied
        assert "/chat/local" in applied and "max_tokens" in applied and "128" in applied, applied
        routes.write_text("version: 1\nroutes: [oops\n")
        assert httpx.post(router.url + "/admin/reload", timeout=10).status_code == 422
        page.wait_for_selector('li.reload[data-ok="false"]')
        refused = page.locator("#reloads li.reload").first.inner_text()
        assert "refused" in refused and "routes.yaml" in refused, refused
        assert page.locator("#reloads li.reload").count() == 2
        shoot(page, "ops-reloads")
        assert real_errors(page) == [], page.errors


def test_the_page_asks_for_the_admin_key_and_uses_the_stored_one(
    fake_ollama: FakeOllama, fake_openai: FakeOpenAI, start_router: Start, open_ops: Callable[..., Any]
) -> None:
    keys = {"admin_keys": [{"name": "ops", "key": "${ADMIN_KEY}"}]}
    router = start_router(ops_table(fake_ollama, fake_openai, auth=keys), env={"ADMIN_KEY": ADMIN})
    page = open_ops(router)
    notice = page.locator("#notice")
    assert notice.is_visible() and "admin key" in notice.inner_text()
    assert page.locator("#routes tbody tr").count() == 0, "nothing is shown without the key"
    shoot(page, "ops-needs-key")
    page.fill("#api-key", ADMIN)
    page.click("#key-form button")
    page.wait_for_selector('tr[data-route="/chat/qwen3"]')
    wait_for(lambda: page.locator("#notice").is_hidden(), 10)
    page.wait_for_selector('#live[data-state="live"]')
    # The chat page's key storage: a fresh page in the same browser profile starts with it.
    again = open_ops(router, key=ADMIN)
    again.wait_for_selector('tr[data-route="/chat/local"]')
    assert again.locator("#notice").is_hidden()
    assert [e for e in real_errors(page) if "401" not in e] == [], page.errors


def test_token_use_per_key_against_its_quota(ops_router: RunningRouter, open_ops: Callable[..., Any]) -> None:
    """Per-key figures come from the agreed metric names (router_tokens_total{key}, router_quota_used and
    router_quota_limit{key,quota}); a collector adds them here as token accounting would. (A collector
    without `describe` is not checked for duplicate names, so this keeps working once the router
    registers these metrics itself: its series are at zero in this test.)"""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector

    class Accounting(Collector):
        def collect(self) -> Iterator[Metric]:
            tokens = CounterMetricFamily("router_tokens", "", labels=["route", "key", "type"])
            tokens.add_metric(["/chat/qwen3", "team-a", "prompt"], 1200)
            tokens.add_metric(["/chat/qwen3", "team-a", "completion"], 300)
            tokens.add_metric(["/chat/local", "team-b", "completion"], 40)
            used = GaugeMetricFamily("router_quota_used", "", labels=["key", "quota"])
            used.add_metric(["team-a", "tokens_per_day"], 95_000)
            limit = GaugeMetricFamily("router_quota_limit", "", labels=["key", "quota"])
            limit.add_metric(["team-a", "tokens_per_day"], 100_000)
            yield from (tokens, used, limit)

    ops_router.runtime.metrics.registry.register(Accounting())
    page = open_ops(ops_router)
    page.wait_for_selector('#usage tr[data-key="team-a"]')
    wait_for(lambda: page.locator('#usage tr[data-key="team-b"]').count() == 1, 5)
    team_a = page.locator('#usage tr[data-key="team-a"] td').all_inner_texts()
    assert team_a[0] == "1,500", "prompt and completion tokens of every route"
    assert "95,000 / 100,000 tokens_per_day" in team_a[1] and "95%" in team_a[2], team_a
    assert page.locator('#usage tr[data-key="team-a"] meter').count() == 1
    team_b = page.locator('#usage tr[data-key="team-b"] td').all_inner_texts()
    assert team_b[:2] == ["40", "no quota"]
    shoot(page, "ops-usage")
    assert real_errors(page) == [], page.errors


def test_the_vendored_uplot_is_the_recorded_version() -> None:
    from router.api.web import WEB_DIR

    vendor = WEB_DIR / "vendor"
    recorded = re.search(r"^\| uplot \| ([0-9.]+) \|", (vendor / "README.md").read_text(), re.M)
    assert recorded is not None, "router/web/vendor/README.md records the uPlot version"
    assert f"(v{recorded.group(1)})" in (vendor / "uPlot.iife.min.js").read_text()[:100]
    assert (vendor / "uplot.LICENSE").read_text().startswith("The MIT License")
    assert (vendor / "uPlot.min.css").stat().st_size > 1000
