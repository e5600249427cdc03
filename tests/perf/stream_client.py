"""Streaming load client: N streamed chat completions, C at a time; prints one JSON line of figures.

Per stream it records the time to the first event (TTFT) and to `data: [DONE]`; per chunk, its delay:
when it reached the client minus the time the upstream stamped in its content (both time.perf_counter(),
CLOCK_MONOTONIC, shared across processes). A stream without exactly the expected chunks then [DONE] is
an error.

python -m tests.perf.stream_client URL --streams 50 --concurrency 1 --chunks 200 [--model paced] [--seconds S]
python -m tests.perf.stream_client URL --hold --streams 2000 --chunks 10 --model slow
  (--hold: open all streams at once; count the most open at a time and the ones that did not end right)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import statistics
import time

import aiohttp
import uvloop

from tests.perf.sse_upstream import STAMP

EXTRA_HEADERS: dict[str, str] = {}  # --header "Name: value", sent with every request


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def one_stream(
    session: aiohttp.ClientSession, url: str, body: dict[str, object], delays: list[float]
) -> tuple[float, float, int]:
    """(ttft, total, chunks) in seconds and events, [DONE] not counted; appends each chunk's delay."""
    started = time.perf_counter()
    ttft = None
    chunks, done, rest = 0, False, b""
    async with session.post(url, json=body) as response:
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}: {(await response.read())[:300]!r}")
        async for data in response.content.iter_any():
            now = time.perf_counter()
            *events, rest = (rest + data).split(b"\n\n")
            for event in events:
                at = event.find(STAMP)
                if at >= 0:
                    ttft = ttft or now - started
                    chunks += 1
                    delays.append(now - float(event[at + len(STAMP) : event.index(b" ", at)]))
                elif event == b"data: [DONE]":
                    done = True
    total = time.perf_counter() - started
    if ttft is None or not done:
        raise RuntimeError(f"{url}: stream ended without data: [DONE] after {chunks} chunks")
    return ttft, total, chunks


async def run(
    url: str, model: str, key: str, streams: int, concurrency: int, chunks: int, seconds: float
) -> dict[str, float]:
    body = {"model": model, "messages": [{"role": "user", "content": "Count to 200."}], "stream": True}
    results: list[tuple[float, float, int]] = []
    delays: list[float] = []
    todo = iter(range(streams))
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    headers.update(EXTRA_HEADERS)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        await one_stream(session, url, body, [])  # warm-up: connection open, caches filled

        async def worker() -> None:
            for _ in todo:
                results.append(await one_stream(session, url, body, delays))
                if seconds and time.perf_counter() - started > seconds:
                    return

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    bad = [n for _, _, n in results if n != chunks]
    if bad:
        raise RuntimeError(f"{url}: {len(bad)} streams had a wrong chunk count, e.g. {bad[0]} != {chunks}")
    ttfts = [t for t, _, _ in results]
    return {
        "streams": len(results),
        "ttft_p50_ms": statistics.median(ttfts) * 1000,
        "ttft_p99_ms": percentile(ttfts, 0.99) * 1000,
        "total_p50_ms": statistics.median(total for _, total, _ in results) * 1000,
        "delay_p50_ms": statistics.median(delays) * 1000,
        "delay_p99_ms": percentile(delays, 0.99) * 1000,
        "chunks_per_s": sum(n for _, _, n in results) / wall,
    }


async def hold(
    url: str, model: str, key: str, streams: int, chunks: int, rate: float = 0
) -> dict[str, object]:
    """Open `streams` streams, `rate` a second (0: all at once); the most open at a time, and how many did
    not end with [DONE].

    `reasons` counts the dropped ones by what went wrong (a status and its error code, a short read, an
    exception's class), so that a drop says where it came from.
    """
    body = {"model": model, "messages": [{"role": "user", "content": "Count slowly."}], "stream": True}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    headers.update(EXTRA_HEADERS)
    open_now = peak = 0
    reasons: collections.Counter[str] = collections.Counter()

    async def one(session: aiohttp.ClientSession, at: float) -> None:
        nonlocal open_now, peak
        await asyncio.sleep(at - time.perf_counter())
        try:
            async with session.post(url, json=body) as response:
                open_now += 1
                peak = max(peak, open_now)
                try:
                    data = await response.read()
                finally:
                    open_now -= 1
            if response.status != 200:
                code = re.search(rb'"code":\s*"([^"]*)"', data)
                reasons[f"{response.status} {code.group(1).decode() if code else ''}".strip()] += 1
            elif data.count(STAMP) != chunks or not data.endswith(b"data: [DONE]\n\n"):
                reasons["incomplete stream"] += 1
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            reasons[type(e).__name__ + (f" {e.errno}" if isinstance(e, OSError) and e.errno else "")] += 1

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:
        start = time.perf_counter()
        await asyncio.gather(*(one(session, start + (i / rate if rate else 0)) for i in range(streams)))
    return {"streams": streams, "held": peak, "dropped": sum(reasons.values()), "reasons": dict(reasons)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--model", default="stream")
    parser.add_argument("--api-key", default="", help="sent as Authorization: Bearer KEY")
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=0, help="start no stream after this; 0: no limit")
    parser.add_argument("--hold", action="store_true", help="open all --streams at once (see above)")
    parser.add_argument(
        "--rate", type=float, default=0, help="--hold: streams opened a second; 0: all at once"
    )
    parser.add_argument(
        "--header", action="append", default=[], help='"Name: value", sent with every request'
    )
    args = parser.parse_args()
    EXTRA_HEADERS.update((n.strip(), v.strip()) for n, _, v in (h.partition(":") for h in args.header))
    if args.hold:
        print(
            json.dumps(
                uvloop.run(hold(args.url, args.model, args.api_key, args.streams, args.chunks, args.rate))
            )
        )
    else:
        print(
            json.dumps(
                uvloop.run(
                    run(
                        args.url,
                        args.model,
                        args.api_key,
                        args.streams,
                        args.concurrency,
                        args.chunks,
                        args.seconds,
                    )
                )
            )
        )
