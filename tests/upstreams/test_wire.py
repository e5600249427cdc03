"""What an upstream receives from the router's HTTP client, byte for byte, and the attempt's deadline.

The automatic headers are decided once per session (`router.upstreams.pooled.RouterRequest`): no
User-Agent, no Accept-Encoding (model servers gain nothing from compression), `Accept: */*`. The deadline
is the route's `timeout`: running out of it is an UpstreamTimeout, a cancellation from elsewhere stays
one.
"""

from __future__ import annotations

import asyncio

import pytest
from yarl import URL

from router.config.models import UpstreamConfig
from router.upstreams.base import Limits
from router.upstreams.errors import UpstreamTimeout
from router.upstreams.http import Wire, deadline, get, new_session, post_json
from router.upstreams.pooled import Poster


async def _heads(extra: dict[str, object]) -> list[list[str]]:
    """The request heads (lines, Host's port blanked) an upstream sees for one POST and one probe GET."""
    heads: list[list[str]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        lines = [line for line in head.split("\r\n") if line]
        for line in lines:
            if line.lower().startswith("content-length:"):
                await reader.readexactly(int(line.split(":")[1]))
        heads.append([line if not line.startswith("Host:") else "Host: -" for line in lines])
        body = b'{"ok":true}'
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}/v1"
    config = UpstreamConfig.model_validate({"name": "u", "type": "openai", "base_url": base, **extra})
    session = new_session(config)
    try:
        wire = Wire.of(config)
        target = URL(f"{base}/chat/completions")
        answer = await post_json(
            Poster(session), target, {"a": 1}, Limits.of(5, 5), "rid-1", wire, {"traceparent": "00-t"}
        )
        await answer.read()
        answer.release()
        assert await get(session, f"{base}/models", True, wire) == {"ok": True}
    finally:
        await session.close()
        server.close()
    return heads


async def test_the_upstream_sees_only_the_headers_the_router_means_to_send() -> None:
    post, probe = await _heads({})
    assert post == [
        "POST /v1/chat/completions HTTP/1.1",
        "Host: -",
        "Content-Type: application/json",
        "X-Request-ID: rid-1",
        "traceparent: 00-t",
        "Accept: */*",
        "Content-Length: 7",
    ]
    assert probe == ["GET /v1/models HTTP/1.1", "Host: -", "Accept: */*"]


async def test_configured_credentials_and_headers_go_on_every_request() -> None:
    post, probe = await _heads({"api_key": "sk-abc", "headers": {"X-Org": "o1"}})
    assert post[:4] == [
        "POST /v1/chat/completions HTTP/1.1",
        "Host: -",
        "X-Org: o1",
        "Authorization: Bearer sk-abc",
    ]
    assert probe == [
        "GET /v1/models HTTP/1.1",
        "Host: -",
        "X-Org: o1",
        "Authorization: Bearer sk-abc",
        "Accept: */*",
    ]
    assert not any(line.lower().startswith(("user-agent", "accept-encoding")) for line in post + probe)


async def test_deadline_turns_its_own_expiry_into_an_upstream_timeout() -> None:
    with pytest.raises(UpstreamTimeout, match=r"within 0\.05s"):
        async with deadline(0.05, "http://u"):
            await asyncio.sleep(5)


async def test_deadline_leaves_a_cancellation_from_elsewhere_alone() -> None:
    entered = asyncio.Event()

    async def attempt() -> None:
        async with deadline(5, "http://u"):
            entered.set()
            await asyncio.sleep(5)

    task = asyncio.create_task(attempt())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_deadline_names_a_timeout_raised_inside_it_and_passes_other_errors() -> None:
    with pytest.raises(UpstreamTimeout):
        async with deadline(5, "http://u"):
            raise TimeoutError
    with pytest.raises(KeyError):
        async with deadline(5, "http://u"):
            raise KeyError("x")
    async with deadline(0.01, "http://u"):
        pass
    await asyncio.sleep(0.03)  # the timer was cancelled: nothing fires into this task later
