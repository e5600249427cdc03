"""`GET /metrics`: request counters and histograms, tokens, live gauges, breakers, reloads, cardinality."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import prometheus_client

from tests.fakes import FakeOllama, FakeOpenAI, wait_for
from tests.observability import label_values, scrape, value
from tests.support.router_server import RunningRouter, table

Start = Callable[..., RunningRouter]
MESSAGES = [{"role": "user", "content": "hello there"}]


def chat(router: RunningRouter, path: str = "/chat/qwen3", **body: object) -> httpx.Response:
    return httpx.post(router.url + path, json={"messages": MESSAGES, **body}, timeout=10)


def one_route(fake: FakeOllama | FakeOpenAI, **upstream: object) -> str:
    model = fake.models[0]
    return table(
        upstreams={"u": {"type": fake.kind, "base_url": fake.base_url, **upstream}},
        routes=[{"path": "/chat/m", "model": model, "upstream": "u"}],
        defaults={"max_retries": 2},
    )


def test_requests_latency_and_tokens_by_route(both_upstreams_router: RunningRouter) -> None:
    router = both_upstreams_router
    assert chat(router).status_code == 200
    assert chat(router, stream=True).status_code == 200
    assert chat(router, "/v1/chat/completions", model="local").status_code == 200
    samples = scrape(router)

    ok = {"status": "200", "outcome": "ok"}
    assert value(samples, "router_requests_total", route="/chat/qwen3", **ok) == 2
    assert value(samples, "router_requests_total", route="/chat/local", **ok) == 1
    assert value(samples, "router_request_duration_seconds_count", route="/chat/qwen3") == 2
    assert (value(samples, "router_request_duration_seconds_sum", route="/chat/qwen3") or 0) > 0
    assert value(samples, "router_request_duration_seconds_bucket", route="/chat/qwen3", le="+Inf") == 2
    assert value(samples, "router_time_to_first_token_seconds_count", route="/chat/qwen3") == 1, (
        "streams only"
    )
    assert value(samples, "router_time_to_first_token_seconds_count", route="/chat/local") == 0
    assert value(samples, "router_completion_tokens_total", route="/chat/qwen3") == 10  # 5 a reply
    assert (value(samples, "router_prompt_tokens_total", route="/chat/qwen3") or 0) > 0
    assert value(samples, "router_retries_total", route="/chat/qwen3") == 0


def test_series_exist_at_zero_before_any_request(both_upstreams_router: RunningRouter) -> None:
    samples = scrape(both_upstreams_router)
    for route in ("/chat/qwen3", "/chat/local"):
        assert value(samples, "router_request_duration_seconds_count", route=route) == 0
        assert value(samples, "router_in_flight_requests", route=route) == 0
        assert value(samples, "router_upstream_healthy", route=route, upstream=route.rsplit("/")[-1]) in (
            None,
            1,
        )
    assert value(samples, "router_routes") == 2
    assert value(samples, "router_config_reloads_total", result="failure") == 0
    assert value(samples, "router_config_last_reload_successful") == 1


def test_unknown_paths_and_models_add_no_label_values(both_upstreams_router: RunningRouter) -> None:
    router = both_upstreams_router
    assert chat(router, "/chat/evil-path").status_code == 404
    assert chat(router, "/v1/chat/completions", model="evil-model").status_code == 404
    assert chat(router, "/chat/qwen3/evil-suffix").status_code in (404, 405)
    assert httpx.get(router.url + "/evil?x=1", timeout=5).status_code == 404
    assert httpx.post(router.url + "/chat/qwen3", content=b"{evil", timeout=5).status_code == 400
    samples = scrape(router)
    text = " ".join(v for (_, labels) in samples for _, v in labels)
    assert "evil" not in text
    assert label_values(samples, "route") <= {"/chat/qwen3", "/chat/local", "-"}
    assert label_values(samples, "model") == set()  # no model label at all
    assert value(samples, "router_requests_total", route="-", status="404", outcome="invalid_request") == 1
    assert value(samples, "router_requests_total", route="-", status="400", outcome="invalid_request") == 1


def test_upstream_errors_retries_and_breaker_state(fake_ollama: FakeOllama, start_router: Start) -> None:
    router = start_router(one_route(fake_ollama, circuit_breaker={"failure_threshold": 3}))
    fake_ollama.fail_n_times(2, code=500)
    assert chat(router, "/chat/m").status_code == 200  # the third attempt, the second retry, answers
    assert value(scrape(router), "router_retries_total", route="/chat/m") == 2
    fake_ollama.set_behaviour("status", code=500)
    assert chat(router, "/chat/m").status_code == 502
    samples = scrape(router)
    assert (
        value(samples, "router_requests_total", route="/chat/m", status="502", outcome="upstream_error") == 1
    )
    assert value(samples, "router_retries_total", route="/chat/m") == 4, "failed requests' retries count too"
    assert value(samples, "router_circuit_breaker_state", upstream="u", state="open") == 1
    assert value(samples, "router_circuit_breaker_state", upstream="u", state="closed") == 0
    assert value(samples, "router_route_available", route="/chat/m") == 0
    assert chat(router, "/chat/m").status_code == 503
    samples = scrape(router)
    assert value(samples, "router_requests_total", route="/chat/m", status="503", outcome="rejected") == 1


def test_in_flight_and_queued_are_read_at_scrape_time(fake_ollama: FakeOllama, start_router: Start) -> None:
    router = start_router(one_route(fake_ollama, max_concurrency=1, max_queue=4))
    fake_ollama.set_behaviour("slow_first_token", seconds=1.0)
    threads = [threading.Thread(target=chat, args=(router, "/chat/m")) for _ in range(2)]
    for thread in threads:
        thread.start()

    def busy() -> bool:
        samples = scrape(router)
        return (
            value(samples, "router_in_flight_requests", route="/chat/m") == 2
            and value(samples, "router_queued_requests", route="/chat/m") == 1
            and value(samples, "router_upstream_in_flight_requests", upstream="u") == 1
            and value(samples, "router_upstream_queued_requests", upstream="u") == 1
        )

    wait_for(busy, timeout=5)
    for thread in threads:
        thread.join()
    samples = scrape(router)
    assert value(samples, "router_in_flight_requests", route="/chat/m") == 0
    assert value(samples, "router_queued_requests", route="/chat/m") == 0


def test_health_gauge_follows_probes(fake_openai: FakeOpenAI, start_router: Start) -> None:
    fast = {"enabled": True, "interval": 0.05, "timeout": 0.5, "failure_threshold": 1, "jitter": 0}
    text = table(
        upstreams={"u": {"type": "openai", "base_url": fake_openai.base_url}},
        routes=[{"path": "/chat/m", "model": "smollm2", "upstream": "u"}],
        defaults={"health_check": {**fast, "recovery_interval": 0.05, "recovery_threshold": 1}},
    )
    router = start_router(text)
    healthy = {"route": "/chat/m", "upstream": "u"}
    wait_for(lambda: value(scrape(router), "router_upstream_healthy", **healthy) == 1)
    fake_openai.probe_status = 500
    wait_for(lambda: value(scrape(router), "router_upstream_healthy", **healthy) == 0)
    fake_openai.probe_status = None
    wait_for(lambda: value(scrape(router), "router_upstream_healthy", **healthy) == 1)


def test_client_cancellations_are_counted(fake_ollama: FakeOllama, start_router: Start) -> None:
    router = start_router(one_route(fake_ollama))
    fake_ollama.chunk_delay = 0.05
    fake_ollama.reply_tokens = 200
    with httpx.Client(timeout=10) as client:
        request = {"messages": MESSAGES, "stream": True}
        with client.stream("POST", router.url + "/chat/m", json=request) as response:
            next(response.iter_bytes())  # the answer started; now hang up
    labels = {"route": "/chat/m", "status": "200", "outcome": "client_cancelled"}
    wait_for(lambda: value(scrape(router), "router_requests_total", **labels) == 1)
    assert value(scrape(router), "router_client_cancellations_total", route="/chat/m") == 1


def test_reloads_by_result_and_last_success(fake_ollama: FakeOllama, tmp_path: Path) -> None:
    good = one_route(fake_ollama)
    file = tmp_path / "routes.yaml"
    file.write_text(good)
    with RunningRouter.from_file(str(file)) as router:
        started = value(scrape(router), "router_config_last_reload_success_timestamp_seconds") or 0
        file.write_text(good + "bogus: 1\n")
        assert httpx.post(router.url + "/admin/reload", timeout=10).status_code == 422
        samples = scrape(router)
        assert (value(samples, "router_config_reloads_total", result="failure") or 0) >= 1  # + the watcher
        assert value(samples, "router_config_last_reload_successful") == 0
        assert value(samples, "router_config_last_reload_success_timestamp_seconds") == started
        time.sleep(0.01)
        file.write_text(good.replace("/chat/m", "/chat/n"))
        assert httpx.post(router.url + "/admin/reload", timeout=10).status_code == 200
        samples = scrape(router)
        assert (value(samples, "router_config_reloads_total", result="success") or 0) >= 1
        assert value(samples, "router_config_last_reload_successful") == 1
        assert (value(samples, "router_config_last_reload_success_timestamp_seconds") or 0) > started
        assert value(samples, "router_in_flight_requests", route="/chat/n") == 0
        assert value(samples, "router_in_flight_requests", route="/chat/m") is None, (
            "live gauges: current table"
        )


def test_each_runtime_has_its_own_registry(both_upstreams_router: RunningRouter) -> None:
    assert chat(both_upstreams_router).status_code == 200
    assert not [m for m in prometheus_client.REGISTRY.collect() if m.name.startswith("router_")]
    response = httpx.get(both_upstreams_router.url + "/metrics", timeout=5)
    assert response.headers["content-type"].startswith("text/plain")
    assert "_created" not in response.text
