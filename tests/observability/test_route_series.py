"""Per-route series of a large table: every route shows at zero before its first request, with no series
object made for a route until it is used (a 10,000-route table made 80,000 of them before serving)."""

from __future__ import annotations

from router.config import load_config_text
from router.observability.metrics import RouterMetrics
from router.observability.record import RequestRecord
from router.runtime import Runtime
from router.table import RouteTable
from tests.support.router_server import table

COUNT = 50


def served_table() -> RouteTable:
    upstreams = {"u": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}}
    routes = [{"path": f"/chat/r{i}", "model": f"m{i}", "upstream": "u"} for i in range(COUNT)]
    config = load_config_text(table(upstreams, routes), "t.yaml", env={})
    return Runtime(config).prepare(config).table


def exposition(metrics: RouterMetrics) -> list[str]:
    lines = metrics.render().decode().splitlines()
    return sorted(
        line for line in lines if not line.startswith("router_config_last_reload_success_timestamp")
    )


def finished(route: str) -> RequestRecord:
    record = RequestRecord(request_id="r", started=0.0, route=route, model="m", upstream="u")
    record.status, record.outcome, record.ended_at, record.retries = 200, "ok", 0.5, 1
    return record


def test_unused_routes_show_at_zero_exactly_as_series_made_up_front() -> None:
    served = served_table()
    lazy = RouterMetrics(lambda: served)
    eager = RouterMetrics(lambda: served)
    for route in served.routes:  # what the router did before: a series per route at each table version
        eager._route(route.path)
    assert lazy._series == {} and exposition(lazy) == exposition(eager)
    assert (
        sum(line.startswith('router_request_duration_seconds_count{route="') for line in exposition(lazy))
        == COUNT
    )
    for metrics in (lazy, eager):
        metrics.request_finished(finished("/chat/r7"))
    assert list(lazy._series) == ["/chat/r7"] and exposition(lazy) == exposition(eager)
    assert 'router_retries_total{route="/chat/r7"} 1.0' in exposition(lazy)
    assert 'router_retries_total{route="/chat/r8"} 0.0' in exposition(lazy)
