"""The client-visible outcome of each failure scenario (docs/protocols.md, "Failures"), both dialects.

Before the first byte a failure becomes an HTTP status with an OpenAI error body (retried first when
another attempt may help); after it, the stream ends with a final `data: {"error": ...}` event and no
`[DONE]`. Every test also bounds how long the client waited.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.chaos import (
    NO_BREAKER,
    SLACK,
    error_of,
    one_route,
    post,
    stream,
    timer,
)
from tests.fakes import FakeUpstream
from tests.support.router_server import RunningRouter, table

Start = Callable[..., RunningRouter]


RETRIES = 2  # the test tables' max_retries: a retried failure reaches the upstream 1 + 2 times


def start(start_router: Start, fake: FakeUpstream, **defaults: object) -> RunningRouter:
    """One route /chat/m on `fake`, breaker out of the way so each request shows its own outcome."""
    return start_router(one_route(fake, defaults=dict(defaults), breaker=NO_BREAKER))


@pytest.mark.parametrize("streamed", [False, True])
def test_upstream_down_at_start_is_503_after_retries(
    fake: FakeUpstream, start_router: Start, streamed: bool
) -> None:
    fake.go_down()
    router = start(start_router, fake)
    with timer() as elapsed:
        response = post(router, "/chat/m", stream=streamed)
    assert response.status_code == 503
    error = error_of(response)
    assert error["code"] == "upstream_unavailable"
    assert "refused" in error["message"]
    # refused connects on loopback are instant: the time is the backoff (at most 0.05 s each) plus overhead
    assert elapsed() < RETRIES * 0.05 + SLACK


def test_killed_mid_stream_ends_with_error_event(fake: FakeUpstream, start_router: Start) -> None:
    fake.chunk_delay = 0.02  # the first chunk reaches the client before the reset
    fake.set_behaviour("reset_mid_stream", after=3)
    router = start(start_router, fake)
    result = stream(router, "/chat/m")
    assert result.status == 200
    assert not result.done, "a truncated answer must not end with [DONE]"
    assert result.error is not None, result.data
    assert result.error["code"] == "upstream_connection_reset"
    assert result.text().startswith("tok0"), "the chunks before the reset were relayed"
    assert fake.chat_count == 1, "nothing is retried once the answer started"


def test_reset_mid_body_without_streaming_is_retried_then_502(
    fake: FakeUpstream, start_router: Start
) -> None:
    fake.set_behaviour("reset_mid_stream")
    router = start(start_router, fake)
    with timer() as elapsed:
        response = post(router, "/chat/m")
    assert response.status_code == 502
    assert error_of(response)["code"] == "upstream_connection_reset"
    assert fake.chat_count == 1 + RETRIES
    assert elapsed() < SLACK + RETRIES * 0.05


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("headers_first", [False, True])
def test_slow_first_token_is_504_within_timeout(
    fake: FakeUpstream, start_router: Start, streamed: bool, headers_first: bool
) -> None:
    fake.set_behaviour("slow_first_token", seconds=5.0, headers_first=headers_first)
    router = start(start_router, fake, timeout=0.3)
    with timer() as elapsed:
        response = post(router, "/chat/m", stream=streamed)
    assert response.status_code == 504
    error = error_of(response)
    assert (error["type"], error["code"]) == ("timeout", "upstream_timeout")
    assert 0.3 <= elapsed() < 0.3 + SLACK
    assert fake.chat_count == 1, "a timeout is not retried on the same upstream: it would double the wait"


def test_stall_mid_stream_ends_with_stalled_event(fake: FakeUpstream, start_router: Start) -> None:
    fake.set_behaviour("stall_mid_stream", after=2, seconds=10.0)
    router = start(start_router, fake, stall_timeout=0.4, heartbeat_interval=0.1)
    result = stream(router, "/chat/m")
    assert result.status == 200
    assert not result.done
    assert result.error is not None and result.error["code"] == "upstream_stalled"
    assert result.comments >= 2, "heartbeats keep the connection alive while the model is silent"
    assert result.elapsed < 0.4 + SLACK
    fake.wait_for(lambda: fake.disconnects == 1)  # the stalled upstream connection was closed


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("code", [200, 502])  # a proxy's page, with a success or an error status
def test_html_error_page_is_502_bad_upstream_response(
    fake: FakeUpstream, start_router: Start, streamed: bool, code: int
) -> None:
    fake.set_behaviour("html", code=code)
    router = start(start_router, fake)
    response = post(router, "/chat/m", stream=streamed)
    assert response.status_code == 502
    error = error_of(response)
    assert "HTML" in error["message"] or "<html>" in error["message"]
    assert fake.chat_count == 1 + RETRIES, "an HTML page may come from a proxy in a bad moment: retried"
    assert error["code"] == "bad_upstream_response"


def test_malformed_stream_line_ends_with_error_event(fake: FakeUpstream, start_router: Start) -> None:
    fake.chunk_delay = 0.02
    fake.set_behaviour("malformed_line", after=2)
    router = start(start_router, fake)
    result = stream(router, "/chat/m")
    assert result.status == 200
    assert not result.done
    assert result.error is not None and result.error["code"] == "bad_upstream_response"
    assert "not JSON" in result.error["message"]


def test_malformed_body_without_streaming_is_502(fake: FakeUpstream, start_router: Start) -> None:
    fake.set_behaviour("malformed_line")  # a truncated JSON body
    router = start(start_router, fake)
    response = post(router, "/chat/m")
    assert response.status_code == 502
    assert error_of(response)["code"] == "bad_upstream_response"


def test_error_line_mid_stream_ends_with_error_event(fake: FakeUpstream, start_router: Start) -> None:
    fake.chunk_delay = 0.02
    fake.set_behaviour("error_line", after=2, message="CUDA out of memory")
    router = start(start_router, fake)
    result = stream(router, "/chat/m")
    assert not result.done
    assert result.error is not None and "CUDA out of memory" in result.error["message"]


@pytest.mark.parametrize("streamed", [False, True])
def test_429_passes_through_with_upstream_retry_after(
    fake: FakeUpstream, start_router: Start, streamed: bool
) -> None:
    fake.set_behaviour("status", code=429, retry_after=7)
    router = start(start_router, fake)
    response = post(router, "/chat/m", stream=streamed)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert error_of(response)["type"] == "rate_limit_error"
    assert fake.chat_count == 1, "the upstream asked us to wait: not retried at once"


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("code", [500, 503])
def test_5xx_is_retried_then_502_keeping_the_message(
    fake: FakeUpstream, start_router: Start, streamed: bool, code: int
) -> None:
    fake.set_behaviour("status", code=code)
    router = start(start_router, fake)
    with timer() as elapsed:
        response = post(router, "/chat/m", stream=streamed)
    assert response.status_code == 502
    error = error_of(response)
    assert error["code"] == "upstream_error"
    assert f"fake upstream answered {code}" in error["message"], "the upstream's own words are kept"
    assert fake.chat_count == 1 + RETRIES
    assert elapsed() < SLACK + RETRIES * 0.05


def test_5xx_once_then_success_is_invisible(fake: FakeUpstream, start_router: Start) -> None:
    fake.fail_n_times(1, "status", code=503)
    router = start(start_router, fake)
    response = post(router, "/chat/m")
    assert response.status_code == 200
    assert fake.chat_count == 2


@pytest.mark.parametrize("streamed", [False, True])
def test_reset_before_response_is_retried_then_502(
    fake: FakeUpstream, start_router: Start, streamed: bool
) -> None:
    fake.set_behaviour("reset_before_response")
    router = start(start_router, fake)
    response = post(router, "/chat/m", stream=streamed)
    assert response.status_code == 502
    assert error_of(response)["code"] == "upstream_connection_reset"
    assert fake.chat_count == 1 + RETRIES


@pytest.mark.parametrize("streamed", [False, True])
def test_model_not_pulled_is_404_naming_the_model(
    fake: FakeUpstream, start_router: Start, streamed: bool
) -> None:
    router = start_router(one_route(fake, model="ghost-model:7b", breaker=NO_BREAKER))
    response = post(router, "/chat/m", stream=streamed)
    assert response.status_code == 404
    error = error_of(response)
    assert (error["type"], error["code"]) == ("not_found_error", "model_not_found")
    assert "ghost-model:7b" in error["message"]
    assert fake.chat_count == 1, "a missing model is not retried"


@pytest.mark.parametrize("kind", ["ollama", "openai"])
def test_dns_failure_is_503_within_connect_timeouts(kind: str, start_router: Start) -> None:
    """A name that does not resolve is a connect failure: retried (maybe DNS hiccuped), then 503."""
    text = table(
        upstreams={"u": {"type": kind, "base_url": "http://no-such-host.invalid:11434/v1"}},
        routes=[{"path": "/chat/m", "model": "m", "upstream": "u"}],
        defaults={"connect_timeout": 0.2},
    )
    router = start_router(text)
    with timer() as elapsed:
        response = post(router, "/chat/m")
    assert response.status_code == 503
    error = error_of(response)
    assert error["code"] == "upstream_unavailable"
    assert "no-such-host.invalid" in error["message"]
    assert elapsed() < (1 + RETRIES) * 0.2 + RETRIES * 0.05 + SLACK
