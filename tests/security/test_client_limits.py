"""Hostile clients at the connection level: slow heads and bodies, idle sockets by the hundred.

Every test talks to a real router over raw sockets; the bounds are set small so each runs in seconds.
"""

from __future__ import annotations

import json
import os
import resource
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from router.config import load_config_text
from router.security.limits import EVICTION_GRACE
from router.server import SPARE_DESCRIPTORS, connection_cap
from tests.fakes import FakeOllama, FakeOpenAI
from tests.support.router_server import RunningRouter, free_port, table

Start = Callable[..., RunningRouter]
HEAD_TIMEOUT = 0.6
BODY_TIMEOUT = 0.6
KEEPALIVE = 0.4
SLACK = 1.5  # the timer's own lateness, plus a loaded machine


@pytest.fixture
def router(fake_ollama: FakeOllama, start_router: Start) -> RunningRouter:
    text = table(
        upstreams={"u": {"type": "ollama", "base_url": fake_ollama.base_url}},
        routes=[{"path": "/chat/m", "model": "qwen3:32b", "upstream": "u"}],
        server={
            "request_head_timeout": HEAD_TIMEOUT,
            "request_body_timeout": BODY_TIMEOUT,
            "keepalive_timeout": KEEPALIVE,
        },
    )
    return start_router(text)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def until_closed(sock: socket.socket, within: float) -> tuple[bytes, float]:
    """Everything the router sends until it closes the connection, and how long that took."""
    start = time.monotonic()
    sock.settimeout(within)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"the router kept the connection open for {within}s") from None
    return data, time.monotonic() - start


def error_of(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]


def test_a_connection_that_sends_nothing_is_closed(router: RunningRouter) -> None:
    with connect(router.port) as sock:
        data, took = until_closed(sock, HEAD_TIMEOUT + SLACK)
    assert data == b""  # nothing was asked, so nothing is answered
    assert took >= HEAD_TIMEOUT * 0.8


def test_one_byte_then_silence_gets_408_and_is_closed(router: RunningRouter) -> None:
    with connect(router.port) as sock:
        sock.sendall(b"G")
        data, took = until_closed(sock, HEAD_TIMEOUT + SLACK)
    status, error = error_of(data)
    assert status == 408 and error["code"] == "request_timeout"
    assert "request_head_timeout" in str(error["message"])
    assert took >= HEAD_TIMEOUT * 0.8


def test_a_head_sent_a_byte_at_a_time_is_closed_at_the_bound(router: RunningRouter) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    start = time.monotonic()
    with connect(router.port) as sock:
        closed_after = None
        for byte in head:  # every 50 ms: the bytes keep coming, the head never ends
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - start
                break
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                data, _ = until_closed(sock, 2)
                closed_after = time.monotonic() - start
                assert error_of(data)[0] == 408
                break
            assert time.monotonic() - start < HEAD_TIMEOUT + SLACK, "still open past the head bound"
    assert closed_after is not None and HEAD_TIMEOUT * 0.8 <= closed_after < HEAD_TIMEOUT + SLACK


def test_half_a_body_gets_408_and_never_reaches_the_upstream(
    router: RunningRouter, fake_ollama: FakeOllama
) -> None:
    body = json.dumps({"messages": [{"role": "user", "content": "x" * 1000}]}).encode()
    head = (
        b"POST /chat/m HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    with connect(router.port) as sock:
        sock.sendall(head + body[: len(body) // 2])
        data, took = until_closed(sock, BODY_TIMEOUT + SLACK)
    status, error = error_of(data)
    assert status == 408 and "request_body_timeout" in str(error["message"])
    assert took >= BODY_TIMEOUT * 0.8
    assert fake_ollama.chat_count == 0


def test_idle_kept_alive_connections_are_closed_and_busy_ones_are_not(
    router: RunningRouter, fake_ollama: FakeOllama
) -> None:
    # a request slower than every bound is answered: the clocks stop once the request has arrived
    fake_ollama.set_behaviour("slow_first_token", seconds=HEAD_TIMEOUT + BODY_TIMEOUT + 0.3)
    with httpx.Client(base_url=router.url, timeout=10) as client:
        answer = client.post("/chat/m", json={"messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 200
    with connect(router.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data, took = until_closed(sock, KEEPALIVE + SLACK)
    assert data.startswith(b"HTTP/1.1 200")
    assert took < KEEPALIVE + SLACK


def test_a_stray_crlf_after_the_body_does_not_cut_a_long_answer(
    router: RunningRouter, fake_ollama: FakeOllama
) -> None:
    fake_ollama.reply_tokens = 12
    fake_ollama.chunk_delay = 0.1  # the answer lasts twice the head bound
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()
    head = b"POST /chat/m HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    with connect(router.port) as sock:
        sock.sendall(head + body)
        time.sleep(0.1)
        sock.sendall(b"\r\n")  # what some old clients send after a body; it arrives on its own
        answer = b""
        while not answer.endswith(b"0\r\n\r\n"):  # the end of the chunked answer
            chunk = sock.recv(65536)
            assert chunk, "the connection was closed before the answer ended"
            answer += chunk
        rest, _ = until_closed(sock, KEEPALIVE + SLACK)
    assert b"data: [DONE]" in answer
    assert rest == b""  # then closed as an idle kept-alive connection, without a 408


# ---- many connections ------------------------------------------------------------------------------

FLOOD = 300
CAP = 40
FD_LIMIT = 256  # the flood alone would take every descriptor of the router without the cap


@pytest.fixture
def capped_router(fake_ollama: FakeOllama, tmp_path: Path) -> Iterator[str]:
    """`router serve` as a process with few descriptors, `server.max_connections` low and probes on."""
    config = tmp_path / "routes.yaml"
    config.write_text(
        table(
            upstreams={"u": {"type": "ollama", "base_url": fake_ollama.base_url}},
            routes=[{"path": "/chat/m", "model": "qwen3:32b", "upstream": "u"}],
            defaults={"health_check": {"enabled": True, "interval": 0.2, "timeout": 1, "jitter": 0}},
            server={"max_connections": CAP, "request_head_timeout": 60},
            auth={"public_status": True},
        )
    )
    port = free_port()

    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))

    process = subprocess.Popen(
        [sys.executable, "-m", "router", "serve", "--config", str(config), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=few_descriptors,
        env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", os.getcwd())},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "router serve exited"
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "router serve did not come up"
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def open_idle(port: int, n: int) -> list[socket.socket]:
    socks = []
    for i in range(n):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if i % 2:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost")  # half a head; the other half send nothing
        socks.append(sock)
    return socks


def test_a_flood_of_idle_sockets_does_not_lock_out_clients_or_probes(
    capped_router: str, fake_ollama: FakeOllama
) -> None:
    url = capped_router
    port = int(url.rsplit(":", 1)[1])
    probes_before = sum(fake_ollama.probe_count.values())
    socks = open_idle(port, FLOOD)
    try:
        time.sleep(EVICTION_GRACE + 0.2)  # the flood has sat idle long enough to be closed for newcomers
        with httpx.Client(base_url=url, timeout=5) as client:
            for _ in range(5):
                start = time.monotonic()
                assert client.get("/healthz", headers={"Connection": "close"}).status_code == 200
                assert time.monotonic() - start < 1.0
            chat = client.post("/chat/m", json={"messages": [{"role": "user", "content": "hi"}]})
            assert chat.status_code == 200, chat.text
            time.sleep(0.6)  # a few probe intervals, with the flood still connected
            status = client.get("/status").json()
        replica = status["routes"][0]["replicas"][0]
        assert replica["health"]["state"] == "healthy", replica["health"]
        assert sum(fake_ollama.probe_count.values()) > probes_before + 1
        # the router held at most CAP of the flood: the others were refused (503) or closed when idle
        answers = [leftover(sock) for sock in socks]
        closed = [answer for answer in answers if answer is not None]
        assert len(closed) >= FLOOD - CAP
        refusals = [error_of(answer) for answer in closed if answer]  # the others were closed silently
        assert refusals, "newcomers arriving while every connection was fresh are told 503"
        for status, error in refusals:
            assert status == 503 and error["code"] == "too_many_connections"
    finally:
        for sock in socks:
            sock.close()


def leftover(sock: socket.socket) -> bytes | None:
    """What the router sent before closing `sock`; None if it is still open."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return None
    sock.settimeout(1)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


# ---- a client that stops reading ---------------------------------------------------------------------

WRITE_TIMEOUT = 1.0


def test_a_client_that_stops_reading_is_let_go_and_its_upstream_call_closed(
    fake_openai: FakeOpenAI, start_router: Start
) -> None:
    # 12 MB, uncapped, at about 1 MB/s: the upstream is still sending long after the sockets between
    # the router and the client are full (were it faster, the kernel's buffers between the router and the
    # upstream could swallow the whole answer, and the upstream would never see its connection closed)
    fake_openai.reply_text = ("x" * 2000 + " ") * 6000
    fake_openai.chunk_delay = 0.002
    router = start_router(
        table(
            upstreams={"u": {"type": "openai", "base_url": fake_openai.base_url}},
            routes=[{"path": "/chat/m", "model": "smollm2", "upstream": "u", "max_tokens": None}],
            server={"client_write_timeout": WRITE_TIMEOUT},
        )
    )
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: the window stays small
    sock.settimeout(5)
    try:
        sock.connect(("127.0.0.1", router.port))
        sock.sendall(
            b"POST /chat/m HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")  # the stream started; now we stop reading
        stopped = time.monotonic()
        fake_openai.wait_for(lambda: fake_openai.disconnects >= 1, timeout=WRITE_TIMEOUT + 10)
        assert time.monotonic() - stopped >= WRITE_TIMEOUT * 0.8
        assert fake_openai.completed_streams == 0
        replica = fake_openai.wait_for(lambda: _idle_replica(router), timeout=5)
        assert replica["breaker"]["consecutive_failures"] == 0  # the client's fault is not the upstream's
    finally:
        sock.close()


def _idle_replica(router: RunningRouter) -> dict[str, object] | None:
    status = httpx.get(router.url + "/status", timeout=5).json()
    replica: dict[str, object] = status["routes"][0]["replicas"][0]
    return replica if replica["in_flight"] == 0 and replica["upstream_in_flight"] == 0 else None


# ---- /events listeners ---------------------------------------------------------------------------------


def test_events_listeners_are_capped_with_a_clear_503(fake_ollama: FakeOllama, start_router: Start) -> None:
    router = start_router(
        table(
            upstreams={"u": {"type": "ollama", "base_url": fake_ollama.base_url}},
            routes=[{"path": "/chat/m", "model": "qwen3:32b", "upstream": "u"}],
            server={"max_event_subscribers": 2},
        )
    )

    def listeners() -> int:
        return int(httpx.get(router.url + "/debug", timeout=5).json()["event_subscribers"])

    with httpx.Client(base_url=router.url, timeout=5) as client:
        with client.stream("GET", "/events") as first, client.stream("GET", "/events") as second:
            lines = [first.iter_lines(), second.iter_lines()]  # kept: a dropped iterator closes the stream
            for response, read in zip((first, second), lines, strict=True):
                assert response.status_code == 200
                assert next(read) == "event: snapshot"
            refused = client.get("/events")
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "5"
            error = refused.json()["error"]
            assert error["code"] == "too_many_event_subscribers"
            assert "server.max_event_subscribers" in error["message"]
            assert listeners() == 2
        fake_ollama.wait_for(lambda: listeners() == 0)
        # a listener that leaves before reading anything frees its place too
        for _ in range(3):
            with connect(router.port) as sock:
                sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        fake_ollama.wait_for(lambda: listeners() == 0)
        with client.stream("GET", "/events") as again:
            assert again.status_code == 200


# ---- the cap and the process's open-file limit ----------------------------------------------------


def test_the_connection_cap_leaves_descriptors_for_the_upstream_side(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config_text(
        table(
            upstreams={"u": {"type": "ollama", "base_url": "http://127.0.0.1:9", "max_connections": 100}},
            routes=[{"path": "/chat/m", "model": "m", "upstream": "u"}],
            server={"max_connections": 4096},
        ),
        "t.yaml",
    )
    reserve = 100 + SPARE_DESCRIPTORS
    raised: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "setrlimit", lambda _, limits: raised.append(limits))
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 65536))
    assert connection_cap(config) == 4096  # the soft limit is raised to the hard one
    assert raised == [(65536, 65536)]
    raised.clear()
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, resource.RLIM_INFINITY))
    assert connection_cap(config) == 4096  # no hard limit: as far as needed
    assert raised == [(4096 + reserve, resource.RLIM_INFINITY)]
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 1024))
    assert connection_cap(config) == 1024 - reserve  # it cannot be: the clients get what is left
    monkeypatch.setattr(resource, "getrlimit", lambda _: (8192, 8192))
    assert connection_cap(config) == 4096
