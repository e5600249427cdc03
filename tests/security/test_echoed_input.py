"""What a client (or an upstream repeating it) sends is never echoed whole into an answer or the log.

A 500 KB model name used to come back as a 500 KB error message and a 500 KB request-log line. Every
client value quoted in a message is now cut (`router.echo`), and the request log bounds its fields.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from router.config.models import LoggingSettings
from router.echo import quoted, shown
from router.errors import InvalidRequest
from router.observability import RequestRecord, StructuredLog
from tests.fakes import FakeOllama, FakeOpenAI, wait_for
from tests.support.router_server import RunningRouter, table

HUGE = 500_000
SMALL_BODY = 1_000  # bytes: an error body quoting a cut value, with room to spare
SMALL_LINE = 3_000  # bytes: one request-log line, whatever the client sent


def test_shown_and_quoted() -> None:
    assert shown("gpt-4") == "gpt-4" and quoted("gpt-4") == "'gpt-4'"
    long = "m" * HUGE
    assert shown(long) == "m" * 120 + f"... ({HUGE} characters)"
    assert quoted(long) == "'" + "m" * 120 + f"'... ({HUGE} characters)"
    assert shown("x" * 121, 120).endswith("(121 characters)") and shown("x" * 120, 120) == "x" * 120


@pytest.fixture
def logged_router(
    fake_ollama: FakeOllama,
    fake_openai: FakeOpenAI,
    start_router: Callable[..., RunningRouter],
    tmp_path: Path,
) -> tuple[RunningRouter, Path]:
    log = tmp_path / "router.log"
    text = table(
        upstreams={
            "ollama": {"type": "ollama", "base_url": fake_ollama.base_url},
            "local": {"type": "openai", "base_url": fake_openai.base_url},
        },
        routes=[
            {"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"},
            {"path": "/chat/local", "model": "smollm2", "upstream": "local"},
        ],
        defaults={"max_retries": 0},
        logging={"file": str(log)},
    )
    return start_router(text), log


def request_lines(log: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return [line for line in lines if line["event"] == "request"]


def test_a_huge_model_name_gives_a_small_error_and_a_small_log_line(
    logged_router: tuple[RunningRouter, Path],
) -> None:
    router, log = logged_router
    model = "m" * HUGE
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(router.url + "/v1/chat/completions", json=body, timeout=10)
    assert response.status_code == 404
    assert len(response.content) < SMALL_BODY
    error = response.json()["error"]
    assert error["param"] == "model" and f"({HUGE} characters)" in error["message"]

    [line] = wait_for(lambda: request_lines(log))
    assert line["status"] == 404 and f"({HUGE} characters)" in line["error"]
    assert log.stat().st_size < SMALL_LINE


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/" + "p" * 30_000, {}),  # an unknown path (the head limit is 32 KB)
        ("POST", "/v1/" + "p" * 30_000, {}),
        ("DELETE", "/sessions/" + "s" * 30_000, {}),  # a session id that was never valid
        ("POST", "/chat/qwen3", {"X-Session-ID": "s" * 30_000}),
        ("PATCH", "/chat/qwen3" + "/x" * 10_000, {}),
    ],
    ids=["404", "404 under /v1", "delete session", "session header", "405"],
)
def test_paths_and_headers_are_not_echoed_whole(
    logged_router: tuple[RunningRouter, Path], method: str, path: str, headers: dict[str, str]
) -> None:
    router, _ = logged_router
    body = {"messages": [{"role": "user", "content": "hi"}]}
    response = httpx.request(method, router.url + path, json=body, headers=headers, timeout=10)
    assert 400 <= response.status_code < 500, response.text[:300]
    assert len(response.content) < SMALL_BODY, response.text[:300]
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_a_huge_invalid_value_is_not_echoed_by_the_validation_error(
    logged_router: tuple[RunningRouter, Path],
) -> None:
    router, log = logged_router
    body = {"messages": [{"role": "user", "content": "hi"}], "stop": {"k" * HUGE: 1}, "model": "k" * HUGE}
    response = httpx.post(router.url + "/chat/qwen3", json=body, timeout=10)
    assert response.status_code == 400 and len(response.content) < SMALL_BODY
    [line] = wait_for(lambda: request_lines(log))
    assert line["status"] == 400 and log.stat().st_size < SMALL_LINE


def test_an_upstream_repeating_a_huge_value_is_cut_too(
    logged_router: tuple[RunningRouter, Path], fake_openai: FakeOpenAI
) -> None:
    router, log = logged_router
    words = "w" * 50_000  # an error body the router reads whole (it reads at most 64 KB of one)
    fake_openai.set_behaviour("status", code=400, body=json.dumps({"error": {"message": f"bad: {words}"}}))
    response = httpx.post(
        router.url + "/chat/local", json={"messages": [{"role": "user", "content": "hi"}]}, timeout=10
    )
    assert response.status_code == 400 and len(response.content) < SMALL_BODY
    assert "(50005 characters)" in response.json()["error"]["message"]
    [line] = wait_for(lambda: request_lines(log))
    assert log.stat().st_size < SMALL_LINE and line["status"] == 400


def test_every_text_field_of_a_request_line_is_bounded(tmp_path: Path) -> None:
    file = tmp_path / "router.log"
    log = StructuredLog(LoggingSettings(file=str(file)), redact=lambda text: text.replace("s3cret", "[X]"))
    record = RequestRecord("rid")
    record.route, record.model, record.upstream, record.principal = (
        "r" * HUGE,
        "m" * HUGE,
        "u" * HUGE,
        "k" * HUGE,
    )
    record.close(400, InvalidRequest("s3cret" + "e" * HUGE))
    log.request_finished(record)
    log.close()
    [line] = request_lines(file)
    assert file.stat().st_size < 5_000
    for field in ("route", "model", "upstream", "key", "error"):
        assert line[field].endswith(" characters)"), field
    assert line["error"].startswith("[X]eee")  # redacted before it was cut
