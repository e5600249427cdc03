"""Hostile or broken upstreams against the real router, over real sockets: none of them may take it down.

An upstream is trusted to speak its protocol, not to be small, honest about where it lives, or discreet:
answers and stream lines are bounded, redirects are never followed, a pool the router itself filled is not
held against the upstream, and what an upstream quotes back never shows a configured secret.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from router.config.models import UpstreamConfig
from router.upstreams import build_adapter
from router.upstreams.base import ChatCall, Limits
from router.upstreams.errors import UpstreamError
from tests.chaos import CLIENT, FAST_HEALTH, EventListener, body, error_of, post, stream, upstream
from tests.fakes import FakeOllama, FakeOpenAI, FakeUpstream, wait_for
from tests.support.router_server import RunningRouter, table

Start = Callable[..., RunningRouter]
MIB = 1024 * 1024
SECRET_KEY = "sk-upstream-secret-0123"
SECRET_HEADER = "custom-header-secret-4567"


@pytest.fixture(params=["ollama", "openai"])
def fake(request: pytest.FixtureRequest) -> FakeUpstream:
    """Each test runs against both dialects."""
    return request.getfixturevalue(f"fake_{request.param}")  # type: ignore[no-any-return]


@pytest.fixture
def thief(fake: FakeUpstream) -> Iterator[FakeUpstream]:
    """Another server of the same dialect: where a hostile upstream redirects to. It must hear nothing."""
    with type(fake)() as other:
        yield other


def one_route(fake: FakeUpstream, defaults: dict[str, Any] | None = None, **extra: Any) -> str:
    return table(
        upstreams={"u": upstream(fake, circuit_breaker={"failure_threshold": 1000}, **extra)},
        routes=[{"path": "/chat/m", "model": fake.models[0], "upstream": "u"}],
        defaults=defaults,
    )


# ---- 1. sizes -------------------------------------------------------------------------------------


def test_an_endless_answer_is_cut_at_max_response_bytes(fake: FakeUpstream, start_router: Start) -> None:
    router = start_router(one_route(fake, max_response_bytes=MIB, max_line_bytes=64 * 1024))
    fake.set_behaviour("endless_body")
    started = time.monotonic()
    response = post(router, "/chat/m")
    elapsed = time.monotonic() - started
    error = error_of(response)
    assert response.status_code == 502 and error["code"] == "bad_upstream_response", error
    assert "max_response_bytes" in error["message"] and str(MIB) in error["message"]
    assert elapsed < 3  # not the route's 5 s timeout: cut as soon as the bound was passed
    # The connection was closed, not pooled: the fake sees its client leave, and stops writing.
    wait_for(lambda: fake.disconnects >= 1)
    assert fake.endless_bytes < 64 * MIB


def test_an_endless_first_line_is_a_502(fake: FakeUpstream, start_router: Start) -> None:
    router = start_router(one_route(fake, max_line_bytes=64 * 1024))
    fake.set_behaviour("endless_body")  # a stream whose very first line never ends
    result = stream(router, "/chat/m")
    assert result.status == 502, result.data
    assert "max_line_bytes" in result.data[0] and "bad_upstream_response" in result.data[0]
    wait_for(lambda: fake.disconnects >= 1)


def test_an_endless_line_mid_stream_ends_it_with_an_error_event(
    fake: FakeUpstream, start_router: Start
) -> None:
    router = start_router(one_route(fake, max_line_bytes=64 * 1024))
    fake.set_behaviour("endless_line", after=2)
    result = stream(router, "/chat/m")
    assert result.status == 200 and not result.done
    assert result.text() == "tok0 tok1"
    assert result.error is not None and result.error["code"] == "bad_upstream_response", result.error
    assert "longer than 65536 bytes" in result.error["message"]
    wait_for(lambda: fake.disconnects >= 1)
    assert fake.endless_bytes < 64 * MIB
    assert post(router, "/chat/m").status_code == 502  # still cut, the router still answers
    fake.set_behaviour("normal")
    assert stream(router, "/chat/m").done


def test_answers_and_lines_within_the_bounds_pass_whole(fake: FakeUpstream, start_router: Start) -> None:
    router = start_router(one_route(fake, max_response_bytes=256 * 1024, max_line_bytes=64 * 1024))
    fake.reply_text = "x" * 40_000 + " " + "y" * 40_000  # two 40 kB pieces: lines near the bound
    result = stream(router, "/chat/m")
    assert result.done and result.text() == fake.reply_text
    response = post(router, "/chat/m")
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == fake.reply_text


def test_a_flood_of_empty_lines_ends_at_the_stall_timeout(fake: FakeUpstream, start_router: Start) -> None:
    router = start_router(one_route(fake, defaults={"stall_timeout": 0.5, "heartbeat_interval": 0.2}))
    fake.set_behaviour("flood", after=1)
    result = stream(router, "/chat/m")
    assert result.text() == "tok0" and result.error is not None
    assert result.error["code"] == "upstream_stalled" and result.elapsed < 3
    assert CLIENT.get(router.url + "/healthz").status_code == 200


def test_an_endless_probe_listing_is_cut_and_fails_the_probe(fake: FakeUpstream, start_router: Start) -> None:
    router = start_router(one_route(fake, defaults={"health_check": FAST_HEALTH}, max_response_bytes=MIB))
    wait_for(lambda: _health(router)["state"] == "healthy")
    fake.probe_endless = True
    wait_for(lambda: _health(router)["state"] == "unhealthy")
    assert "max_response_bytes" in (_health(router)["last_error"] or "")
    assert fake.endless_bytes < 64 * MIB * max(1, sum(fake.probe_count.values()))
    assert CLIENT.get(router.url + "/healthz").status_code == 200


# ---- 2. redirects ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_a_redirect_is_never_followed(
    fake: FakeUpstream, thief: FakeUpstream, start_router: Start, code: int
) -> None:
    secrets = {"api_key": SECRET_KEY, "headers": {"X-Custom-Token": SECRET_HEADER}}
    router = start_router(one_route(fake, **secrets))
    location = thief.root_url + thief.chat_path
    fake.set_behaviour("redirect", code=code, location=location)
    for streamed in (False, True):
        response = CLIENT.post(
            router.url + "/chat/m",
            json={"messages": [{"role": "user", "content": "my secret prompt"}], "stream": streamed},
        )
        error = error_of(response)
        assert response.status_code == 502 and error["code"] == "upstream_redirect", error
        assert "upstream 'u'" in error["message"] and location in error["message"]
        assert "point base_url at the model server itself" in error["message"]
    assert fake.chat_count == 2  # asked once per request: a redirect is not retried on the same upstream
    assert fake.last_request.headers["x-custom-token"] == SECRET_HEADER  # it had something to leak
    assert thief.received == []


def test_a_probe_redirect_is_not_followed_and_fails_the_probe(
    fake: FakeUpstream, thief: FakeUpstream, start_router: Start
) -> None:
    router = start_router(one_route(fake, defaults={"health_check": FAST_HEALTH}, api_key=SECRET_KEY))
    fake.probe_location = thief.root_url + next(iter(thief.probe_routes()))
    wait_for(lambda: _health(router)["state"] == "unhealthy")
    assert "redirect" in (_health(router)["last_error"] or "")
    assert thief.received == []


# ---- 3. a full pool -------------------------------------------------------------------------------


def test_a_full_pool_is_back_pressure_not_an_upstream_fault(fake: FakeUpstream, start_router: Start) -> None:
    text = table(
        upstreams={"u": upstream(fake, max_connections=2, circuit_breaker={"failure_threshold": 1})},
        routes=[{"path": "/chat/m", "model": fake.models[0], "upstream": "u"}],
        defaults={"stall_timeout": 30, "health_check": FAST_HEALTH, "connect_timeout": 0.5},
    )
    router = start_router(text)
    wait_for(lambda: _health(router)["state"] == "healthy")
    fake.set_behaviour("stall_mid_stream", after=1, seconds=30)
    with ExitStack() as held, httpx.Client(timeout=10) as client:
        readers = []  # kept: a dropped line iterator would close its response
        for _ in range(2):  # two streams hold both pooled connections
            response = held.enter_context(client.stream("POST", router.url + "/chat/m", json=body(True)))
            assert response.status_code == 200
            readers.append(response.iter_lines())
            next(readers[-1])
        assert fake.in_flight == 2
        fake.set_behaviour("normal")
        probes = sum(fake.probe_count.values())
        started = time.monotonic()
        third = post(router, "/chat/m")
        elapsed = time.monotonic() - started
        error = error_of(third)
        assert third.status_code == 503 and error["code"] == "upstream_pool_exhausted", error
        assert "max_connections" in error["message"] and float(third.headers["Retry-After"]) >= 1
        assert elapsed < 0.5 + 1.0  # the connect timeout, not the route's timeout
        assert fake.chat_count == 2  # not retried into the same pool
        # The upstream answered promptly all along: its breaker stays closed (one fault would open it),
        # and the health probes, on their own pool, keep passing.
        assert _replica(router)["breaker"]["state"] == "closed"
        wait_for(lambda: sum(fake.probe_count.values()) >= probes + 3)
        assert _health(router)["state"] == "healthy"
    wait_for(lambda: fake.in_flight == 0)
    assert post(router, "/chat/m").status_code == 200


# ---- 4. secrets an upstream quotes ----------------------------------------------------------------


def test_operator_endpoints_never_show_what_a_probe_quoted(fake: FakeUpstream, start_router: Start) -> None:
    text = table(
        upstreams={
            "u": upstream(fake, api_key=SECRET_KEY, headers={"X-Custom-Token": SECRET_HEADER}),
        },
        routes=[{"path": "/chat/m", "model": fake.models[0], "upstream": "u"}],
        defaults={"health_check": FAST_HEALTH},
        auth={
            "api_keys": [{"name": "a", "key": "sha256:" + hashlib.sha256(b"client-key").hexdigest()}],
            "public_status": True,
        },
    )
    router = start_router(text)
    with EventListener(router) as events:
        fake.probe_status, fake.probe_echo_headers = 500, True
        wait_for(lambda: _health(router)["state"] == "unhealthy")
        events.wait(lambda seen: any(name == "health" for name, _ in seen))
        probe_headers = [r.headers for r in fake.received if r.method == "GET"]
        assert probe_headers and probe_headers[-1]["authorization"] == f"Bearer {SECRET_KEY}"
        shown = [CLIENT.get(router.url + path).text for path in ("/status", "/debug")]
        shown.append(str(events.events))
    for text_shown in shown:
        assert SECRET_KEY not in text_shown and SECRET_HEADER not in text_shown
    assert "your request headers were" in shown[0] and "[REDACTED]" in shown[0]
    assert "[REDACTED]" in shown[2]


def test_the_status_document_is_redacted_whatever_wrote_into_it(
    fake_ollama: FakeOllama, start_router: Start
) -> None:
    router = start_router(
        one_route(fake_ollama, defaults={"health_check": {**FAST_HEALTH, "interval": 60}}, api_key=SECRET_KEY)
    )

    def leak() -> None:  # any text that reaches the document, not only an upstream's own error
        for _, tracker in router.runtime.registry.health_checks():
            tracker.record_probe(False, 0.001, f"someone wrote {SECRET_KEY} here")

    wait_for(lambda: _health(router)["last_probe_at"] is not None)  # the next one is a minute away
    router.sync(leak)
    for path in ("/status", "/debug"):
        shown = CLIENT.get(router.url + path).text
        assert "someone wrote [REDACTED] here" in shown and SECRET_KEY not in shown


def test_an_error_answer_quoting_the_headers_reaches_the_client_without_them(
    fake_openai: FakeOpenAI, start_router: Start
) -> None:
    router = start_router(
        one_route(fake_openai, api_key=SECRET_KEY, headers={"X-Custom-Token": SECRET_HEADER})
    )
    fake_openai.set_behaviour("echo_headers", code=400)
    response = post(router, "/chat/m")
    message = error_of(response)["message"]
    assert response.status_code == 400 and "your request headers were" in message
    assert SECRET_KEY not in message and SECRET_HEADER not in message


def _replica(router: RunningRouter) -> dict[str, Any]:
    document = CLIENT.get(router.url + "/status").json()
    return document["routes"][0]["replicas"][0]  # type: ignore[no-any-return]


def _health(router: RunningRouter) -> dict[str, Any]:
    health = _replica(router)["health"]
    assert health is not None
    return health  # type: ignore[no-any-return]


async def test_the_adapters_never_repeat_their_own_credentials(fake: FakeUpstream) -> None:
    """Whatever path an upstream's words take (error status, in-stream error, garbage line), the error
    the adapter raises already has this upstream's credentials masked, before any other redaction."""
    config = UpstreamConfig(
        name="u",
        type=fake.kind,  # type: ignore[arg-type]
        base_url=fake.base_url,
        api_key=SECRET_KEY,
        headers={"X-Custom-Token": SECRET_HEADER},
    )
    adapter = build_adapter(config)
    call = ChatCall(
        body={"messages": [{"role": "user", "content": "hi"}]},
        model=fake.models[0],
        stream=True,
        max_tokens=None,
        include_usage=False,
        options={},
        request_id="00000000-0000-4000-8000-000000000000",
    )
    leak = f"I saw {SECRET_KEY} and {SECRET_HEADER}"
    cases = [
        ("echo_headers", {"code": 500}),
        ("status", {"code": 400, "body": None}),
        ("error_line", {"after": 1, "message": leak}),
        ("malformed_line", {"after": 1, "line": _frame(fake, leak)}),
    ]
    try:
        for name, params in cases:
            fake.set_behaviour(name, **params)
            with pytest.raises(UpstreamError) as caught:
                stream, _ = await adapter.open_stream(call, Limits.of(5, 1))
                try:
                    while await stream.read() is not None:
                        pass
                finally:
                    stream.close()
            message = caught.value.message
            assert SECRET_KEY not in message and SECRET_HEADER not in message, (name, message)
    finally:
        await adapter.close()


def _frame(fake: FakeUpstream, text: str) -> bytes:
    """A stream line that is not JSON and quotes `text`."""
    return f"{text}\n".encode() if fake.kind == "ollama" else f"data: {text}\n\n".encode()
