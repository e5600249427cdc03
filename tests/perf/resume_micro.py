"""In-process CPU per stream, resume on against resume off: the router's ASGI entry, no sockets, a canned
upstream, so the figure is the router's own work and nothing else's (the machine's other load moves it far
less than the socket benchmark's).

Each stream is CHUNKS chat.completion.chunk payloads, as an OpenAI-compatible upstream's adapter hands
them over (already parsed and checked by the adapter in real life, which the canned stream skips: the
difference between the routes is what a resumable stream adds, the baseline is lower than with a real
upstream). Rounds alternate the routes; the best round of each is reported, as CPU time (process_time)
per stream.

python -m tests.perf.resume_micro [--rounds 7] [--streams 400]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from router.config import load_config_text
from router.errors import RouterError
from router.runtime import Runtime
from router.upstreams.base import AnswerStats, ChatCall, EventStream, Limits, UpstreamAdapter

CHUNKS = 200


def _chunk(i: int, last: bool) -> bytes:
    choice = {"index": 0, "delta": {"content": f" tok{i}"}, "finish_reason": "stop" if last else None}
    body = {"id": "chatcmpl-micro", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    return json.dumps({**body, "choices": [choice]}, separators=(",", ":")).encode()


PAYLOADS = [_chunk(i, i == CHUNKS - 1) for i in range(CHUNKS)]


class CannedStream(EventStream):
    """CHUNKS payloads, one per read, then the end."""

    def __init__(self) -> None:
        self.stats = AnswerStats()
        self._next = 1  # the first payload went out with open_stream

    async def read(self) -> list[bytes] | None:
        if self._next >= CHUNKS:
            return None
        self._next += 1
        return [PAYLOADS[self._next - 1]]

    def close(self) -> None:
        pass

    def survives(self, error: RouterError) -> bool:
        return False


class Canned(UpstreamAdapter):
    """An upstream whose streams are CannedStreams."""

    def __init__(self) -> None:  # no HTTP session: nothing leaves the process
        pass

    async def complete(self, call: ChatCall, limits: Limits) -> tuple[bytes, AnswerStats]:
        raise NotImplementedError

    async def open_stream(self, call: ChatCall, limits: Limits) -> tuple[EventStream, list[bytes]]:
        return CannedStream(), [PAYLOADS[0]]

    async def probe(self, *args: Any, **kwargs: Any) -> Any:
        return None

    async def close(self) -> None:
        pass


def config(log: Path) -> str:
    replicas = [{"name": "a"}, {"name": "b"}]
    upstream = {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "continuation": "vllm"}
    return json.dumps(
        {
            "version": 1,
            "logging": {"level": "info", "format": "json", "file": str(log)},
            "upstreams": {"a": upstream, "b": upstream},
            "defaults": {"health_check": {"enabled": False}},
            "routes": [
                {"path": "/chat/on", "model": "m", "upstreams": replicas, "resume": {"enabled": True}},
                {"path": "/chat/off", "model": "m", "upstreams": replicas},
            ],
        }
    )


BODY = b'{"messages":[{"role":"user","content":"Count to two hundred."}],"stream":true}'


async def one(runtime: Runtime, path: str) -> None:
    """One streamed request through the ASGI entry, checked to end with [DONE]."""
    sent = False
    ended = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": BODY, "more_body": False}
        await ended.wait()  # the client stays until the answer ended, then goes
        return {"type": "http.disconnect"}

    out: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        out.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            ended.set()

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 1),
        "client": ("127.0.0.1", 2),
    }
    await runtime(scope, receive, send)
    bodies = b"".join(m.get("body", b"") for m in out if m["type"] == "http.response.body")
    if out[0].get("status") != 200 or b"data: [DONE]" not in bodies[-64:]:
        raise RuntimeError(f"{path}: not a whole stream: {out[0]} ... {bodies[-200:]!r}")


async def measure(rounds: int, streams: int) -> dict[str, list[float]]:
    """CPU microseconds per stream, per round, for each route."""
    with tempfile.TemporaryDirectory(prefix="router-resume-micro-") as tmp:
        runtime = Runtime(load_config_text(config(Path(tmp) / "requests.log"), "micro.yaml", env={}), None)
        runtime._install(runtime.prepare(runtime.initial_config))
        assert runtime.current is not None
        for state in runtime.current.table.upstreams():
            await state.pool.close()  # the real adapter's session, unused
            state.pool._adapter = Canned()
        for path in ("/chat/on", "/chat/off"):  # warm-up
            for _ in range(20):
                await one(runtime, path)
        gc.collect()
        gc.freeze()
        per: dict[str, list[float]] = {"on": [], "off": []}
        for n in range(rounds):
            for variant in ("on", "off") if n % 2 == 0 else ("off", "on"):
                started = time.process_time()
                for _ in range(streams):
                    await one(runtime, f"/chat/{variant}")
                per[variant].append((time.process_time() - started) / streams * 1e6)
        runtime.logs.close()
    return per


def run(rounds: int, streams: int) -> dict[str, list[float]]:
    return uvloop.run(measure(rounds, streams))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--streams", type=int, default=400)
    args = parser.parse_args()
    per = run(args.rounds, args.streams)
    for variant, values in per.items():
        print(
            f"resume {variant}: best {min(values):.1f} us per stream of {CHUNKS} chunks, "
            f"median {statistics.median(values):.1f}"
        )
    added = min(per["on"]) - min(per["off"])
    print(
        f"added by resume (best rounds): {added:.1f} us per stream, {added / CHUNKS * 1000:.0f} ns per chunk"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
