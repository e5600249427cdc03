"""A fast OpenAI-compatible streaming upstream that breaks and continues, for the resume benchmark.

POST /v1/chat/completions (raw asyncio + uvloop, keep-alive, each event its own HTTP chunk and write):
- a conversation whose last message is the assistant's (a continuation, as the router's resume sends it):
  waits TTFT seconds, as a model reading its prompt would, then CONT_CHUNKS events `@<stamp> c<i> `,
  the last with finish_reason "stop", then `data: [DONE]`;
- model `break`: BREAK_CHUNKS events `@<stamp> b<i> `, then closes the connection in the middle of the
  chunked body (no [DONE], no terminating chunk): the upstream died;
- any other model: BREAK_CHUNKS + CONT_CHUNKS events `@<stamp> n<i> ` then [DONE] (a stream that does
  not break).
Every content starts with `@` and the sender's time.perf_counter() (CLOCK_MONOTONIC), as in
tests/perf/sse_upstream.py, then the chunk's tag. GET /v1/models lists `break` and `stream`.

python -m tests.perf.resume_upstream --port 9002 --ttft 0.02
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import uvloop

from tests.perf.sse_upstream import read_request

BREAK_CHUNKS = 20
CONT_CHUNKS = 20
STAMP = b'"content":"@'


def _event(tag: str, last: bool) -> tuple[bytes, bytes]:
    """One chunk event split around its time stamp: (head, tail)."""
    chunk = {
        "id": "chatcmpl-resume",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "resume",
        "choices": [
            {"index": 0, "delta": {"content": f"@ {tag} "}, "finish_reason": "stop" if last else None}
        ],
    }
    head, _, tail = json.dumps(chunk, separators=(",", ":")).encode().partition(STAMP)
    return b"data: " + head + STAMP, tail + b"\n\n"


BROKEN = [_event(f"b{i}", False) for i in range(BREAK_CHUNKS)]
CONTINUED = [_event(f"c{i}", i == CONT_CHUNKS - 1) for i in range(CONT_CHUNKS)]
WHOLE = [_event(f"n{i}", i == BREAK_CHUNKS + CONT_CHUNKS - 1) for i in range(BREAK_CHUNKS + CONT_CHUNKS)]

STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
DONE = b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"


def _response(status: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


MODELS = _response(
    "200 OK", json.dumps({"object": "list", "data": [{"id": "break"}, {"id": "stream"}]}).encode()
)
NOT_FOUND = _response("404 Not Found", b'{"error": {"message": "not found"}}')


async def _send(writer: asyncio.StreamWriter, events: list[tuple[bytes, bytes]]) -> None:
    for head, tail in events:
        event = head + b"%.6f" % time.perf_counter() + tail
        writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        await writer.drain()
        await asyncio.sleep(0)


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ttft: float) -> None:
    try:
        while True:
            request_line, body = await read_request(reader)
            if request_line.startswith(b"POST /v1/chat/completions "):
                request = json.loads(body)
                messages = request.get("messages") or [{}]
                writer.write(STREAM_HEAD)
                if messages[-1].get("role") == "assistant":
                    await asyncio.sleep(ttft)
                    await _send(writer, CONTINUED)
                elif request.get("model") == "break":
                    await _send(writer, BROKEN)
                    return  # closes the connection mid-body (the finally below)
                else:
                    await _send(writer, WHOLE)
                writer.write(DONE)
            elif request_line.startswith(b"GET /v1/models "):
                writer.write(MODELS)
            else:
                writer.write(NOT_FOUND)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int, ttft: float) -> None:
    server = await asyncio.start_server(lambda r, w: _serve(r, w, ttft), "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--ttft", type=float, default=0.02, help="seconds before a continuation's first chunk"
    )
    args = parser.parse_args()
    uvloop.run(main(args.port, args.ttft))
