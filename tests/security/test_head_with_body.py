"""A response's head leaves with its body in one write (`router.security.limits.HeadWithBody`), in order.

The unit tests count the writes on a recording transport; the socket tests check that what clients read
is unchanged: whole answers, streams, pipelined requests and `Expect: 100-continue` over a real router.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from typing import Any

import pytest

from router.security.limits import HeadWithBody
from tests.fakes import FakeOllama
from tests.support.router_server import RunningRouter, table

Start = Callable[..., RunningRouter]


class Recorder(asyncio.Transport):
    """A transport that records what is written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.calls.append(("write", bytes(data)))

    def writelines(self, data: Any) -> None:
        self.calls.append(("writelines", [bytes(d) for d in data]))

    def close(self) -> None:
        self.closing = True
        self.calls.append(("close", None))

    def is_closing(self) -> bool:
        return self.closing


async def test_the_head_waits_for_the_body_and_leaves_with_it() -> None:
    real = Recorder()
    held = HeadWithBody(real, asyncio.get_running_loop())
    held.write(b"HEAD")
    assert real.calls == []
    held.write(b"BODY")
    held.write(b"MORE")
    assert real.calls == [("writelines", [b"HEAD", b"BODY"]), ("write", b"MORE")]
    await asyncio.sleep(0)  # the end-of-turn release finds nothing left
    assert len(real.calls) == 2


async def test_a_head_alone_goes_out_at_the_end_of_the_turn_and_before_a_close() -> None:
    real = Recorder()
    held = HeadWithBody(real, asyncio.get_running_loop())
    held.write(b"HEAD")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert real.calls == [("write", b"HEAD")]
    other = Recorder()
    closing = HeadWithBody(other, asyncio.get_running_loop())
    closing.write(b"HEAD")
    closing.close()
    assert other.calls == [("write", b"HEAD"), ("close", None)]


@pytest.fixture
def router(fake_ollama: FakeOllama, start_router: Start) -> RunningRouter:
    text = table(
        upstreams={"u": {"type": "ollama", "base_url": fake_ollama.base_url}},
        routes=[{"path": "/chat/m", "model": "qwen3:32b", "upstream": "u"}],
    )
    return start_router(text)


def _request(body: dict[str, Any], extra: str = "") -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"POST /chat/m HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


def _read_response(sock: socket.socket, buffer: bytearray) -> tuple[bytes, bytes]:
    """One response (head, body) by Content-Length or chunked encoding; the rest stays in `buffer`."""
    while b"\r\n\r\n" not in buffer:
        buffer += sock.recv(65536)
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    del buffer[:end]
    lower = head.lower()
    if b"content-length:" in lower:
        length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
        while len(buffer) < length:
            buffer += sock.recv(65536)
        body = bytes(buffer[:length])
        del buffer[:length]
        return head, body
    while b"0\r\n\r\n" not in buffer:
        buffer += sock.recv(65536)
    end = buffer.index(b"0\r\n\r\n") + 5
    body = bytes(buffer[:end])
    del buffer[:end]
    return head, body


MESSAGES = [{"role": "user", "content": "hi"}]


def test_whole_answers_and_pipelined_requests_read_as_before(router: RunningRouter) -> None:
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as sock:
        sock.sendall(_request({"messages": MESSAGES}) + _request({"messages": MESSAGES, "max_tokens": 3}))
        buffer = bytearray()
        for _ in range(2):
            head, body = _read_response(sock, buffer)
            assert head.startswith(b"HTTP/1.1 200 ")
            assert b"x-router-route: /chat/m" in head.lower()
            assert json.loads(body)["object"] == "chat.completion"
        assert not buffer


def test_streams_and_100_continue_read_as_before(router: RunningRouter) -> None:
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as sock:
        sock.sendall(_request({"messages": MESSAGES, "stream": True}))
        buffer = bytearray()
        head, body = _read_response(sock, buffer)
        assert head.startswith(b"HTTP/1.1 200 ") and b"text/event-stream" in head
        assert b"data: [DONE]" in body
        request = _request({"messages": MESSAGES}, "Expect: 100-continue\r\n")
        head_only, payload = request.split(b"\r\n\r\n", 1)
        sock.sendall(head_only + b"\r\n\r\n")
        while b"\r\n\r\n" not in buffer:
            buffer += sock.recv(65536)
        assert buffer.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        del buffer[: len(b"HTTP/1.1 100 Continue\r\n\r\n")]
        sock.sendall(payload)
        head, body = _read_response(sock, buffer)
        assert head.startswith(b"HTTP/1.1 200 ") and json.loads(body)["object"] == "chat.completion"
