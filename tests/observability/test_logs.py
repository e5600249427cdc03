"""The structured log: one JSON line per request, state changes and reloads as events, level and format."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from router.config.models import LoggingSettings
from router.observability import RequestRecord, StructuredLog
from router.upstreams.errors import UpstreamTimeout
from tests.fakes import FakeOllama, wait_for
from tests.support.router_server import RunningRouter, table

Start = Callable[..., RunningRouter]
MESSAGES = [{"role": "user", "content": "hello there"}]
REQUEST_FIELDS = {
    "trace_id",
    "overhead_ms",
    "dialect",
    "time",
    "level",
    "event",
    "request_id",
    "route",
    "model",
    "upstream",
    "status",
    "outcome",
    "duration_ms",
    "ttft_ms",
    "prompt_tokens",
    "tokens_estimated",
    "completion_tokens",
    "retries",
    "stream",
    "key",
}


def lines(file: Path) -> list[dict[str, Any]]:
    """The log file's lines, each parsed as JSON (fails on any line that is not)."""
    if not file.exists():
        return []
    return [json.loads(line) for line in file.read_text().splitlines()]


def requests_in(file: Path) -> list[dict[str, Any]]:
    return [line for line in lines(file) if line["event"] == "request"]


def logged_table(fake: FakeOllama, file: Path, **logging_settings: Any) -> str:
    return table(
        upstreams={
            "u": {"type": "ollama", "base_url": fake.base_url, "circuit_breaker": {"failure_threshold": 2}}
        },
        routes=[{"path": "/chat/m", "model": "qwen3:32b", "upstream": "u"}],
        defaults={"max_retries": 0},
        logging={"file": str(file), **logging_settings},
    )


def chat(router: RunningRouter, path: str = "/chat/m", **body: Any) -> httpx.Response:
    return httpx.post(router.url + path, json={"messages": MESSAGES, **body}, timeout=10)


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    return tmp_path / "router.log"


def test_one_json_line_per_request_with_every_field(
    fake_ollama: FakeOllama, start_router: Start, log_file: Path
) -> None:
    router = start_router(logged_table(fake_ollama, log_file))
    whole = chat(router)
    streamed = chat(router, stream=True)
    assert whole.status_code == streamed.status_code == 200
    wait_for(lambda: len(requests_in(log_file)) == 2)
    first, second = requests_in(log_file)
    assert set(first) == REQUEST_FIELDS
    assert first["request_id"] == whole.headers["x-request-id"]
    assert second["request_id"] == streamed.headers["x-request-id"]
    assert first["dialect"] == second["dialect"] == "openai_chat"
    for line in (first, second):
        assert line["level"] == "info"
        assert (line["route"], line["model"], line["upstream"]) == ("/chat/m", "qwen3:32b", "u")
        assert (line["status"], line["outcome"], line["retries"]) == (200, "ok", 0)
        assert line["completion_tokens"] == 5 and line["prompt_tokens"] > 0
        assert line["tokens_estimated"] is False and line["dialect"] == "openai_chat"
        assert line["duration_ms"] > 0
        assert 0 <= line["overhead_ms"] < line["duration_ms"]
        assert line["trace_id"] is None  # tracing is off
        assert line["time"].endswith("Z")
    assert first["ttft_ms"] is None and first["stream"] is False
    assert 0 < second["ttft_ms"] <= second["duration_ms"] and second["stream"] is True


def test_failures_name_their_outcome(fake_ollama: FakeOllama, start_router: Start, log_file: Path) -> None:
    router = start_router(logged_table(fake_ollama, log_file))
    assert chat(router, "/v1/chat/completions", model="nope").status_code == 404
    fake_ollama.set_behaviour("status", code=500)
    assert chat(router).status_code == 502
    fake_ollama.reset()
    fake_ollama.chunk_delay = 0.05
    fake_ollama.reply_tokens = 100
    with (
        httpx.Client(timeout=10) as client,
        client.stream("POST", router.url + "/chat/m", json={"messages": MESSAGES, "stream": True}) as r,
    ):
        next(r.iter_bytes())
    wait_for(lambda: len(requests_in(log_file)) == 3)
    unknown, failed, cancelled = requests_in(log_file)
    assert (unknown["status"], unknown["outcome"], unknown["route"]) == (404, "invalid_request", "-")
    assert "nope" in unknown["error"]
    assert (failed["status"], failed["outcome"], failed["level"]) == (502, "upstream_error", "warning")
    assert "HTTP 500" in failed["error"]
    assert (cancelled["status"], cancelled["outcome"]) == (200, "client_cancelled")


def test_breaker_transitions_and_reloads_are_logged_as_events(
    fake_ollama: FakeOllama, tmp_path: Path, log_file: Path
) -> None:
    file = tmp_path / "routes.yaml"
    text = logged_table(fake_ollama, log_file)
    file.write_text(text)
    with RunningRouter.from_file(str(file)) as router:
        fake_ollama.set_behaviour("status", code=500)
        for _ in range(2):
            assert chat(router).status_code == 502
        file.write_text(text + "bogus: 1\n")
        assert httpx.post(router.url + "/admin/reload", timeout=10).status_code == 422
        wait_for(lambda: any(line["event"] == "reload" for line in lines(log_file)))
    [opened] = [line for line in lines(log_file) if line["event"] == "breaker"]
    assert (opened["upstream"], opened["old"], opened["new"], opened["level"]) == (
        "u",
        "closed",
        "open",
        "warning",
    )
    reload = next(line for line in lines(log_file) if line["event"] == "reload")
    assert reload["ok"] is False and reload["level"] == "warning"
    assert any("bogus" in problem for problem in reload["problems"])


def test_level_filters_request_lines_but_not_server_errors(
    fake_ollama: FakeOllama, start_router: Start, log_file: Path
) -> None:
    router = start_router(logged_table(fake_ollama, log_file, level="warning"))
    assert chat(router).status_code == 200
    fake_ollama.set_behaviour("status", code=500)
    assert chat(router).status_code == 502
    wait_for(lambda: len(requests_in(log_file)) == 1)
    [line] = requests_in(log_file)
    assert line["status"] == 502


def test_text_format_is_one_readable_line(
    fake_ollama: FakeOllama, start_router: Start, log_file: Path
) -> None:
    router = start_router(logged_table(fake_ollama, log_file, format="text"))
    assert chat(router).status_code == 200
    wait_for(lambda: log_file.exists() and "request" in log_file.read_text())
    [line] = log_file.read_text().splitlines()
    assert line.split()[1] == "[info"
    assert "route=/chat/m" in line and "status=200" in line and "outcome=ok" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def record(**fields: Any) -> RequestRecord:
    rec = RequestRecord("rid-1")
    for key, val in fields.items():
        setattr(rec, key, val)
    return rec


def test_reconfiguring_moves_the_log_and_redacts_errors(tmp_path: Path) -> None:
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    log = StructuredLog(LoggingSettings(file=str(first)), redact=lambda text: text.replace("s3cret", "[X]"))
    rec = record(route="/chat/m")
    rec.close(504, UpstreamTimeout("upstream said s3cret"))
    log.request_finished(rec)
    log.configure(LoggingSettings(file=str(second), level="error"))
    log.request_finished(rec)  # 504 is logged at warning: below error now
    log.configure(LoggingSettings(file=str(second)))
    log.request_finished(rec)
    log.close()
    [a] = lines(first)
    [b] = lines(second)
    assert a["error"] == b["error"] == "upstream said [X]"
    assert a["outcome"] == "timeout"


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_standard_library_logs_share_the_format(tmp_path: Path, restore_root_logging: None) -> None:
    file = tmp_path / "router.log"
    log = StructuredLog(LoggingSettings(file=str(file)), redact=lambda text: text.replace("hunter2", "[X]"))
    log.install_stdlib()
    logging.getLogger("router.test").warning("password is %s", "hunter2")
    try:
        raise ValueError("boom hunter2")
    except ValueError:
        logging.getLogger("router.test").exception("it failed")
    logging.getLogger("router.test").debug("not at info level")
    log.close()
    warning, failure = lines(file)
    assert (warning["level"], warning["event"], warning["logger"]) == (
        "warning",
        "password is [X]",
        "router.test",
    )
    assert failure["level"] == "error" and "ValueError: boom [X]" in failure["exception"]
