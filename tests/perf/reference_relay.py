"""The reference relay: the thinnest honest relay on the router's own stack, the yardstick for its speed.

A Litestar app under uvicorn (uvloop, httptools) that forwards each chat request's body, as it came, with
one shared aiohttp session, and relays the answer (JSON whole, SSE chunk by chunk). No auth, no routing,
no checks, no logs: whatever the router does beyond this is the price of its features, so its figures are
reported as ratios to this one, measured in the same run (this machine's speed drifts within a day).

python -m tests.perf.reference_relay --port 9100 --upstream http://127.0.0.1:9000/v1
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import aiohttp
import uvicorn
from litestar import Litestar, Request, Response, get, post
from litestar.response import Stream

args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
args.add_argument("--port", type=int, required=True)
args.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:9000/v1")
ARGS, _ = args.parse_known_args()
CHAT = ARGS.upstream.rstrip("/") + "/chat/completions"
SESSION: list[aiohttp.ClientSession] = []  # one, made on the server's loop


async def start() -> None:
    SESSION.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)))


@post("/v1/chat/completions")
async def chat(request: Request[None, None, None]) -> Response[bytes] | Stream:
    """Forward the body with the caller's key; relay the answer."""
    headers = {"Content-Type": "application/json", "Authorization": request.headers.get("authorization", "")}
    upstream = await SESSION[0].post(CHAT, data=await request.body(), headers=headers)
    if upstream.content_type != "text/event-stream":
        async with upstream:
            return Response(await upstream.read(), status_code=upstream.status, media_type="application/json")

    async def relay() -> AsyncIterator[bytes]:
        async with upstream:
            async for data in upstream.content.iter_any():
                yield data

    return Stream(relay(), status_code=upstream.status, media_type="text/event-stream")


@get("/healthz")
async def healthz() -> dict[str, bool]:
    """Ready."""
    return {"ok": True}


app = Litestar([chat, healthz], on_startup=[start], openapi_config=None)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=ARGS.port, loop="uvloop", http="httptools", log_level="warning")
