"""CORS on the chat fast path: the same answers Litestar's CORSMiddleware gave, without the framework.

Over real sockets: with `server.cors_allowed_origins` set, chat requests (preflights, whole answers,
streams, errors) never reach the Litestar app, and every CORS header, its value and its place among the
headers, and every preflight status and body are what the app itself answers for the same request. In
process: `FastCors` against Litestar's middleware over a grid of configurations and requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest
from litestar import Litestar, post
from litestar.middleware._internal.cors import CORSMiddleware

from router.security.cors import FastCors
from router.security.http import cors_config
from tests.fakes import FakeOpenAI
from tests.support.router_server import RunningRouter, table, through_the_app

Start = Callable[..., RunningRouter]
ALLOWED = "http://localhost:3000"
MESSAGES = [{"role": "user", "content": "hello there"}]
ORIGIN_LISTS = [[ALLOWED], ["*"], ["http://*.example.test", ALLOWED]]
PATHS = ["/chat/local", "/v1/chat/completions"]


def _preflights(origin_header: str) -> list[dict[str, str]]:
    return [
        {"Origin": origin_header, "Access-Control-Request-Method": "POST"},
        {
            "Origin": origin_header,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-session-id",
        },
        {"Origin": origin_header, "Access-Control-Request-Method": "PUT"},
        {
            "Origin": origin_header,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-a",
        },
        {"Origin": origin_header},  # no requested method: still a preflight for Litestar
    ]


ORIGINS = [ALLOWED, "http://evil.example", "http://a.example.test", "http://localhost:3000.evil"]
REQUESTS: list[tuple[str, str, dict[str, str], dict[str, Any] | None]] = [
    *[("OPTIONS", path, h, None) for path in PATHS for o in ORIGINS for h in _preflights(o)],
    *[("POST", "/chat/local", {"Origin": o}, {"messages": MESSAGES}) for o in ORIGINS],
    ("POST", "/chat/local", {"Origin": "http://evil.example", "Cookie": "a=b"}, {"messages": MESSAGES}),
    ("POST", "/chat/local", {}, {"messages": MESSAGES}),
    ("POST", "/chat/local", {"Origin": ALLOWED}, {"messages": MESSAGES, "stream": True}),
    ("POST", "/chat/local", {"Origin": "http://evil.example"}, {"messages": MESSAGES, "stream": True}),
    ("POST", "/chat/local", {"Origin": ALLOWED}, {"messages": "not a list"}),  # 400
    ("POST", "/v1/chat/completions", {"Origin": ALLOWED}, {"messages": MESSAGES, "model": "nope"}),  # 404
    ("POST", "/chat/local", {"Origin": ALLOWED}, {"messages": [{"role": "user", "content": "x" * 5000}]}),
]


def _cors_part(response: httpx.Response) -> tuple[int, list[tuple[bytes, bytes]], bytes | None]:
    """Status, the CORS headers in the order they came, and (for preflights) the body."""
    part = [
        (name.lower(), value)
        for name, value in response.headers.raw
        if name.lower().startswith(b"access-control-") or name.lower() == b"vary"
    ]
    body = response.content if response.request.method == "OPTIONS" else None
    return response.status_code, part, body


def _send(router: RunningRouter) -> list[tuple[int, list[tuple[bytes, bytes]], bytes | None]]:
    out = []
    with httpx.Client(base_url=router.url, timeout=10) as client:
        for method, path, headers, body in REQUESTS:
            response = client.request(method, path, headers=headers, json=body)
            out.append(_cors_part(response))
    return out


def _router(start_router: Start, fake: FakeOpenAI, origins: list[str]) -> RunningRouter:
    return start_router(
        table(
            {"local": {"type": "openai", "base_url": fake.base_url}},
            [{"path": "/chat/local", "model": "smollm2", "upstream": "local"}],
            server={"cors_allowed_origins": origins, "max_body_bytes": 4096},
        )
    )


class CountingApp:
    """Wraps the served Litestar app and counts the requests that reach it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.calls.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


def _count_app_calls(router: RunningRouter) -> CountingApp:
    counter: list[CountingApp] = []

    def swap() -> None:
        loaded = router.runtime.current
        assert loaded is not None
        counter.append(CountingApp(loaded.app))
        router.runtime.current = replace(loaded, app=counter[0])  # type: ignore[arg-type]

    router.sync(swap)
    return counter[0]


@pytest.mark.parametrize("origins", ORIGIN_LISTS, ids=["one-origin", "any-origin", "pattern-and-origin"])
def test_fast_path_answers_cors_as_the_app_did(
    fake_openai: FakeOpenAI, start_router: Start, origins: list[str]
) -> None:
    router = _router(start_router, fake_openai, origins)
    app = _count_app_calls(router)
    fast = _send(router)
    assert app.calls == [], "CORS requests to the chat doors must not reach the framework"
    framework = _send(through_the_app(router))
    assert len(app.calls) == len(REQUESTS)
    for request, got, expected in zip(REQUESTS, fast, framework, strict=True):
        assert got == expected, request
    statuses = [status for status, _, _ in fast]
    assert 204 in statuses and 400 in statuses and 200 in statuses and 404 in statuses and 413 in statuses


def test_cors_requests_take_the_fast_path(fake_openai: FakeOpenAI, start_router: Start) -> None:
    router = _router(start_router, fake_openai, [ALLOWED])
    app = _count_app_calls(router)
    allowed = {"Origin": ALLOWED}
    preflight = httpx.options(
        router.url + "/v1/chat/completions",
        headers={
            **allowed,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
        timeout=5,
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == ALLOWED
    assert preflight.headers["access-control-max-age"] == "600"
    assert preflight.headers["vary"] == "Origin"
    assert "x-request-id" in preflight.headers  # the entry middleware still stamps every answer
    whole = httpx.post(router.url + "/chat/local", json={"messages": MESSAGES}, headers=allowed, timeout=5)
    assert whole.status_code == 200 and whole.json()["choices"]
    assert whole.headers["access-control-allow-origin"] == ALLOWED and whole.headers["vary"] == "Origin"
    exposed = whole.headers["access-control-expose-headers"]
    assert {"x-request-id", "x-router-route", "x-router-upstream", "retry-after"} <= set(exposed.split(", "))
    assert "access-control-allow-credentials" not in whole.headers
    body = {"messages": MESSAGES, "stream": True}
    with httpx.stream("POST", router.url + "/chat/local", json=body, headers=allowed, timeout=5) as stream:
        assert stream.headers["access-control-allow-origin"] == ALLOWED
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.read().rstrip().endswith(b"data: [DONE]")
    error = httpx.post(router.url + "/chat/local", json={"messages": 1}, headers=allowed, timeout=5)
    assert error.status_code == 400 and error.headers["access-control-allow-origin"] == ALLOWED
    evil = httpx.options(
        router.url + "/chat/local",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        timeout=5,
    )
    assert evil.status_code == 400 and evil.text == "Disallowed CORS Origin"
    assert not [name for name in evil.headers if name.startswith("access-control-")]
    assert app.calls == []
    # what the fast path declines still reaches the app, CORS included
    health = httpx.get(router.url + "/healthz", headers=allowed, timeout=5)
    assert health.headers["access-control-allow-origin"] == ALLOWED
    other = httpx.options(
        router.url + "/healthz", headers={**allowed, "Access-Control-Request-Method": "GET"}
    )
    assert other.status_code == 204
    assert app.calls == [("GET", "/healthz"), ("OPTIONS", "/healthz")]


# ------------------------------------------------------------------------------------- in process


@post("/x")
async def _handler() -> dict[str, str]:
    return {}


async def _asgi(call: Callable[..., Any], method: str, headers: list[tuple[bytes, bytes]]) -> list[Any]:
    scope = {
        "type": "http",
        "method": method,
        "path": "/x",
        "raw_path": b"/x",
        "headers": headers,
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "http_version": "1.1",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
        "asgi": {"version": "3.0"},
        "state": {},
    }
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await call(scope, receive, send)
    return sent


async def _fast(cors: FastCors, scope: Any, receive: Any, send: Any) -> None:
    """What the fast path does with a request to a door, on a stand-in answer."""
    origin = cors.origin(scope["headers"])
    if scope["method"] == "OPTIONS" and origin is not None:
        await cors.preflight(scope, send, origin)
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    headers.extend(cors.answer_headers(scope["headers"]))
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}", "more_body": False})


GRID_ORIGINS = [["http://a.test"], ["*"], ["http://*.b.test", "http://a.test"], ["*", "http://a.test"]]
GRID_HEADERS: list[list[tuple[bytes, bytes]]] = [
    [(b"origin", o), *extra]
    for o in (b"http://a.test", b"http://x.b.test", b"http://evil", b"http://a.test.evil", b"HTTP://A.TEST")
    for extra in (
        [],
        [(b"cookie", b"k=v")],
        [(b"access-control-request-method", b"POST")],
        [(b"access-control-request-method", b"post")],
        [(b"access-control-request-method", b"DELETE"), (b"access-control-request-headers", b"X-Foo")],
        [
            (b"access-control-request-method", b"GET"),
            (b"access-control-request-headers", b" Accept ,Content-Type,,"),
        ],
        [(b"access-control-request-headers", b"Authorization, X-Session-ID")],
    )
] + [[], [(b"origin", b"")], [(b"origin", b"http://a.test"), (b"origin", b"http://evil")]]


@pytest.mark.parametrize("origins", GRID_ORIGINS, ids=str)
def test_fast_cors_matches_litestar_middleware(origins: list[str]) -> None:
    config = cors_config(origins)
    assert config is not None
    cors = FastCors(config)
    middleware = CORSMiddleware(Litestar([_handler]), config)

    async def litestar(scope: Any, receive: Any, send: Any) -> None:
        scope["litestar_app"] = middleware.app
        await middleware(scope, receive, send)

    async def run() -> None:
        for headers in GRID_HEADERS:
            for method in ("OPTIONS", "POST"):
                if method == "OPTIONS" and not cors.origin(headers):
                    continue  # not a preflight: the fast path declines it
                expected = await _asgi(litestar, method, headers)
                got = await _asgi(lambda s, r, w: _fast(cors, s, r, w), method, headers)
                assert got == expected, (method, headers)

    asyncio.run(run())


def test_no_origins_no_fast_cors() -> None:
    assert FastCors.of(cors_config([])) is None
