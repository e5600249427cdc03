"""What tracing costs: the same wrk runs against one router worker with tracing off and on (ratio 1.0).

python -m tests.perf.tracing_cost [--before DIR] [--rounds N]

Pinning as in `python -m tests.perf`: core 1 runs the router alone; core 0 runs wrk, the upstream (nginx
answering a fixed chat.completion) and the OTLP/HTTP collector, an in-process receiver that answers 200
and discards every export (so the cost measured is the router's: building, sampling and exporting spans).
The table has what the main benchmark has on (a client key with a rate limit, a JSON log line per
request to a file, health checks). `--before DIR` adds the same runs of a router checked out in DIR (the
commit before tracing), so "off" can be compared with "never had it". Rounds alternate the variants, so
a machine that gets busier mid-run affects all of them alike; each figure is the median of the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.observability.otlp_receiver import OTLPReceiver
from tests.perf.__main__ import (
    API_KEY,
    BIN,
    COMPLETION,
    LOADGEN_CPU,
    MODELS,
    NGINX_CONF,
    ROUTER_CPU,
    WRK_SECONDS,
    Processes,
    cpu_seconds,
    free_port,
    http,
    wait_for,
    wrk,
)


def config(nginx: int, log: Path, telemetry: dict[str, Any] | None) -> dict[str, Any]:
    health = {"enabled": True, "interval": 5, "timeout": 2, "failure_threshold": 2}
    doc: dict[str, Any] = {
        "version": 1,
        "server": {"host": "127.0.0.1"},
        "auth": {"api_keys": [{"name": "bench", "key": API_KEY, "rate_limit_per_minute": 10**9}]},
        "logging": {"level": "info", "format": "json", "file": str(log)},
        "upstreams": {"nginx": {"type": "openai", "base_url": f"http://127.0.0.1:{nginx}/v1"}},
        "defaults": {"health_check": health},
        "routes": [{"path": "/chat/bench", "model": "bench", "upstream": "nginx"}],
    }
    if telemetry is not None:
        doc["telemetry"] = telemetry
    return doc


def run_variant(
    procs: Processes, tmp: Path, name: str, doc: dict[str, Any], pythonpath: str
) -> dict[str, dict[str, float]]:
    path = tmp / f"{name}.yaml"
    path.write_text(json.dumps(doc))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = pythonpath
    argv = [sys.executable, "-m", "router", "serve", "--config", str(path), "--port", str(port)]
    proc = procs.start(name, argv, ROUTER_CPU, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_for(f"{name} on {url}", lambda: http("GET", f"{url}/readyz")[0] == 200, procs)
    try:
        target = f"{url}/chat/bench"
        wrk(target, 50, seconds=2)  # warm-up
        c1 = wrk(target, 1)
        used = cpu_seconds(proc.pid)
        c50 = wrk(target, 50)
        # CPU per request: what the router spent, whatever else the machine was doing meanwhile.
        c50["cpu_us"] = (cpu_seconds(proc.pid) - used) / (c50["rps"] * WRK_SECONDS) * 1e6
        return {"c1": c1, "c50": c50}
    finally:
        procs.stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", help="a checkout of the router before tracing (its repository root)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ratios", default="1.0", help="sample ratios to run with tracing on, e.g. 1.0,0.1")
    args = parser.parse_args()
    os.sched_setaffinity(0, {LOADGEN_CPU})  # this process serves the collector: keep it off the router's core
    here = str(Path(__file__).resolve().parents[2])
    with tempfile.TemporaryDirectory() as scratch, OTLPReceiver(discard=True) as collector:
        tmp = Path(scratch)
        procs = Processes(tmp)
        try:
            nginx = free_port()
            (tmp / "nginx.conf").write_text(
                NGINX_CONF.format(tmp=tmp, port=nginx, completion=COMPLETION, models=MODELS)
            )
            conf = ["-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "nginx-error.log")]
            procs.start("nginx", ["nginx", *conf], LOADGEN_CPU)
            wait_for("nginx", lambda: http("GET", f"http://127.0.0.1:{nginx}/v1/models")[0] == 200, procs)
            variants: list[tuple[str, dict[str, Any], str]] = []
            if args.before:
                variants.append(("before", config(nginx, tmp / "before.log", None), args.before))
            variants.append(("off", config(nginx, tmp / "off.log", None), here))
            for ratio in args.ratios.split(","):
                on = {"otlp_endpoint": collector.url, "sample_ratio": float(ratio)}
                variants.append((f"on {ratio}", config(nginx, tmp / f"on-{ratio}.log", on), here))
            results: dict[str, list[dict[str, dict[str, float]]]] = {name: [] for name, _, _ in variants}
            for _ in range(args.rounds):
                for name, doc, pythonpath in variants:
                    results[name].append(run_variant(procs, tmp, name, doc, pythonpath))
        finally:
            procs.stop_all()
        print(f"collector received {collector.posts} exports")
    print(f"router on core {ROUTER_CPU}, wrk/nginx/collector on core {LOADGEN_CPU}; {BIN}")
    print(
        "| variant | 1 client req/s | 1 client p50 ms | 1 client p99 ms | 50 clients req/s"
        " | 50 clients p99 ms | router CPU µs/request (50 clients) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, rounds in results.items():

        def med(clients: str, fig: str, rounds: list[dict[str, dict[str, float]]] = rounds) -> float:
            return statistics.median(r[clients][fig] for r in rounds)

        print(
            f"| {name} | {med('c1', 'rps'):,.0f} | {med('c1', 'p50'):.3f} | {med('c1', 'p99'):.3f} | "
            f"{med('c50', 'rps'):,.0f} | {med('c50', 'p99'):.2f} | {med('c50', 'cpu_us'):.0f} |"
        )
    print("raw:", json.dumps(results))


if __name__ == "__main__":
    main()
