"""OpenTelemetry traces over real sockets: the router exports to an OTLP/HTTP receiver on loopback.

What a collector must see: one server span per request with the GenAI attributes, a child client span per
upstream attempt (a retry is two, a fallback is marked), a slot-wait span, the first-token event; the
client's `traceparent` continued and the upstream given one of the same trace; the trace id in the log
line. With tracing off: no spans, no exporter thread, no traceparent upstream. And the latency the
router adds: `X-Router-Overhead-Ms` and the two histograms.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from router.config import load_config_text
from router.config.models import TelemetrySettings
from router.observability.telemetry import resolve
from tests.fakes import FakeOllama, FakeOpenAI, wait_for
from tests.observability import scrape, value
from tests.observability.otlp_receiver import (
    CLIENT,
    INTERNAL,
    SERVER,
    STATUS_ERROR,
    STATUS_OK_OR_UNSET,
    OTLPReceiver,
    ReceivedSpan,
)
from tests.support.router_server import RunningRouter, free_port, table

Start = Callable[..., RunningRouter]
MESSAGES = [{"role": "user", "content": "hello there"}]
EXPORTER_THREAD = "OtelBatchSpanRecordProcessor"


@pytest.fixture(autouse=True)
def no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests decide what the environment says; a CI machine's OTEL_* must not leak in."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as running:
        yield running


def traced_table(fake: FakeOllama | FakeOpenAI, receiver: OTLPReceiver, **top: Any) -> str:
    return table(
        upstreams={"u": {"type": fake.kind, "base_url": fake.base_url, "max_concurrency": 4, "max_queue": 4}},
        routes=[{"path": "/chat/m", "model": fake.models[0], "upstream": "u"}],
        telemetry={"otlp_endpoint": receiver.url, "sample_ratio": 1.0, "service_name": "router-test"},
        **top,
    )


def chat(
    router: RunningRouter, path: str = "/chat/m", headers: dict[str, str] | None = None, **body: Any
) -> httpx.Response:
    return httpx.post(router.url + path, json={"messages": MESSAGES, **body}, headers=headers, timeout=10)


def spans_of(router: RunningRouter, receiver: OTLPReceiver, servers: int) -> list[ReceivedSpan]:
    """Flush the router's exporter until `servers` server spans (requests) have arrived."""

    def arrived() -> list[ReceivedSpan] | None:
        tracer = router.runtime.telemetry.tracer
        assert tracer is not None, "tracing is off"
        tracer.flush()
        spans = receiver.spans
        return spans if sum(span.kind == SERVER for span in spans) >= servers else None

    return wait_for(arrived)


def traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def children(spans: list[ReceivedSpan], parent: ReceivedSpan, kind: int) -> list[ReceivedSpan]:
    return [span for span in spans if span.parent_span_id == parent.span_id and span.kind == kind]


def the_server_span(spans: list[ReceivedSpan]) -> ReceivedSpan:
    (server,) = [span for span in spans if span.kind == SERVER]
    return server


def test_whole_answer_continues_the_clients_trace_with_genai_attributes(
    fake_ollama: FakeOllama, receiver: OTLPReceiver, start_router: Start, tmp_path: Path
) -> None:
    log_file = tmp_path / "router.log"
    router = start_router(traced_table(fake_ollama, receiver, logging={"file": str(log_file)}))
    header, trace_id, client_span = traceparent()
    started = time.perf_counter()
    response = chat(router, headers={"traceparent": header}, max_tokens=64)
    total_ms = (time.perf_counter() - started) * 1000.0
    assert response.status_code == 200
    usage = response.json()["usage"]

    spans = spans_of(router, receiver, 1)
    server = the_server_span(spans)
    assert (server.trace_id, server.parent_span_id) == (trace_id, client_span), "the client's trace goes on"
    assert server.name == "chat qwen3:32b"
    assert server.resource["service.name"] == "router-test"
    attributes = server.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == attributes["gen_ai.system"] == "ollama"
    assert attributes["gen_ai.request.model"] == "qwen3:32b"
    assert attributes["gen_ai.response.model"] == "qwen3:32b"
    assert attributes["gen_ai.request.max_tokens"] == 64
    assert attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"] == 5
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["http.response.status_code"] == 200
    assert attributes["http.route"] == attributes["router.route"] == "/chat/m"
    assert attributes["router.upstream"] == "u"
    assert attributes["router.retries"] == 0
    assert attributes["router.request_id"] == response.headers["x-request-id"]
    assert server.status_code in STATUS_OK_OR_UNSET

    (attempt,) = children(spans, server, CLIENT)
    assert attempt.trace_id == trace_id
    assert attempt.attributes["router.attempt"] == 0 and attempt.attributes["router.fallback"] is False
    assert attempt.attributes["server.address"] == "127.0.0.1"
    assert attempt.attributes["server.port"] == fake_ollama.port
    assert attempt.status_code in STATUS_OK_OR_UNSET
    (queue,) = children(spans, server, INTERNAL)
    assert queue.name == "queue wait" and queue.end_ns <= attempt.start_ns
    assert server.start_ns <= queue.start_ns and attempt.end_ns <= server.end_ns

    # The upstream was asked within the same trace, as the child of the attempt's span.
    sent = fake_ollama.last_request.headers["traceparent"]
    assert sent == f"00-{trace_id}-{attempt.span_id}-01"

    # The log line names the trace; the overhead header is there and smaller than the whole.
    line = wait_for(lambda: [json.loads(x) for x in log_file.read_text().splitlines() if '"request"' in x])
    assert line[-1]["trace_id"] == trace_id
    overhead = float(response.headers["x-router-overhead-ms"])
    assert 0 <= overhead < total_ms
    assert 0 <= line[-1]["overhead_ms"] < line[-1]["duration_ms"]


def test_a_retry_shows_as_two_attempt_spans(
    fake_ollama: FakeOllama, receiver: OTLPReceiver, start_router: Start
) -> None:
    router = start_router(traced_table(fake_ollama, receiver))
    fake_ollama.fail_n_times(1)
    response = chat(router)
    assert response.status_code == 200
    spans = spans_of(router, receiver, 1)
    server = the_server_span(spans)
    attempts = sorted(children(spans, server, CLIENT), key=lambda span: span.start_ns)
    assert [span.attributes["router.attempt"] for span in attempts] == [0, 1]
    failed, succeeded = attempts
    assert failed.status_code == STATUS_ERROR and failed.attributes["error.type"] == "UpstreamStatus"
    assert failed.attributes["http.response.status_code"] == 500
    assert succeeded.status_code in STATUS_OK_OR_UNSET
    assert failed.end_ns <= succeeded.start_ns
    assert server.attributes["router.retries"] == 1
    # Each attempt told the upstream its own span, in one trace.
    sent = [request.headers["traceparent"].split("-") for request in fake_ollama.requests]
    assert [parts[:3] for parts in sent] == [["00", server.trace_id, span.span_id] for span in attempts]
    assert all(int(parts[3], 16) & 1 for parts in sent), "sampled"
    assert len(children(spans, server, INTERNAL)) == 2, "a slot wait per attempt"


def test_a_fallback_is_marked_on_its_attempt(
    fake_openai: FakeOpenAI, receiver: OTLPReceiver, start_router: Start
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    text = table(
        upstreams={
            "down": {"type": "ollama", "base_url": down},
            "up": {"type": "openai", "base_url": fake_openai.base_url},
        },
        routes=[
            {"path": "/chat/a", "model": "qwen3:32b", "upstream": "down", "fallbacks": ["/chat/b"]},
            {"path": "/chat/b", "model": "smollm2", "upstream": "up"},
        ],
        defaults={"max_retries": 0},
        telemetry={"otlp_endpoint": receiver.url},
    )
    router = start_router(text)
    response = chat(router, "/chat/a")
    assert response.status_code == 200
    assert response.headers["x-router-route"] == "/chat/b"
    spans = spans_of(router, receiver, 1)
    server = the_server_span(spans)
    attempts = sorted(children(spans, server, CLIENT), key=lambda span: span.start_ns)
    first, fallback = attempts
    assert (first.attributes["router.route"], first.attributes["router.fallback"]) == ("/chat/a", False)
    assert first.status_code == STATUS_ERROR and first.attributes["error.type"] == "UpstreamUnavailable"
    assert "refused" in first.status_message or "connect" in first.status_message, first.status_message
    assert (fallback.attributes["router.route"], fallback.attributes["router.fallback"]) == ("/chat/b", True)
    assert fallback.attributes["gen_ai.provider.name"] == "openai"
    assert server.attributes["router.route"] == "/chat/b"
    assert server.attributes["gen_ai.provider.name"] == "openai"
    assert server.resource["service.name"] == "router"  # the default name
    assert fake_openai.last_request.headers["traceparent"].split("-")[1] == server.trace_id


def test_a_stream_has_its_first_token_event_and_the_latency_histograms(
    fake_ollama: FakeOllama, receiver: OTLPReceiver, start_router: Start
) -> None:
    router = start_router(traced_table(fake_ollama, receiver))
    started = time.perf_counter()
    with httpx.stream(
        "POST", router.url + "/chat/m", json={"messages": MESSAGES, "stream": True}, timeout=10
    ) as response:
        assert response.status_code == 200
        overhead = float(response.headers["x-router-overhead-ms"])
        body = response.read()
    total_ms = (time.perf_counter() - started) * 1000.0
    assert body.endswith(b"data: [DONE]\n\n")
    assert 0 <= overhead < total_ms

    spans = spans_of(router, receiver, 1)
    server = the_server_span(spans)
    assert server.attributes["router.stream"] is True
    (event,) = [event for event in server.events if event[0] == "first_token"]
    assert 0 < event[1]["router.ttft_ms"] < total_ms
    assert server.attributes["gen_ai.usage.output_tokens"] == 5

    samples = scrape(router)
    assert value(samples, "router_time_per_output_token_seconds_count", route="/chat/m") == 1
    assert (value(samples, "router_time_per_output_token_seconds_sum", route="/chat/m") or 0) >= 0
    assert value(samples, "router_overhead_seconds_count", route="/chat/m") == 1
    overhead_s = value(samples, "router_overhead_seconds_sum", route="/chat/m") or 0
    duration_s = value(samples, "router_request_duration_seconds_sum", route="/chat/m") or 0
    assert 0 <= overhead_s < duration_s


def test_overhead_histogram_and_header_for_whole_answers_with_tracing_off(
    fake_ollama: FakeOllama, start_router: Start
) -> None:
    router = start_router(
        table(
            upstreams={"u": {"type": "ollama", "base_url": fake_ollama.base_url}},
            routes=[{"path": "/chat/m", "model": "qwen3:32b", "upstream": "u"}],
        )
    )
    fake_ollama.set_behaviour("slow_first_token", seconds=0.2)
    response = chat(router)
    assert response.status_code == 200
    overhead_ms = float(response.headers["x-router-overhead-ms"])
    assert 0 <= overhead_ms < 100, "the upstream's 200 ms are not the router's"
    samples = scrape(router)
    assert value(samples, "router_overhead_seconds_count", route="/chat/m") == 1
    assert (value(samples, "router_overhead_seconds_sum", route="/chat/m") or 1) < 0.1
    assert (value(samples, "router_request_duration_seconds_sum", route="/chat/m") or 0) >= 0.2
    assert value(samples, "router_time_per_output_token_seconds_count", route="/chat/m") == 0, "streams only"


def test_tracing_off_sends_no_spans_starts_no_exporter_and_no_traceparent(
    fake_ollama: FakeOllama, receiver: OTLPReceiver, start_router: Start
) -> None:
    router = start_router(
        table(
            upstreams={"u": {"type": "ollama", "base_url": fake_ollama.base_url}},
            routes=[{"path": "/chat/m", "model": "qwen3:32b", "upstream": "u"}],
        )
    )
    header, _, _ = traceparent()
    assert chat(router, headers={"traceparent": header}).status_code == 200
    assert chat(router, stream=True).status_code == 200
    assert router.runtime.telemetry.tracer is None
    assert not [t for t in threading.enumerate() if t.name.startswith(EXPORTER_THREAD)]
    assert all("traceparent" not in request.headers for request in fake_ollama.requests)
    time.sleep(0.2)
    assert receiver.spans == [] and receiver.posts == 0


def test_environment_variables_turn_it_on_and_otel_sdk_disabled_off(
    fake_ollama: FakeOllama, receiver: OTLPReceiver, start_router: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    plain = table(
        upstreams={"u": {"type": "ollama", "base_url": fake_ollama.base_url}},
        routes=[{"path": "/chat/m", "model": "qwen3:32b", "upstream": "u"}],
    )
    router = start_router(plain)
    assert chat(router).status_code == 200
    (server,) = [span for span in spans_of(router, receiver, 1) if span.kind == SERVER]
    assert server.resource["service.name"] == "from-env"

    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    disabled = start_router(traced_table(fake_ollama, receiver))
    assert disabled.runtime.telemetry.tracer is None


def test_a_reload_reconfigures_tracing_at_commit(
    fake_ollama: FakeOllama, receiver: OTLPReceiver, start_router: Start
) -> None:
    router = start_router(traced_table(fake_ollama, receiver))
    first = router.runtime.telemetry.tracer
    assert first is not None
    renamed = traced_table(fake_ollama, receiver).replace("router-test", "renamed")
    router.call(lambda: router.runtime.apply(load_config_text(renamed, "t.yaml", env={})))
    second = router.runtime.telemetry.tracer
    assert second is not None and second is not first
    assert chat(router).status_code == 200
    (server,) = [span for span in spans_of(router, receiver, 1) if span.kind == SERVER]
    assert server.resource["service.name"] == "renamed"

    # The same block again keeps the tracer; no block turns tracing off and stops the exporter.
    router.call(lambda: router.runtime.apply(load_config_text(renamed, "t.yaml", env={})))
    assert router.runtime.telemetry.tracer is second
    plain = table(
        upstreams={"u": {"type": "ollama", "base_url": fake_ollama.base_url}},
        routes=[{"path": "/chat/m", "model": "qwen3:32b", "upstream": "u"}],
    )
    router.call(lambda: router.runtime.apply(load_config_text(plain, "t.yaml", env={})))
    assert router.runtime.telemetry.tracer is None
    wait_for(lambda: not [t for t in threading.enumerate() if t.name.startswith(EXPORTER_THREAD)])
    fake_ollama.clear_records()
    assert chat(router).status_code == 200
    assert "traceparent" not in fake_ollama.last_request.headers


def test_an_unsampled_client_trace_is_not_recorded_but_keeps_its_id(
    fake_ollama: FakeOllama, receiver: OTLPReceiver, start_router: Start, tmp_path: Path
) -> None:
    log_file = tmp_path / "router.log"
    router = start_router(traced_table(fake_ollama, receiver, logging={"file": str(log_file)}))
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    assert chat(router, headers={"traceparent": f"00-{trace_id}-{span_id}-00"}).status_code == 200
    lines = wait_for(lambda: [json.loads(x) for x in log_file.read_text().splitlines() if '"request"' in x])
    assert lines[-1]["trace_id"] == trace_id
    tracer = router.runtime.telemetry.tracer
    assert tracer is not None
    tracer.flush()
    assert receiver.spans == []


def test_settings_and_environment_resolve_once() -> None:
    """Which export the table and the OTEL_* variables ask for (unit, no sockets)."""
    off = TelemetrySettings()
    assert resolve(off, {}) is None
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/", "OTEL_TRACES_SAMPLER": "traceidratio"}
    export = resolve(off, {**env, "OTEL_TRACES_SAMPLER_ARG": "0.25"})
    assert export is not None
    assert (export.endpoint, export.sample_ratio, export.parent_based) == (
        "http://c:4318/v1/traces",
        0.25,
        False,
    )
    assert export.service_name == "router" and export.headers is None
    signal = resolve(off, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom"})
    assert signal is not None and signal.endpoint == "http://c:4318/custom"
    table_wins = TelemetrySettings(
        otlp_endpoint="http://t:4318",
        sample_ratio=0.5,
        service_name="gw",
        headers={"authorization": "Bearer x"},
    )
    export = resolve(table_wins, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"})
    assert export is not None
    assert (export.endpoint, export.sample_ratio, export.parent_based) == (
        "http://t:4318/v1/traces",
        0.5,
        True,
    )
    assert export.service_name == "gw" and export.headers == (("authorization", "Bearer x"),)
    strict = resolve(table_wins, {"OTEL_TRACES_SAMPLER": "traceidratio"})
    assert strict is not None and (strict.sample_ratio, strict.parent_based) == (0.5, False)
    assert resolve(table_wins, {"OTEL_SDK_DISABLED": "true"}) is None
    assert resolve(TelemetrySettings(enabled=False), env) is None
    assert resolve(off, {**env, "OTEL_TRACES_EXPORTER": "none"}) is None
    on = resolve(TelemetrySettings(enabled=True), {})
    assert on is not None and on.endpoint == "http://localhost:4318/v1/traces"


def test_an_absent_collector_costs_requests_nothing(fake_ollama: FakeOllama, start_router: Start) -> None:
    """Spans for a collector nobody runs are dropped in the exporter's thread; answers do not wait."""
    text = table(
        upstreams={"u": {"type": "ollama", "base_url": fake_ollama.base_url}},
        routes=[{"path": "/chat/m", "model": "qwen3:32b", "upstream": "u"}],
        telemetry={"otlp_endpoint": f"http://127.0.0.1:{free_port()}", "timeout": 1, "max_queue_size": 8},
    )
    router = start_router(text)
    for _ in range(20):  # more spans than the queue holds
        started = time.perf_counter()
        assert chat(router).status_code == 200
        assert time.perf_counter() - started < 1.0
    assert router.runtime.telemetry.tracer is not None


def test_collector_headers_are_secrets(fake_ollama: FakeOllama) -> None:
    from router.security import config_secrets

    text = table(
        upstreams={"u": {"type": "ollama", "base_url": fake_ollama.base_url}},
        routes=[{"path": "/chat/m", "model": "qwen3:32b", "upstream": "u"}],
        telemetry={
            "otlp_endpoint": "http://otel:s3cret-in-url@c:4318",
            "headers": {"x-api": "Bearer s3cret-collector-token"},
        },
    )
    secrets_of = config_secrets(load_config_text(text, "t.yaml", env={}))
    assert {"Bearer s3cret-collector-token", "s3cret-collector-token", "s3cret-in-url"} <= secrets_of
