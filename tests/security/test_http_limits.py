"""Limits of the HTTP surface: request head size, body size, and the CORS allowlist."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import httpx

from router.security.limits import MAX_HEADER_BYTES
from tests.fakes import FakeOllama
from tests.support.router_server import RunningRouter, table

Start = Callable[..., RunningRouter]
MESSAGES = [{"role": "user", "content": "hello there"}]


def raw_request(router: RunningRouter, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes as they are; the status and body of the answer (the router closes after a refusal)."""
    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as sock:
        try:
            sock.sendall(head + body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while we were still sending: the answer is already there
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def test_oversized_request_heads_get_431(both_upstreams_router: RunningRouter) -> None:
    router = both_upstreams_router
    big = b"X-Big: " + b"a" * (MAX_HEADER_BYTES + 1) + b"\r\n"
    status, body = raw_request(router, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
    assert status == 431
    assert json.loads(body)["error"]["code"] == "request_header_fields_too_large"
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(1000))  # 100 KiB in small headers
    assert raw_request(router, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")[0] == 431
    huge_url = b"GET /healthz?" + b"q" * (MAX_HEADER_BYTES * 4) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert raw_request(router, huge_url)[0] == 431
    still = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert raw_request(router, still)[0] == 200, "still serving"


def test_ordinary_heads_and_large_bodies_in_one_write_pass(both_upstreams_router: RunningRouter) -> None:
    router = both_upstreams_router
    headers = {f"X-Custom-{i}": "v" * 200 for i in range(50)}  # 10 KiB of headers
    assert httpx.get(router.url + "/healthz", headers=headers, timeout=5).status_code == 200
    # a body far larger than the head limit, sent with the head in one write, is not mistaken for a head
    content = json.dumps({"messages": [{"role": "user", "content": "x" * (MAX_HEADER_BYTES * 8)}]}).encode()
    head = (
        b"POST /chat/local HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(content)
    )
    assert raw_request(router, head, content)[0] == 200


def test_bodies_over_the_limit_get_413(fake_ollama: FakeOllama, start_router: Start) -> None:
    text = table(
        upstreams={"u": {"type": "ollama", "base_url": fake_ollama.base_url}},
        routes=[{"path": "/chat/m", "model": "qwen3:32b", "upstream": "u"}],
        server={"max_body_bytes": 4096},
    )
    router = start_router(text)
    big = {"messages": [{"role": "user", "content": "x" * 5000}]}
    response = httpx.post(router.url + "/chat/m", json=big, timeout=5)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert fake_ollama.chat_count == 0


def cors_router(fake: FakeOllama, start_router: Start, origins: list[str]) -> RunningRouter:
    text = table(
        upstreams={"u": {"type": "ollama", "base_url": fake.base_url}},
        routes=[{"path": "/chat/m", "model": "qwen3:32b", "upstream": "u"}],
        server={"cors_allowed_origins": origins},
    )
    return start_router(text)


def test_cors_allows_only_listed_origins(fake_ollama: FakeOllama, start_router: Start) -> None:
    router = cors_router(fake_ollama, start_router, ["http://localhost:3000"])
    allowed = {"Origin": "http://localhost:3000"}
    preflight = httpx.options(
        router.url + "/chat/m",
        headers={
            **allowed,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
        timeout=5,
    )
    assert preflight.status_code in (200, 204)
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    response = httpx.post(router.url + "/chat/m", json={"messages": MESSAGES}, headers=allowed, timeout=5)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()

    evil = {"Origin": "http://evil.example"}
    response = httpx.post(router.url + "/chat/m", json={"messages": MESSAGES}, headers=evil, timeout=5)
    assert "access-control-allow-origin" not in response.headers
    preflight = httpx.options(
        router.url + "/chat/m", headers={**evil, "Access-Control-Request-Method": "POST"}, timeout=5
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_no_origins_no_cors_headers(both_upstreams_router: RunningRouter) -> None:
    response = httpx.post(
        both_upstreams_router.url + "/chat/local",
        json={"messages": MESSAGES},
        headers={"Origin": "http://localhost:3000"},
        timeout=5,
    )
    assert response.status_code == 200
    assert not [name for name in response.headers if name.startswith("access-control-")]
