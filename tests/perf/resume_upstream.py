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

import uvloop

from tests.perf.sse_upstream import (
    DONE,
    STREAM_HEAD,
    response,
    serve_connection,
    stamped_event,
    write_event,
)

BREAK_CHUNKS = 20
CONT_CHUNKS = 20
BROKEN = [stamped_event(f"b{i}", False, "resume") for i in range(BREAK_CHUNKS)]
CONTINUED = [stamped_event(f"c{i}", i == CONT_CHUNKS - 1, "resume") for i in range(CONT_CHUNKS)]
WHOLE = [
    stamped_event(f"n{i}", i == BREAK_CHUNKS + CONT_CHUNKS - 1, "resume")
    for i in range(BREAK_CHUNKS + CONT_CHUNKS)
]
MODELS = response(
    "200 OK",
    "application/json",
    json.dumps({"object": "list", "data": [{"id": "break"}, {"id": "stream"}]}).encode(),
)


async def _send(writer: asyncio.StreamWriter, events: list[tuple[bytes, bytes]]) -> None:
    for head, tail in events:
        write_event(writer, head, tail)
        await writer.drain()
        await asyncio.sleep(0)


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ttft: float) -> None:
    async def answer_chat(body: bytes) -> bool:
        request = json.loads(body)
        messages = request.get("messages") or [{}]
        writer.write(STREAM_HEAD)
        if messages[-1].get("role") == "assistant":
            await asyncio.sleep(ttft)
            await _send(writer, CONTINUED)
        elif request.get("model") == "break":
            await _send(writer, BROKEN)
            return False  # closes the connection mid-body
        else:
            await _send(writer, WHOLE)
        writer.write(DONE)
        return True

    await serve_connection(reader, writer, answer_chat, MODELS)


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
