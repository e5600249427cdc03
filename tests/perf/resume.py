"""Resume: what it costs a stream that does not break, and how long resuming a broken one takes.

python -m tests.perf.resume [--rounds 6] [--streams 60] [--resumes 30] [--ttft-ms 20] [--micro-streams 300]
                            [--profile]

(a) Streams that do not break, resume on against resume off, one router, one run: `/chat/on` and
    `/chat/off` are the same two replicas of the SSE upstream (tests/perf/sse_upstream.py, 200 chunks sent
    as fast as it can), with `resume: {enabled: true}` on the first only. In alternating rounds, STREAMS
    streams one at a time through each (tests/perf/stream_client.py): time to first token, chunks relayed
    per second, and the router's CPU per stream (utime + stime from /proc/PID/stat over the round, its
    warm-up stream included).
(b) Resumes: `/chat/resume`'s upstream (tests/perf/resume_upstream.py) sends 20 chunks and dies; the
    route resumes on its fallback, whose upstream continues after TTFT seconds (a model reading its
    prompt). Per stream, the time from the last partial chunk's arrival at the client to the first
    continued chunk's, against the second upstream's own time to first token for the same continuation
    request, measured directly (same client, kept-alive connection) in the same rounds. The target: a
    resume adds no more than that time plus 5 ms. Every resumed stream is checked: the 20 partial chunks,
    then the 20 continued ones, one finish_reason, `data: [DONE]`.

Then (a) again in process (tests/perf/resume_micro.py): the router's own CPU per stream without sockets,
on the router's core once the processes above are stopped.
--profile: py-spy samples the router for 8 s of /chat/on streams afterwards (where its time goes).
Pinning as in `python -m tests.perf`: the router alone on core 1; the upstreams and this client on core 0.
Everything runs on 127.0.0.1, is stopped on exit and bounded by TIME_LIMIT. Writes
tests/perf/results/resume.md and resume.csv.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime
import functools
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.perf import resume_micro
from tests.perf.__main__ import (
    LOADGEN_CPU,
    PERF,
    ROOT,
    ROUTER_CPU,
    Processes,
    cpu_seconds,
    free_port,
    http,
    profile,
    start_router,
    wait_for,
)
from tests.perf.resume_upstream import BREAK_CHUNKS, CONT_CHUNKS
from tests.perf.sse_upstream import STAMP

RESULTS = PERF / "results"
TIME_LIMIT = 10 * 60
CHUNKS = 200  # per stream that does not break
TARGET_MS = 5.0  # a resume may add this over the second upstream's own time to first token
QUESTION = [{"role": "user", "content": "Count to forty."}]


def answers(url: str) -> bool:
    """Whether GET `url` answers 200 (an upstream is up)."""
    return bool(http("GET", url)[0] == 200)


def router_config(sse: int, resume_up: int, log: Path) -> dict[str, Any]:
    """Two routes that differ only in `resume`, and a route whose upstream always breaks."""
    sse_url, resume_url = f"http://127.0.0.1:{sse}/v1", f"http://127.0.0.1:{resume_up}/v1"
    replicas = [{"name": "sse-a"}, {"name": "sse-b"}]
    return {
        "version": 1,
        "server": {"host": "127.0.0.1"},
        "logging": {"level": "info", "format": "json", "file": str(log)},
        "upstreams": {
            "sse-a": {"type": "openai", "base_url": sse_url, "continuation": "vllm"},
            "sse-b": {"type": "openai", "base_url": sse_url, "continuation": "vllm"},
            # it breaks every stream on purpose: its breaker must not open and send them all to the fallback
            "dies": {
                "type": "openai",
                "base_url": resume_url,
                "circuit_breaker": {"failure_threshold": 10**9},
            },
            "continues": {"type": "openai", "base_url": resume_url, "continuation": "vllm"},
        },
        "defaults": {"health_check": {"enabled": False}},
        "routes": [
            {"path": "/chat/on", "model": "stream", "upstreams": replicas, "resume": {"enabled": True}},
            {"path": "/chat/off", "model": "stream", "upstreams": replicas},
            {
                "path": "/chat/resume",
                "model": "break",
                "upstream": "dies",
                "max_retries": 0,
                "fallbacks": ["/chat/continue"],
                "resume": {"enabled": True, "max_resumes": 1},
            },
            {"path": "/chat/continue", "model": "continue", "upstream": "continues"},
        ],
    }


# ---------------------------------------------------------------------------------------------- (a)


def unbroken_round(router: str, pid: int, path: str, streams: int) -> dict[str, float]:
    """STREAMS streams of CHUNKS chunks through `path`, one at a time: the stream client's figures and the
    router's CPU milliseconds per stream."""
    argv = [sys.executable, "-m", "tests.perf.stream_client", router + path, "--model", "stream"]
    argv += ["--api-key", "", "--streams", str(streams), "--concurrency", "1", "--chunks", str(CHUNKS)]
    before = cpu_seconds(pid)
    done = subprocess.run(
        ["taskset", "-c", str(LOADGEN_CPU), *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    spent = cpu_seconds(pid) - before
    if done.returncode:
        raise RuntimeError(f"stream client failed on {path}: {done.stderr.strip()[-500:]}")
    figures: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    figures["cpu_s"], figures["streams_served"] = spent, streams + 1  # + the client's warm-up stream
    figures["cpu_ms_per_stream"] = spent * 1000 / (streams + 1)
    return figures


def profile_on(procs: Processes, router: str, pid: int, out: Path) -> list[str]:
    """py-spy on the router while streams go through /chat/on: the top functions by own time, and the
    share of the samples that resuming itself costs: own time in router/resume.py, and in the asyncio
    timeouts it sets up (its stall clock), not the upstream reads it waits on."""
    top = profile(procs, pid, 8, lambda: unbroken_round(router, pid, "/chat/on", 300), out)
    resuming = total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack.startswith("<module> (router"):
            continue
        total += int(count)
        frames = stack.split(";")
        leaf, parent = frames[-1], frames[-2] if len(frames) > 1 else ""
        if "(router/resume.py" in leaf or ("(asyncio/timeouts.py" in leaf and "(router/resume.py" in parent):
            resuming += int(count)
    share = 100 * resuming / (total or 1)
    return [*top, f"{share:5.1f}%  resuming's own work: router/resume.py frames and the timeouts they set"]


# ---------------------------------------------------------------------------------------------- (b)


def tags(events: list[tuple[float, bytes]]) -> list[tuple[float, str]]:
    """(arrival, tag) of each content event: the word after the time stamp, `b3` or `c0`."""
    out = []
    for at, event in events:
        start = event.find(STAMP)
        if start >= 0:
            rest = event[start + len(STAMP) :].split(b" ", 2)
            out.append((at, rest[1].decode()))
    return out


async def read_events(response: aiohttp.ClientResponse) -> list[tuple[float, bytes]]:
    """Every SSE event of a response with the time it was read (the time its last bytes arrived)."""
    events: list[tuple[float, bytes]] = []
    rest = b""
    async for data in response.content.iter_any():
        now = time.perf_counter()
        *complete, rest = (rest + data).split(b"\n\n")
        events.extend((now, e) for e in complete if e.strip())
    return events


async def resumed_stream(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """One stream through /chat/resume: the gap at the seam (ms), checked to be one whole answer."""
    body = {"messages": QUESTION, "stream": True}
    async with session.post(url, json=body) as response:
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}: {(await response.read())[:300]!r}")
        events = await read_events(response)
    seen = tags(events)
    expected = [f"b{i}" for i in range(BREAK_CHUNKS)] + [f"c{i}" for i in range(CONT_CHUNKS)]
    if [t for _, t in seen] != expected or events[-1][1] != b"data: [DONE]":
        raise RuntimeError(
            f"{url}: not one resumed answer: {[t for _, t in seen]} ... {events[-1][1][:200]!r}"
        )
    finishes = sum(e.count(b'"finish_reason":"stop"') for _, e in events)
    if finishes != 1:
        raise RuntimeError(f"{url}: {finishes} finish_reason stop in one answer")
    last_partial = seen[BREAK_CHUNKS - 1][0]
    first_continued = seen[BREAK_CHUNKS][0]
    return {"seam_ms": (first_continued - last_partial) * 1000}


async def direct_ttft(session: aiohttp.ClientSession, url: str) -> float:
    """The continuing upstream's own time to first token (ms) for the continuation request."""
    partial = "".join(f"@0 b{i} " for i in range(BREAK_CHUNKS))
    body = {
        "model": "continue",
        "stream": True,
        "messages": [*QUESTION, {"role": "assistant", "content": partial}],
        "continue_final_message": True,
        "add_generation_prompt": False,
        "echo": False,
    }
    sent = time.perf_counter()
    async with session.post(url, json=body) as response:
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}")
        first = None
        async for data in response.content.iter_any():
            if first is None and STAMP in data:
                first = time.perf_counter()
    assert first is not None, "the continuing upstream sent nothing"
    return (first - sent) * 1000


async def resume_round(router: str, upstream: str, count: int) -> dict[str, list[float]]:
    """`count` direct continuations and `count` resumed streams, interleaved."""
    seams: list[float] = []
    ttfts: list[float] = []
    async with aiohttp.ClientSession() as direct, aiohttp.ClientSession() as client:
        await direct_ttft(direct, upstream)  # warm-up: connections open
        await resumed_stream(client, router)
        for _ in range(count):
            ttfts.append(await direct_ttft(direct, upstream))
            seams.append((await resumed_stream(client, router))["seam_ms"])
    return {"seam": seams, "direct": ttfts}


# ---------------------------------------------------------------------------------------------- report


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def write_csv(rows: list[dict[str, Any]]) -> None:
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    with open(RESULTS / "resume.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})


def report(
    rows: list[dict[str, Any]],
    seams: list[float],
    ttfts: list[float],
    args: Any,
    load: str,
    top: list[str],
    micro: dict[str, list[float]],
) -> str:
    med = statistics.median

    def fig(variant: str, key: str) -> list[float]:
        return [r[key] for r in rows if r["phase"] == "unbroken" and r["variant"] == variant]

    lines = [
        "# Resume: the cost of a stream that does not break, and the time a resume takes",
        "",
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; command: `python -m "
        f"tests.perf.resume --rounds {args.rounds} --streams {args.streams} --resumes {args.resumes} "
        f"--micro-streams {args.micro_streams} "
        f"--ttft-ms {args.ttft_ms:g}{' --profile' if args.profile else ''}`",
        f"- machine: nproc {os.cpu_count()}, Linux {platform.release()}, Python {platform.python_version()}; "
        f"load average before the run {load} (shared with other engineers: compare within this run)",
        f"- pinning: core {ROUTER_CPU} = the router (one worker); core {LOADGEN_CPU} = the upstreams and the "
        "clients",
        "",
        f"## (a) Streams that do not break: resume on vs off ({args.rounds} alternating rounds of "
        f"{args.streams} streams of {CHUNKS} chunks, one at a time)",
        "",
        "| figure | resume off (median of rounds, min-max) | resume on | on - off |",
        "|---|---|---|---|",
    ]
    for key, name in (
        ("ttft_p50_ms", "time to first token p50, ms"),
        ("chunks_per_s", "chunks relayed per second"),
        ("cpu_ms_per_stream", "router CPU per stream, ms"),
    ):
        off, on = fig("off", key), fig("on", key)
        change = (med(on) / med(off) - 1) * 100
        lines.append(
            f"| {name} | {med(off):,.3f} ({min(off):,.3f}-{max(off):,.3f}) | {med(on):,.3f} "
            f"({min(on):,.3f}-{max(on):,.3f}) | {med(on) - med(off):+,.3f} ({change:+.1f}%) |"
        )
    # /proc's CPU times tick every 10 ms: over the whole run, per variant, the quantisation is negligible
    whole = {v: sum(fig(v, "cpu_s")) * 1000 / sum(fig(v, "streams_served")) for v in ("off", "on")}
    lines.append(
        f"| router CPU per stream over the whole run, ms | {whole['off']:.3f} | {whole['on']:.3f} | "
        f"{whole['on'] - whole['off']:+.3f} ({(whole['on'] / whole['off'] - 1) * 100:+.1f}%) |"
    )
    fast_on, fast_off = min(micro["on"]), min(micro["off"])
    per_chunk_ns = (fast_on - fast_off) / resume_micro.CHUNKS * 1000
    lines += [
        "",
        f"In process (tests/perf/resume_micro.py: the router's ASGI entry, a canned upstream, no sockets; "
        f"{len(micro['on'])} alternating rounds of {args.micro_streams} streams of {resume_micro.CHUNKS} "
        "chunks; CPU time per stream, best round):",
        "",
        "| resume off, µs | resume on, µs | added per stream, µs | added per chunk, ns |",
        "|---|---|---|---|",
        f"| {fast_off:.1f} | {fast_on:.1f} | {fast_on - fast_off:+.1f} "
        f"({(fast_on / fast_off - 1) * 100:+.1f}%) | {per_chunk_ns:+.0f} |",
    ]
    added = [s - d for s, d in zip(seams, ttfts, strict=True)]
    lines += [
        "",
        f"## (b) Resumes: {len(seams)} streams whose upstream died after {BREAK_CHUNKS} chunks, continued "
        f"by a fallback whose own time to first token is about {args.ttft_ms:g} ms",
        "",
        "| figure (ms) | p50 | p90 | max |",
        "|---|---|---|---|",
        f"| at the client: last partial chunk -> first continued chunk | {med(seams):.2f} | "
        f"{pct(seams, 0.9):.2f} | {max(seams):.2f} |",
        f"| the continuing upstream's own time to first token, measured directly | {med(ttfts):.2f} | "
        f"{pct(ttfts, 0.9):.2f} | {max(ttfts):.2f} |",
        f"| added by resuming (seam - direct, pairwise) | {med(added):.2f} | {pct(added, 0.9):.2f} | "
        f"{max(added):.2f} |",
        "",
        f"Target: a resume adds at most the second upstream's own time to first token + {TARGET_MS:g} ms: "
        f"p50 {'met' if med(added) <= TARGET_MS else 'NOT met'} ({med(added):.2f} ms added), p90 "
        f"{'met' if pct(added, 0.9) <= TARGET_MS else 'NOT met'} ({pct(added, 0.9):.2f} ms).",
    ]
    if top:
        lines += [
            "",
            "## Where a resumable stream's time goes (py-spy, 8 s of /chat/on streams, own time)",
            "",
            "```",
            *top,
            "```",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--streams", type=int, default=60, help="per route per round, in (a)")
    parser.add_argument("--resumes", type=int, default=30, help="per round, in (b)")
    parser.add_argument("--ttft-ms", type=float, default=20.0, help="the continuing upstream's delay")
    parser.add_argument("--profile", action="store_true", help="py-spy the router on /chat/on streams")
    parser.add_argument("--micro-streams", type=int, default=300, help="per round, in process")
    args = parser.parse_args()
    load = f"{os.getloadavg()[0]:.2f}"

    def too_long(signum: int, _frame: object) -> None:
        raise TimeoutError(f"the benchmark ran past its {TIME_LIMIT} s limit")

    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(TIME_LIMIT)
    procs = Processes(Path(tempfile.mkdtemp(prefix="router-resume-")))
    tmp = procs.logs
    rows: list[dict[str, Any]] = []
    seams: list[float] = []
    ttfts: list[float] = []
    top: list[str] = []
    micro: dict[str, list[float]] = {}
    try:
        sse, resume_up = free_port(), free_port()
        argv = [sys.executable, "-m", "tests.perf.sse_upstream", "--port", str(sse), "--chunks", str(CHUNKS)]
        procs.start("sse-upstream", argv, LOADGEN_CPU)
        argv = [sys.executable, "-m", "tests.perf.resume_upstream", "--port", str(resume_up)]
        procs.start("resume-upstream", [*argv, "--ttft", str(args.ttft_ms / 1000)], LOADGEN_CPU)
        for port in (sse, resume_up):
            wait_for(
                f"upstream :{port}", functools.partial(answers, f"http://127.0.0.1:{port}/v1/models"), procs
            )
        proc, router = start_router(procs, tmp, "router", router_config(sse, resume_up, tmp / "requests.log"))
        unbroken_round(router, proc.pid, "/chat/on", 5)  # warm-up
        unbroken_round(router, proc.pid, "/chat/off", 5)
        for n in range(args.rounds):
            order = ("on", "off") if n % 2 == 0 else ("off", "on")
            for variant in order:
                r = unbroken_round(router, proc.pid, f"/chat/{variant}", args.streams)
                rows.append({"phase": "unbroken", "round": n, "variant": variant, **r})
            before = cpu_seconds(proc.pid)
            got = asyncio.run(
                resume_round(
                    router + "/chat/resume", f"http://127.0.0.1:{resume_up}/v1/chat/completions", args.resumes
                )
            )
            cpu_ms = (cpu_seconds(proc.pid) - before) * 1000 / (args.resumes + 1)
            seams += got["seam"]
            ttfts += got["direct"]
            rows.append(
                {
                    "phase": "resume",
                    "round": n,
                    "variant": "resumed",
                    "seam_p50_ms": statistics.median(got["seam"]),
                    "direct_ttft_p50_ms": statistics.median(got["direct"]),
                    "added_p50_ms": statistics.median(
                        s - d for s, d in zip(got["seam"], got["direct"], strict=True)
                    ),
                    "cpu_ms_per_stream": cpu_ms,
                }
            )
            print(f"round {n + 1}/{args.rounds} done", flush=True)
        if args.profile:
            top = profile_on(procs, router, proc.pid, tmp / "resume-on.txt")
        # in process, on the router's core, while nothing else of ours runs
        procs.stop_all()
        mine = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {ROUTER_CPU})
        try:
            micro = resume_micro.run(max(args.rounds, 5), args.micro_streams)
        finally:
            os.sched_setaffinity(0, mine)
        for variant, values in micro.items():
            for n, us in enumerate(values):
                rows.append({"phase": "in-process", "round": n, "variant": variant, "cpu_us_per_stream": us})
    finally:
        signal.alarm(0)
        procs.stop_all()
    RESULTS.mkdir(exist_ok=True)
    write_csv(rows)
    text = report(rows, seams, ttfts, args, load, top, micro)
    (RESULTS / "resume.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
