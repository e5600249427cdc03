"""Soak: one router worker, everything on, for N minutes at about half its maximum rate, streaming and not,
with session traffic; its RSS and open descriptors sampled every few seconds.

python -m tests.perf.soak [--minutes 10] [--interval 5]
(tests/perf/run.sh or curves.sh install wrk and nginx first)

Load: wrk (16 connections, each pausing between requests so that the whole runs at half the rate measured
just before) posts chat requests, every other one a turn of one of 120 sessions (sessions are bounded:
100 per key, 200 messages each, so the store fills and then evicts); beside it, 2 paced streams at a time.
It writes tests/perf/results/soak.csv (time, RSS, descriptors, CPU), soak.png and soak.md, and says
whether memory plateaued (growth under 10% from the end of the warm-up, the first fifth of the run, to
the end) and whether descriptors leaked (more open 20 s after the load stopped than before it began, by
more than the upstream pools' idle connections could explain). Loopback only; stops by itself.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.perf.__main__ import (
    API_KEY,
    COMPLETION,
    LOADGEN_CPU,
    MODELS,
    NGINX_CONF,
    PERF,
    ROOT,
    Processes,
    cpu_seconds,
    free_port,
    http,
    main_config,
    route_state,
    start_router,
    vm_rss_mb,
    wait_for,
    wrk,
)

RESULTS = PERF / "results"
CHUNKS = 50
SESSIONS = 120
CONNECTIONS = 16


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def sample(pid: int, started: float, last: list[float]) -> dict[str, float]:
    """One row: seconds since the start, RSS (MB), open descriptors, % of a core since the last row."""
    now, cpu = time.monotonic(), cpu_seconds(pid)
    busy = 100 * (cpu - last[1]) / max(now - last[0], 1e-6)
    last[:] = [now, cpu]
    return {"t": round(now - started, 1), "rss_mb": vm_rss_mb(pid), "fds": open_fds(pid), "cpu_pct": busy}


def verdicts(
    rows: list[dict[str, float]], load_end: float, fds_before: int, fds_after: int
) -> dict[str, object]:
    """Plateau: RSS at the end of the load within 10% of RSS at the end of the warm-up (first fifth)."""
    loaded = [r for r in rows if r["t"] <= load_end]
    warm = [r for r in loaded if r["t"] >= load_end / 5] or loaded
    first = sum(r["rss_mb"] for r in warm[:3]) / len(warm[:3])
    last = sum(r["rss_mb"] for r in warm[-3:]) / len(warm[-3:])
    growth = (last - first) / first
    # the trend after the warm-up, in MB a minute: a plateau has none, a leak a steady one
    slope = statistics.linear_regression([r["t"] / 60 for r in warm], [r["rss_mb"] for r in warm]).slope
    # the upstream pools keep idle connections for a while; more than that left over is a leak
    leaked = fds_after - fds_before
    return {
        "rss_warm_mb": round(first, 1),
        "rss_end_mb": round(last, 1),
        "rss_peak_mb": round(max(r["rss_mb"] for r in rows), 1),
        "growth_pct": round(100 * growth, 1),
        "slope_mb_per_min": round(slope, 3),
        "plateau": growth < 0.10,
        "fds_before": fds_before,
        "fds_peak": max(int(r["fds"]) for r in rows),
        "fds_after": fds_after,
        "fds_leaked": leaked > 10,
    }


def plot(rows: list[dict[str, float]], load_end: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t"] / 60 for r in rows]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    ax1.plot(t, [r["rss_mb"] for r in rows], color="tab:blue")
    ax1.set_ylabel("router RSS (MB)")
    ax1.set_ylim(bottom=0)
    ax2.plot(t, [r["fds"] for r in rows], color="tab:orange")
    ax2.set_ylabel("open descriptors")
    ax2.set_ylim(bottom=0)
    ax2.set_xlabel("minutes")
    for ax in (ax1, ax2):
        ax.axvline(load_end / 60 / 5, color="grey", ls=":", lw=1)
        ax.axvline(load_end / 60, color="grey", ls="--", lw=1)
        ax.grid(alpha=0.3)
    ax1.set_title(
        "Soak: one router worker at half its maximum rate (dotted: warm-up ends; dashed: load stops)"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.perf.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--interval", type=float, default=5, help="seconds between samples")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
    seconds = args.minutes * 60
    tmp = Path(tempfile.mkdtemp(prefix="router-soak-"))
    procs = Processes(tmp)
    RESULTS.mkdir(exist_ok=True)
    load_avg = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        nginx_port, sse_port = free_port(), free_port()
        conf = NGINX_CONF.format(tmp=tmp, port=nginx_port, completion=COMPLETION, models=MODELS)
        (tmp / "nginx.conf").write_text(conf)
        procs.start("nginx", ["nginx", "-p", str(tmp), "-c", str(tmp / "nginx.conf")], LOADGEN_CPU)
        argv = [
            sys.executable,
            "-m",
            "tests.perf.sse_upstream",
            "--port",
            str(sse_port),
            "--chunks",
            str(CHUNKS),
        ]
        procs.start("sse-upstream", argv, LOADGEN_CPU)
        wait_for("nginx", lambda: http("GET", f"http://127.0.0.1:{nginx_port}/v1/models")[0] == 200, procs)
        wait_for("sse", lambda: http("GET", f"http://127.0.0.1:{sse_port}/v1/models")[0] == 200, procs)
        proc, router = start_router(
            procs, tmp, "router", main_config(nginx_port, sse_port, tmp / "requests.log")
        )
        wait_for("route bench", lambda: route_state(router, "bench") == ("healthy", "closed"), procs)
        url = f"{router}/v1/chat/completions"
        wrk(url, 16, seconds=2)  # warm-up
        top = wrk(url, CONNECTIONS, seconds=5)["rps"]
        rate = top / 2
        pause_ms = max(0, round(CONNECTIONS * 1000 / rate - 1))
        print(f"maximum {top:,.0f} req/s; soaking at about {rate:,.0f} for {args.minutes:g} min", flush=True)
        time.sleep(3)
        started = time.monotonic()
        last = [started, cpu_seconds(proc.pid)]
        rows = [sample(proc.pid, started, last)]
        fds_before = int(rows[0]["fds"])
        env = {**os.environ, "API_KEY": API_KEY, "SESSIONS": str(SESSIONS), "DELAY_MS": str(pause_ms)}
        lua = str(PERF / "soak.lua")
        argv = ["taskset", "-c", str(LOADGEN_CPU), "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{int(seconds)}s"]
        load = subprocess.Popen(
            [*argv, "--timeout", "10s", "-s", lua, url], env=env, stdout=subprocess.PIPE, text=True
        )
        argv = [
            sys.executable,
            "-m",
            "tests.perf.stream_client",
            url,
            "--model",
            "paced",
            "--api-key",
            API_KEY,
        ]
        argv += [
            "--streams",
            "100000000",
            "--concurrency",
            "2",
            "--chunks",
            str(CHUNKS),
            "--seconds",
            str(seconds),
        ]
        streamer = subprocess.Popen(
            ["taskset", "-c", str(LOADGEN_CPU), *argv], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        while load.poll() is None or streamer.poll() is None:
            time.sleep(args.interval)
            rows.append(sample(proc.pid, started, last))
            if time.monotonic() - started > seconds + 120:
                raise RuntimeError("the load did not stop within 2 minutes of its end")
        load_end = time.monotonic() - started
        out = load.communicate()[0]
        result = json.loads(next(x for x in out.splitlines() if x.startswith("RESULT "))[7:])
        streamed = json.loads(streamer.communicate()[0].splitlines()[-1])
        if streamer.returncode:
            raise RuntimeError("the stream client failed")
        settle = time.monotonic() + 20
        while time.monotonic() < settle:
            time.sleep(args.interval)
            rows.append(sample(proc.pid, started, last))
        fds_after = open_fds(proc.pid)
        procs.check("router", proc)
    finally:
        procs.stop_all()
    v = verdicts(rows, load_end, fds_before, fds_after)
    summary = {
        "minutes": args.minutes,
        "max_rps": round(top),
        "target_rps": round(rate),
        "achieved_rps": round(result["requests"] / result["seconds"]),
        "errors": result["errors"],
        "p50_ms": result["p50_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "streams": streamed["streams"],
        **v,
    }
    with open(RESULTS / "soak.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, load_end, RESULTS / "soak.png")
    text = (
        "# Soak\n\n"
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, load average before: {load_avg}\n"
        f"- command: `python -m tests.perf.soak --minutes {args.minutes:g}`\n"
        f"- {summary['minutes']:g} min at {summary['achieved_rps']:,} req/s non-streaming "
        "(maximum measured just "
        f"before: {summary['max_rps']:,}; half of them session turns over {SESSIONS} sessions) plus "
        f"{summary['streams']:,} paced streams of {CHUNKS} chunks, 2 at a time; {summary['errors']} errors; "
        f"p50 / p99 {summary['p50_ms']:.2f} / {summary['p99_ms']:.2f} ms\n"
        f"- RSS: {v['rss_warm_mb']} MB after the warm-up, {v['rss_end_mb']} MB at the end "
        f"({v['growth_pct']:+}%; trend after the warm-up {v['slope_mb_per_min']:+.3f} MB a minute), "
        f"peak {v['rss_peak_mb']} MB: plateau (< 10%): "
        f"{'yes' if v['plateau'] else '**NO**'}\n"
        f"- descriptors: {v['fds_before']} before the load, peak {v['fds_peak']}, "
        f"{v['fds_after']} 20 s after "
        f"it stopped: leak: {'**YES**' if v['fds_leaked'] else 'no'}\n\n"
        "![soak](soak.png)\n\nRaw samples: `soak.csv`.\n"
    )
    (RESULTS / "soak.md").write_text(text)
    print(text)
    print(json.dumps(summary))
    return 0 if v["plateau"] and not v["fds_leaked"] else 1


if __name__ == "__main__":
    sys.exit(main())
