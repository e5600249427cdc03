"""The router's POSTs on aiohttp's pool (`router.upstreams.pooled`), against a raw socket server.

What `ClientSession` did for the router and the lean path must keep doing: reuse a connection whose answer
was read to its end, never reuse one whose answer was not, skip informational answers, refuse a broken
head, close the connection when the caller gives up (that is what stops a model's generation), and let a
table's header of a name the router sets itself not reach the upstream twice.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.abc
import pytest
from yarl import URL

from router.config.models import UpstreamConfig
from router.upstreams.base import Limits
from router.upstreams.errors import BadUpstreamResponse, UpstreamError
from router.upstreams.http import Wire, new_session, post_json, read_body
from router.upstreams.pooled import Poster

OK = b'{"ok":true}'
LIMITS = Limits.of(5, 5)


class RawServer:
    """Answers each request on a connection with `reply(number)` bytes (None: no answer); counts
    connections and requests, and notes when the client closed a connection. With `hold`, an answer is
    followed by nothing: the connection stays open until the client closes it."""

    def __init__(self, reply: Callable[[int], bytes | None], hold: bool = False) -> None:
        self.reply = reply
        self.hold = hold
        self.connections = 0
        self.requests: list[list[str]] = []
        self.received = asyncio.Event()
        self.closed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
                lines = [line for line in head.split("\r\n") if line]
                length = next(int(x.split(":")[1]) for x in lines if x.lower().startswith("content-length:"))
                await reader.readexactly(length)
                self.requests.append(lines)
                self.received.set()
                answer = self.reply(len(self.requests))
                if answer is not None:
                    writer.write(answer)
                    await writer.drain()
                if answer is None or self.hold:  # wait for the client to give up
                    await reader.read()
                    self.closed.set()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed.set()
        finally:
            writer.close()


def answer(body: bytes = OK, status: str = "200 OK", before: bytes = b"") -> bytes:
    return before + b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        status.encode(),
        len(body),
        body,
    )


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., asyncio.Future[tuple[RawServer, Poster, URL, Wire]]]]:
    servers: list[asyncio.Server] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(
        reply: Callable[[int], bytes | None], hold: bool = False, **extra: object
    ) -> tuple[RawServer, Poster, URL, Wire]:
        raw = RawServer(reply, hold)
        server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
        servers.append(server)
        base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        config = UpstreamConfig.model_validate({"name": "u", "type": "openai", "base_url": base, **extra})
        session = new_session(config)
        sessions.append(session)
        return raw, Poster(session), URL(f"{base}/chat/completions"), Wire.of(config)

    yield start  # type: ignore[misc]
    for session in sessions:
        await session.close()
    for server in servers:
        server.close()


async def test_a_connection_whose_answer_was_read_is_reused(serve) -> None:  # type: ignore[no-untyped-def]
    raw, poster, url, wire = await serve(lambda n: answer())
    for _ in range(3):
        response = await post_json(poster, url, {"a": 1}, LIMITS, "rid", wire)
        assert await read_body(response, str(url), 1000, wire) == OK
    assert len(raw.requests) == 3
    assert raw.connections == 1


async def test_a_connection_whose_answer_was_not_read_is_closed_not_reused(serve) -> None:  # type: ignore[no-untyped-def]
    raw, poster, url, wire = await serve(lambda n: answer(b"x" * 100)[:-50], hold=True)  # half a body
    response = await post_json(poster, url, {"a": 1}, LIMITS, "rid", wire)
    assert not response.content.is_eof()
    response.release()  # the rest of the body is still coming: the connection must not go back
    await asyncio.wait_for(raw.closed.wait(), 5)
    response = await post_json(poster, url, {"a": 1}, LIMITS, "rid", wire)
    assert raw.connections == 2
    response.close()


async def test_informational_answers_are_skipped(serve) -> None:  # type: ignore[no-untyped-def]
    _, poster, url, wire = await serve(lambda n: answer(before=b"HTTP/1.1 103 Early Hints\r\n\r\n"))
    response = await post_json(poster, url, {"a": 1}, LIMITS, "rid", wire)
    assert response.status == 200
    assert await read_body(response, str(url), 1000, wire) == OK


async def test_a_broken_answer_head_is_a_bad_upstream_response(serve) -> None:  # type: ignore[no-untyped-def]
    _, poster, url, wire = await serve(lambda n: b"HTTP/1.1 200 OK\r\ncontent-length: nope\r\n\r\n")
    with pytest.raises(BadUpstreamResponse, match="unreadable response"):
        await post_json(poster, url, {"a": 1}, LIMITS, "rid", wire)


async def test_an_answer_head_line_beyond_aiohttps_limit_is_refused(serve) -> None:  # type: ignore[no-untyped-def]
    huge = b"HTTP/1.1 200 OK\r\nx-junk: " + b"a" * 9000 + b"\r\ncontent-length: 2\r\n\r\n{}"
    _, poster, url, wire = await serve(lambda n: huge)
    with pytest.raises(BadUpstreamResponse, match="unreadable response"):
        await post_json(poster, url, {"a": 1}, LIMITS, "rid", wire)


async def test_giving_up_on_an_answer_closes_its_connection(serve) -> None:  # type: ignore[no-untyped-def]
    raw, poster, url, wire = await serve(lambda n: None)
    task = asyncio.create_task(post_json(poster, url, {"a": 1}, LIMITS, "rid", wire))
    await asyncio.wait_for(raw.received.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(raw.closed.wait(), 5)  # the upstream saw the connection close


async def test_a_table_header_the_router_sets_itself_is_sent_once(serve) -> None:  # type: ignore[no-untyped-def]
    extra = {"headers": {"content-type": "text/plain", "X-Org": "o1", "Accept": "application/json"}}
    raw, poster, url, wire = await serve(lambda n: answer(), **extra)
    response = await post_json(poster, url, {"a": 1}, LIMITS, "rid", wire)
    await read_body(response, str(url), 1000, wire)
    names = [line.split(":")[0].lower() for line in raw.requests[0][1:]]
    assert sorted(names) == sorted(
        ["host", "x-org", "content-type", "x-request-id", "accept", "content-length"]
    )
    assert "Content-Type: application/json" in raw.requests[0]
    assert "Accept: application/json" in raw.requests[0]


async def test_a_header_value_with_a_line_break_is_refused_before_anything_is_sent(serve) -> None:  # type: ignore[no-untyped-def]
    raw, poster, url, wire = await serve(lambda n: answer())
    with pytest.raises(ValueError, match="control character"):
        await post_json(poster, url, {"a": 1}, LIMITS, "rid\r\nX-Evil: 1", wire)
    assert raw.requests == []


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for `localhost` (openssl), and its key."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    argv = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    argv += ["-subj", "/CN=localhost"]
    argv += ["-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return cert, key


async def test_an_https_upstream_is_reached_over_tls_with_its_name_checked(
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    raw = RawServer(lambda n: answer())
    server = await asyncio.start_server(raw.handle, "127.0.0.1", 0, ssl=served)
    port = server.sockets[0].getsockname()[1]
    trusting = ssl.create_default_context(cafile=str(cert))  # the test's own CA, as a private one would be
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusting, resolver=_Localhost()))
    wire = Wire.of(UpstreamConfig.model_validate({"name": "u", "type": "openai", "base_url": "https://x"}))
    named, unnamed = URL(f"https://localhost:{port}/v1/chat"), URL(f"https://127.0.0.1:{port}/v1/chat")
    try:
        poster = Poster(session)
        for _ in range(2):
            response = await post_json(poster, named, {"a": 1}, LIMITS, "r", wire)
            assert await read_body(response, "u", 1000, wire) == OK
        assert raw.connections == 1  # one TLS connection, pooled
        with pytest.raises(UpstreamError):  # the certificate does not name 127.0.0.1: refused
            await post_json(poster, unnamed, {"a": 1}, LIMITS, "r", wire)
    finally:
        await session.close()
        server.close()


class _Localhost(aiohttp.abc.AbstractResolver):
    """`localhost` is 127.0.0.1 (whatever /etc/hosts says about ::1)."""

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[dict[str, Any]]:
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": 2, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        pass
