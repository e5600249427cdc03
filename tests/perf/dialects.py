"""Each client dialect's front door against the OpenAI chat path, on the same route, in one run.

For every door (OpenAI chat, Anthropic Messages, OpenAI Responses, Ollama `/api/chat`): the p50 and p99
of a whole answer at 1 client (wrk, the same fixed upstream answer from nginx) and, for streams, the time
to first byte and the chunks relayed per second (streams of CHUNKS chunks from the SSE upstream, one at a
time). Figures are reported next to the OpenAI chat path's, as what each door adds.

    python -m tests.perf.dialects            (needs wrk and nginx, like tests/perf/run.sh)
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.perf.__main__ import (
    API_KEY,
    CHUNKS,
    COMPLETION,
    LOADGEN_CPU,
    MODELS,
    NGINX_CONF,
    PERF,
    WRK_SECONDS,
    Processes,
    free_port,
    http,
    main_config,
    route_state,
    start_router,
    wait_for,
)

STREAMS = 40  # per door, one at a time
ROUNDS = 3  # wrk rounds per door, alternating doors; the median round is reported


def bodies(model: str, stream: bool) -> dict[str, tuple[str, dict[str, Any]]]:
    """Door path and request body, per dialect, asking the same of the same route."""
    text = "Say hi."
    return {
        "openai_chat": (
            "/v1/chat/completions",
            {
                "model": model,
                "messages": [{"role": "user", "content": text}],
                "max_tokens": 16,
                "stream": stream,
            },
        ),
        "anthropic_messages": (
            "/v1/messages",
            {
                "model": model,
                "messages": [{"role": "user", "content": text}],
                "max_tokens": 16,
                "stream": stream,
            },
        ),
        "openai_responses": (
            "/v1/responses",
            {"model": model, "input": text, "max_output_tokens": 16, "stream": stream, "store": False},
        ),
        "ollama_chat": (
            "/api/chat",
            {
                "model": model,
                "messages": [{"role": "user", "content": text}],
                "options": {"num_predict": 16},
                "stream": stream,
            },
        ),
    }


def wrk_body(url: str, body: dict[str, Any], clients: int = 1) -> dict[str, float]:
    """p50/p99 (ms) and req/s of POSTing `body` to `url` (tests/perf/post.lua, answers checked 200)."""
    argv = ["taskset", "-c", str(LOADGEN_CPU), "wrk", "-t1", f"-c{clients}", f"-d{WRK_SECONDS}s"]
    argv += ["--timeout", "10s", "-s", str(PERF / "post.lua"), url]
    env = {**os.environ, "BODY": json.dumps(body), "API_KEY": API_KEY, "EXPECT": "200"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=WRK_SECONDS + 30)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if done.returncode or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    r = json.loads(line[len("RESULT ") :])
    if r["errors"] or r["unexpected"] or not r["requests"]:
        raise RuntimeError(f"wrk {url}: bad answers: {line}")
    return {"rps": r["requests"] / r["seconds"], "p50": r["p50_us"] / 1000, "p99": r["p99_us"] / 1000}


END_MARKERS = {
    "openai_chat": b"data: [DONE]",
    "anthropic_messages": b"event: message_stop",
    "openai_responses": b"response.completed",
    "ollama_chat": b'"done":true',
}
"""What each dialect's clean end looks like: a stream without it is counted as a failure, not a figure."""


async def stream_figures(url: str, body: dict[str, Any], end: bytes) -> dict[str, float]:
    """Time to the first body byte (p50, ms) and chunks relayed per second over STREAMS streams, each
    checked to end with its dialect's end marker."""
    headers = {"Authorization": f"Bearer {API_KEY}", "x-api-key": API_KEY}
    firsts: list[float] = []
    started = time.perf_counter()
    async with aiohttp.ClientSession(headers=headers) as session:
        for _ in range(STREAMS):
            sent = time.perf_counter()
            first = None
            async with session.post(url, json=body) as response:
                if response.status != 200:
                    raise RuntimeError(f"{url}: HTTP {response.status}: {await response.text()}")
                tail = b""
                async for data in response.content.iter_any():
                    if first is None:
                        first = time.perf_counter() - sent
                    tail = (tail + data)[-65536:]
                if end not in tail:
                    raise RuntimeError(f"{url}: a stream ended without {end!r}: ...{tail[-300:]!r}")
            firsts.append(first or 0.0)
    elapsed = time.perf_counter() - started
    return {"ttfb_p50": statistics.median(firsts) * 1000, "chunks_per_s": STREAMS * CHUNKS / elapsed}


def main() -> int:
    procs = Processes(Path(tempfile.mkdtemp(prefix="router-dialects-")))
    tmp = procs.logs
    try:
        nginx_port, sse_port = free_port(), free_port()
        (tmp / "nginx.conf").write_text(
            NGINX_CONF.format(tmp=tmp, port=nginx_port, completion=COMPLETION, models=MODELS)
        )
        conf = ["-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "nginx-error.log")]
        procs.start("nginx", ["nginx", *conf], LOADGEN_CPU)
        argv = [sys.executable, "-m", "tests.perf.sse_upstream", "--port", str(sse_port)]
        procs.start("sse-upstream", [*argv, "--chunks", str(CHUNKS)], LOADGEN_CPU)
        wait_for("nginx", lambda: http("GET", f"http://127.0.0.1:{nginx_port}/v1/models")[0] == 200, procs)
        _, router = start_router(procs, tmp, "router", main_config(nginx_port, sse_port, tmp / "req.log"))
        for name in ("bench", "stream"):
            wait_for(f"route {name}", lambda n=name: route_state(router, n) == ("healthy", "closed"), procs)
        whole: dict[str, list[dict[str, float]]] = {}
        for path, body in bodies("bench", False).values():
            status, answer = http("POST", router + path, json.dumps(body))
            if status != 200:
                raise RuntimeError(f"{path}: HTTP {status}: {str(answer)[:300]}")
            wrk_body(router + path, body)  # warm-up
        for _ in range(ROUNDS):
            for door, (path, body) in bodies("bench", False).items():
                whole.setdefault(door, []).append(wrk_body(router + path, body))
        streamed = {
            door: asyncio.run(stream_figures(router + path, body, END_MARKERS[door]))
            for door, (path, body) in bodies("stream", True).items()
        }
    finally:
        procs.stop_all()
    base = statistics.median(r["p50"] for r in whole["openai_chat"])
    base_ttfb = streamed["openai_chat"]["ttfb_p50"]
    lines = [
        "| door | whole answer, 1 client: p50 ms (added over OpenAI chat) | p99 ms | stream: time to first "
        "byte p50 ms (added) | stream: chunks/s relayed |",
        "|---|---|---|---|---|",
    ]
    for door in whole:
        p50 = statistics.median(r["p50"] for r in whole[door])
        p99 = statistics.median(r["p99"] for r in whole[door])
        s = streamed[door]
        lines.append(
            f"| {door} | {p50:.3f} ({p50 - base:+.3f}) | {p99:.3f} | {s['ttfb_p50']:.3f} "
            f"({s['ttfb_p50'] - base_ttfb:+.3f}) | {s['chunks_per_s']:,.0f} |"
        )
    load = os.getloadavg()
    lines.append(
        f"\nload average at the end: {load[0]:.2f}; {ROUNDS} wrk rounds of {WRK_SECONDS} s per door, "
        f"median shown; {STREAMS} streams of {CHUNKS} chunks per door, one at a time"
    )
    print("\n".join(lines))
    (PERF / "results-dialects.md").write_text("# Front doors side by side\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
