"""Upstreams come only from the table: nothing a client sends can point the router somewhere else.

A second fake upstream plays the attacker's server: whatever the client puts in the body (`base_url`,
`api_base`...), in headers (`Host`, `X-Forwarded-Host`, `Forwarded`, `X-Original-URL`...) or in an
absolute-URI request target, the request reaches the configured upstream at its configured path, and the
attacker's server sees nothing.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes import FakeOpenAI
from tests.support.router_server import RunningRouter

MESSAGES = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def evil() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(["smollm2", "evil"], accept_any_model=True) as fake:
        yield fake


def test_body_fields_cannot_choose_the_upstream(
    both_upstreams_router: RunningRouter, fake_openai: FakeOpenAI, evil: FakeOpenAI
) -> None:
    body = {
        "model": "local",
        "messages": MESSAGES,
        "base_url": evil.base_url,
        "api_base": evil.base_url,
        "url": evil.base_url + "/chat/completions",
        "upstream": "evil",
        "extra_headers": {"Host": f"127.0.0.1:{evil.port}"},
    }
    response = httpx.post(both_upstreams_router.url + "/v1/chat/completions", json=body, timeout=10)
    assert response.status_code == 200
    assert response.headers["x-router-upstream"] == "local"
    assert fake_openai.chat_count == 1
    assert fake_openai.last_request.path == "/v1/chat/completions"
    assert evil.chat_count == 0 and not evil.requests


def test_headers_cannot_choose_the_upstream(
    both_upstreams_router: RunningRouter, fake_openai: FakeOpenAI, evil: FakeOpenAI
) -> None:
    where = f"127.0.0.1:{evil.port}"
    headers = {
        "Host": where,
        "X-Forwarded-Host": where,
        "X-Forwarded-Proto": "http",
        "X-Forwarded-Port": str(evil.port),
        "Forwarded": f"host={where};proto=http",
        "X-Original-URL": "/v1/chat/completions",
        "X-Rewrite-URL": "/admin/reload",
        "X-Router-Upstream": "evil",
    }
    response = httpx.post(
        both_upstreams_router.url + "/chat/local", json={"messages": MESSAGES}, headers=headers, timeout=10
    )
    assert response.status_code == 200
    assert fake_openai.chat_count == 1 and evil.chat_count == 0 and not evil.requests
    forwarded = fake_openai.last_request.headers
    assert forwarded.get("host") == f"127.0.0.1:{fake_openai.port}", "the client's Host is not relayed"
    assert "x-forwarded-host" not in forwarded and "x-rewrite-url" not in forwarded


def test_absolute_uri_targets_cannot_choose_the_upstream(
    both_upstreams_router: RunningRouter, fake_openai: FakeOpenAI, evil: FakeOpenAI
) -> None:
    body = json.dumps({"model": "local", "messages": MESSAGES}).encode()
    target = f"http://127.0.0.1:{evil.port}/v1/chat/completions".encode()
    request = (
        b"POST " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    ) + body
    with socket.create_connection(("127.0.0.1", both_upstreams_router.port), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert fake_openai.chat_count == 1 and evil.chat_count == 0 and not evil.requests


def test_a_model_name_cannot_name_an_address(both_upstreams_router: RunningRouter, evil: FakeOpenAI) -> None:
    for model in (evil.base_url, f"127.0.0.1:{evil.port}/smollm2", "local@evil", "../local"):
        body = {"model": model, "messages": MESSAGES}
        response = httpx.post(both_upstreams_router.url + "/v1/chat/completions", json=body, timeout=10)
        assert response.status_code == 404
    assert not evil.requests
