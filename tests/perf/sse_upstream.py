"""A minimal, fast OpenAI-compatible streaming upstream for the benchmark (raw asyncio + uvloop).

POST /v1/chat/completions answers with N `chat.completion.chunk` events then `data: [DONE]`, each event
its own HTTP chunk and its own socket write, on a keep-alive connection. Model `paced` waits PACE seconds
between events, as a model generating tokens would; any other model sends them as fast as it can
(yielding to the loop between events); model `slow` sends only the last SLOW_CHUNKS events (or
--slow-chunks), SLOW_PACE (or --slow-pace) seconds apart (for holding many open streams). Every event's
content starts with `@` and the sender's time.perf_counter() (CLOCK_MONOTONIC, shared by all
processes), so a client can tell how long each chunk took to reach it; it is in the content so that
proxies which rebuild the events (LiteLLM) keep it.
GET /v1/models lists the models so health checks pass. Events are pre-encoded but for the time stamp:
the upstream must cost far less than the router it is measured against.

python -m tests.perf.sse_upstream --port 9001 --chunks 200 [--slow-chunks 10 --slow-pace 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import uvloop

PACE = 0.002
SLOW_PACE, SLOW_CHUNKS = 1.0, 10
STAMP = b'"content":"@'  # then the time stamp, then the rest of the event


def stamped_event(tag: str, last: bool, model: str = "stream") -> tuple[bytes, bytes]:
    """One chunk event split around its time stamp: (head, tail); the content is `@<stamp> <tag> `."""
    chunk = {
        "id": f"chatcmpl-{model}",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "choices": [
            {"index": 0, "delta": {"content": f"@ {tag} "}, "finish_reason": "stop" if last else None}
        ],
    }
    head, _, tail = json.dumps(chunk, separators=(",", ":")).encode().partition(STAMP)
    return b"data: " + head + STAMP, tail + b"\n\n"


def _events(chunks: int) -> list[tuple[bytes, bytes]]:
    """Each event split around its time stamp: (head, tail)."""
    return [stamped_event(f"tok{i}", i == chunks - 1) for i in range(chunks)]


def write_event(writer: asyncio.StreamWriter, head: bytes, tail: bytes) -> None:
    """One event, stamped with the time it leaves, as one chunk of the chunked body."""
    event = head + b"%.6f" % time.perf_counter() + tail
    writer.write(b"%x\r\n%s\r\n" % (len(event), event))


def response(status: str, content_type: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
DONE = b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"
MODELS = response(
    "200 OK",
    "application/json",
    json.dumps({"object": "list", "data": [{"id": "stream"}, {"id": "paced"}, {"id": "slow"}]}).encode(),
)
NOT_FOUND = response("404 Not Found", "text/plain", b"not found")


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One HTTP/1.1 request off a keep-alive connection: its request line and its body (`{}` if none)."""
    head = await reader.readuntil(b"\r\n\r\n")
    request_line, _, headers = head.partition(b"\r\n")
    length = 0
    for line in headers.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line[15:])
    return request_line, await reader.readexactly(length) if length else b"{}"


async def serve_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    answer_chat: Callable[[bytes], Awaitable[bool]],
    models: bytes = MODELS,
) -> None:
    """Answer one keep-alive connection: POST /v1/chat/completions by `answer_chat(body)`, which writes the
    answer and says whether the connection goes on (False: it is closed, mid-body if the answer was cut),
    GET /v1/models by `models`, anything else 404."""
    try:
        while True:
            request_line, body = await read_request(reader)
            if request_line.startswith(b"POST /v1/chat/completions "):
                if not await answer_chat(body):
                    return
            elif request_line.startswith(b"GET /v1/models "):
                writer.write(models)
            else:
                writer.write(NOT_FOUND)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _serve(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    events: list[tuple[bytes, bytes]],
    slow: list[tuple[bytes, bytes]],
    slow_pace: float = SLOW_PACE,
) -> None:
    async def answer_chat(body: bytes) -> bool:
        model = json.loads(body).get("model")
        pace = {"paced": PACE, "slow": slow_pace}.get(model, 0)
        writer.write(STREAM_HEAD)
        for head, tail in slow if model == "slow" else events:
            write_event(writer, head, tail)
            await writer.drain()
            await asyncio.sleep(pace)
        writer.write(DONE)
        return True

    await serve_connection(reader, writer, answer_chat)


async def main(port: int, chunks: int, slow_chunks: int = SLOW_CHUNKS, slow_pace: float = SLOW_PACE) -> None:
    events, slow = _events(chunks), _events(max(chunks, slow_chunks))[-slow_chunks:]
    server = await asyncio.start_server(
        lambda r, w: _serve(r, w, events, slow, slow_pace), "127.0.0.1", port, backlog=4096
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--slow-chunks", type=int, default=SLOW_CHUNKS, help="events of model slow")
    parser.add_argument("--slow-pace", type=float, default=SLOW_PACE, help="seconds between events of slow")
    args = parser.parse_args()
    uvloop.run(main(args.port, args.chunks, args.slow_chunks, args.slow_pace))
