"""Benchmark the router against its upstream: the same requests, directly, through an nginx reverse proxy,
through one router worker and through one LiteLLM proxy worker; then 2,000 slow streams held at once.

python -m tests.perf [--profile] [--no-litellm] [--no-hold]
(bash tests/perf/run.sh installs wrk, nginx and LiteLLM, in tests/perf/.litellm-venv, first)

Pinning (2 cores): core 1 runs the proxy under test alone (the router, the nginx proxy or LiteLLM, one at
a time), so it has exactly one core as a one-worker deployment would; core 0 runs the load generators
(wrk, the stream client) and the fake upstreams (nginx, the SSE server), which are cheap next to a proxy.
A direct run therefore never touches core 1.

Everything started here is stopped on exit, whatever the exit (error, Ctrl-C, SIGTERM, the time limit).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.perf.sse_upstream import PACE, SLOW_CHUNKS, SLOW_PACE

ROOT = Path(__file__).resolve().parents[2]
PERF = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
TIME_LIMIT = 420  # seconds for the Python side; the whole run (installs included) must stay < 8 min
WRK_SECONDS = 5
PROBE_SECONDS = 20
PROBED_ROUTES = 100
CHUNKS = 200
HOLD_STREAMS = 2000
LITELLM = PERF / ".litellm-venv" / "bin" / "litellm"
LITELLM_KEY = "sk-bench-master-key-0123456789"  # LiteLLM's master key; it sends API_KEY upstream
CPUS = sorted(os.sched_getaffinity(0))
LOADGEN_CPU, ROUTER_CPU = (CPUS[0], CPUS[1]) if len(CPUS) > 1 else (CPUS[0], CPUS[0])

API_KEY = "bench-key-0123456789abcdef"  # sent to the upstreams too: the same requests both ways
BODY = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 16})
COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi! How can I help?"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16},
    },
    separators=(",", ":"),
)
MODELS = json.dumps(
    {"object": "list", "data": [{"id": m} for m in ["bench", *(f"bench-{i}" for i in range(PROBED_ROUTES))]]},
    separators=(",", ":"),
)

# What both nginx configurations share (a `.format` template); `{name}` keeps their pid and logs apart.
NGINX_HEAD = """\
worker_processes 1;
daemon off;
master_process off;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
"""

NGINX_CONF = (
    NGINX_HEAD.replace("{name}", "nginx")
    + """\
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    default_type application/json;
    location = /v1/chat/completions {{ return 200 '{completion}'; }}
    location = /v1/models {{ return 200 '{models}'; }}
  }}
}}
"""
)

# nginx as a plain reverse proxy to the same upstreams: the floor for any proxy.
NGINX_PROXY_CONF = (
    NGINX_HEAD.replace("{name}", "nginx-proxy")
    + """\
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  upstream fixed {{ server 127.0.0.1:{nginx}; keepalive 64; keepalive_requests 1000000; }}
  upstream sse {{ server 127.0.0.1:{sse}; keepalive 64; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{ proxy_pass http://fixed; }}
  }}
  server {{
    listen 127.0.0.1:{stream_port} backlog=4096;
    location / {{ proxy_pass http://sse; proxy_buffering off; }}
  }}
}}
"""
)


# ---------------------------------------------------------------------------------------------- processes


class Processes:
    """Everything the benchmark starts; `stop_all` ends each one by its pid, newest first."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, argv: list[str], cpu: int, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                ["taskset", "-c", str(cpu), *argv],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self.running.append((name, proc))
        return proc

    def check(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.running = [(n, p) for n, p in self.running if p is not proc]

    def stop_all(self) -> None:
        for _, proc in reversed(self.running):
            self.stop(proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: str | None = None, key: str = API_KEY) -> tuple[int, Any]:
    data = body.encode() if body is not None else None
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def wait_for(what: str, ready: Callable[[], bool], procs: Processes, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, proc in procs.running:
            procs.check(name, proc)
        try:
            if ready():
                return
        except (OSError, ValueError, KeyError, IndexError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {seconds:g}s waiting for {what}; logs are in {procs.logs}")


def route_state(router: str, name: str) -> tuple[str, str]:
    """(health state, breaker state) of the route's only replica, from /status."""
    _, status = http("GET", f"{router}/status")
    replica = next(r for r in status["routes"] if r["name"] == name)["replicas"][0]
    return (replica["health"] or {}).get("state", "off"), replica["breaker"]["state"]


def routes_in(router: str, health: str) -> bool:
    """Whether every route's health state (or "off") is `health`."""
    _, status = http("GET", f"{router}/status")
    return all((r["replicas"][0]["health"] or {}).get("state", "off") == health for r in status["routes"])


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: user nice system irq softirq steal)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of every child it has waited for (all of them, by the end)."""
    return sum(
        u.ru_utime + u.ru_stime
        for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    )


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat (fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------- load


def wrk(
    url: str,
    clients: int,
    seconds: int = WRK_SECONDS,
    model: str = "bench",
    expect: int | None = None,
    key: str = API_KEY,
) -> dict[str, float]:
    """req/s and p50/p99 (ms) of POSTing BODY for `model` for `seconds` from `clients` connections."""
    lua = str(PERF / "post.lua")
    argv = [
        "taskset",
        "-c",
        str(LOADGEN_CPU),
        "wrk",
        "-t1",
        f"-c{clients}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
    ]
    argv += ["-s", lua, url]
    body = BODY.replace('"bench"', f'"{model}"')
    env = {**os.environ, "BODY": body, "API_KEY": key, "EXPECT": str(expect or "")}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 30)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if done.returncode or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    r = json.loads(line[len("RESULT ") :])
    if r["errors"] or r["unexpected"] or not r["requests"]:
        raise RuntimeError(f"wrk {url} -c{clients}: bad answers: {line}")
    return {"rps": r["requests"] / r["seconds"], "p50": r["p50_us"] / 1000, "p99": r["p99_us"] / 1000}


def streams(
    url: str, model: str, count: int, concurrency: int, seconds: float = 0, key: str = API_KEY
) -> dict[str, float]:
    """Figures of `count` streams of CHUNKS chunks, `concurrency` at a time, for at most about `seconds`."""
    argv = [sys.executable, "-m", "tests.perf.stream_client", url, "--model", model, "--api-key", key]
    argv += ["--streams", str(count), "--concurrency", str(concurrency), "--chunks", str(CHUNKS)]
    argv += ["--seconds", str(seconds)]
    done = subprocess.run(
        ["taskset", "-c", str(LOADGEN_CPU), *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    if done.returncode:
        raise RuntimeError(f"stream client failed: {done.stderr.strip().splitlines()[-1][-300:]}")
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def measure(r: dict[str, Any], ns_url: str, stream_url: str, key: str = API_KEY, seconds: float = 0) -> None:
    """Into `r`, the same figures for any path: non-streaming at 1 and 50 clients, paced and burst streams."""
    wrk(ns_url, 50, seconds=2, key=key)  # warm-up: connections, pools, caches
    for c in (1, 50):
        r[f"ns{c}"] = wrk(ns_url, c, key=key)
    r["paced1"] = streams(stream_url, "paced", 10, 1, seconds, key)
    r["paced10"] = streams(stream_url, "paced", 30, 10, seconds, key)
    r["burst1"] = streams(stream_url, "stream", 50, 1, seconds, key)
    r["burst10"] = streams(stream_url, "stream", 200, 10, seconds, key)


def vm_rss_mb(pid: int) -> float:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def hold_streams(url: str, pid: int) -> dict[str, float]:
    """HOLD_STREAMS slow streams opened at once through `url`; the most held, the dropped, peak RSS of pid."""
    argv = [
        "taskset",
        "-c",
        str(LOADGEN_CPU),
        sys.executable,
        "-m",
        "tests.perf.stream_client",
        url,
        "--hold",
    ]
    argv += [
        "--model",
        "slow",
        "--api-key",
        API_KEY,
        "--streams",
        str(HOLD_STREAMS),
        "--chunks",
        str(SLOW_CHUNKS),
    ]
    before = vm_rss_mb(pid)
    client = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, deadline = before, time.monotonic() + 120
    try:
        while client.poll() is None:
            peak = max(peak, vm_rss_mb(pid))
            if time.monotonic() > deadline:
                raise RuntimeError("the hold client did not finish within 120 s")
            time.sleep(0.05)
    finally:
        if client.poll() is None:
            client.kill()
    out, err = client.communicate()
    if client.returncode:
        raise RuntimeError(f"hold client failed ({client.returncode}): {err.strip()[-500:]}")
    return {**json.loads(out.splitlines()[-1]), "rss_before": before, "rss_peak": peak}


# ---------------------------------------------------------------------------------------------- configs


def main_config(nginx: int, sse: int, log: Path) -> dict[str, Any]:
    """Everything on: a client key with a (never reached) rate limit, a JSON log line per request to a file,
    health checks on every route but one, breakers, retries; and two routes that cannot work."""
    health = {"enabled": True, "interval": 5, "timeout": 2, "failure_threshold": 2, "recovery_interval": 1}
    key = {"name": "bench", "key": API_KEY, "rate_limit_per_minute": 10**9}
    return {
        "version": 1,
        "server": {"host": "127.0.0.1"},
        "auth": {"api_keys": [key], "public_status": True},
        "logging": {"level": "info", "format": "json", "file": str(log)},
        "upstreams": {
            "nginx": {"type": "openai", "base_url": f"http://127.0.0.1:{nginx}/v1"},
            "sse": {"type": "openai", "base_url": f"http://127.0.0.1:{sse}/v1"},
            # the held slow streams: a pool big enough for all of them (the default is 100 connections)
            "sse-slow": {"type": "openai", "base_url": f"http://127.0.0.1:{sse}/v1", "max_connections": 4096},
            # closed ports: probes mark `down` unhealthy; one refused call opens `tripped`'s breaker
            "gone": {"type": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1"},
            "tripped": {
                "type": "openai",
                "base_url": f"http://127.0.0.1:{free_port()}/v1",
                "circuit_breaker": {"failure_threshold": 1, "open_seconds": 3600},
            },
        },
        "defaults": {"health_check": health},
        "routes": [
            {"path": "/chat/bench", "model": "bench", "upstream": "nginx"},
            {"path": "/chat/stream", "model": "stream", "upstream": "sse"},
            {"path": "/chat/paced", "model": "paced", "upstream": "sse"},
            {"path": "/chat/slow", "model": "slow", "upstream": "sse-slow"},
            {
                "path": "/chat/down",
                "model": "down",
                "upstream": "gone",
                "health_check": {"interval": 1, "failure_threshold": 1},
            },
            {
                "path": "/chat/tripped",
                "model": "tripped",
                "upstream": "tripped",
                "max_retries": 0,
                "health_check": {"enabled": False},
            },
        ],
    }


def probing_config(nginx: int, enabled: bool) -> dict[str, Any]:
    """PROBED_ROUTES routes, each its own model (one probe loop per model), probed every second."""
    return {
        "version": 1,
        "server": {"host": "127.0.0.1"},
        "auth": {"public_status": True},
        "upstreams": {"nginx": {"type": "openai", "base_url": f"http://127.0.0.1:{nginx}/v1"}},
        "defaults": {"health_check": {"enabled": enabled, "interval": 1, "timeout": 2}},
        "routes": [
            {"path": f"/chat/p{i}", "model": f"bench-{i}", "upstream": "nginx"} for i in range(PROBED_ROUTES)
        ],
    }


def litellm_config(nginx: int, sse: int) -> dict[str, Any]:
    """One model per route of the router's, as OpenAI-compatible models; a master key; no database."""
    bases = {"bench": (nginx, "m"), "stream": (sse, "stream"), "paced": (sse, "paced")}
    models = [
        {
            "model_name": name,
            "litellm_params": {
                "model": f"openai/{m}",
                "api_base": f"http://127.0.0.1:{port}/v1",
                "api_key": API_KEY,
            },
        }
        for name, (port, m) in bases.items()
    ]
    return {
        "model_list": models,
        "general_settings": {"master_key": LITELLM_KEY},
        "litellm_settings": {"telemetry": False, "num_retries": 0},
    }


def start_litellm(procs: Processes, tmp: Path, nginx: int, sse: int) -> str:
    path = tmp / "litellm.yaml"
    path.write_text(json.dumps(litellm_config(nginx, sse), indent=2))
    port = free_port()
    # offline: no database, the cost map it ships, no telemetry
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False", DISABLE_ADMIN_UI="True")
    argv = [
        str(LITELLM),
        "--config",
        str(path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    procs.start("litellm", argv, ROUTER_CPU, env)
    url = f"http://127.0.0.1:{port}"
    wait_for(
        f"LiteLLM on {url}", lambda: http("GET", f"{url}/v1/models", key=LITELLM_KEY)[0] == 200, procs, 120
    )
    return url


def start_router(procs: Processes, tmp: Path, name: str, config: dict[str, Any]) -> tuple[Any, str]:
    path = tmp / f"{name}.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    port = free_port()
    argv = [str(BIN / "router"), "serve", "--config", str(path), "--port", str(port)]
    proc = procs.start(name, argv, ROUTER_CPU)
    url = f"http://127.0.0.1:{port}"
    wait_for(f"{name} on {url}", lambda: http("GET", f"{url}/readyz")[0] == 200, procs)
    return proc, url


# ---------------------------------------------------------------------------------------------- profile


def profile(procs: Processes, pid: int, seconds: int, load: Callable[[], object], out: Path) -> list[str]:
    """py-spy samples the router while `load` runs; the top 15 functions by own time."""
    argv = [str(BIN / "py-spy"), "record", "--pid", str(pid), "-d", str(seconds), "-r", "500"]
    argv += ["--format", "raw", "--function", "-o", str(out)]
    spy = procs.start(f"py-spy-{out.stem}", argv, LOADGEN_CPU)
    time.sleep(1)
    load()
    spy.wait(seconds + 30)
    procs.stop(spy)  # forget it: an exited process is otherwise taken for a crash
    own: collections.Counter[str] = collections.Counter()
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack.startswith("<module> (router"):  # the event loop's thread, not the idle log writer's
            own[stack.rsplit(";", 1)[-1]] += int(count)
    # Time in uvloop's C code (socket syscalls, scheduling callbacks) has no Python frame of its own.
    own["event loop: uvloop C code (and waiting in epoll, when idle)"] = own.pop(
        "Runner.run (asyncio/runners.py:86)", 0
    )
    total = sum(own.values()) or 1
    return [f"{100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(15)]


# ---------------------------------------------------------------------------------------------- report


def ms(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def report(r: dict[str, Any], header: str) -> str:
    cols = ("measure", "direct", "nginx proxy", "router", "LiteLLM", "router/direct", "router/LiteLLM")
    rows = [(*cols, "router added", "target", "met")]
    lite = r["litellm"]

    def verdict(met: bool | None) -> str:
        return "" if met is None else ("yes" if met else "**NO**")

    def row(label: str, key: str, fig: str, unit: str, target: str = "", met: bool | None = None) -> None:
        fmt = (lambda x: f"{x:,.0f}") if unit == "/s" else ms
        d, v = r["direct"][key][fig], r["router"][key][fig]
        n = r["nginx"].get(key, {}).get(fig)
        lv = lite.get(key, {}).get(fig)
        added = "" if unit == "/s" else f"{v - d:+.3f} ms"
        cells = (fmt(d), "-" if n is None else fmt(n), fmt(v), "n/a" if lv is None else fmt(lv))
        ratios = (f"{v / d:.2f}", "n/a" if not lv else f"{v / lv:.2f}")
        rows.append((label, *cells, *ratios, added, target, verdict(met)))

    def added(key: str, fig: str) -> float:
        return float(r["router"][key][fig] - r["direct"][key][fig])

    for c in (1, 50):
        what, key = f"non-streaming, {c} client{'s' * (c > 1)}", f"ns{c}"
        if c == 50:
            rps, lrps = r["router"][key]["rps"], lite.get(key, {}).get("rps")
            met = rps >= 4000 and (lrps is None or rps >= 30 * lrps)
            row(f"{what}: req/s", key, "rps", "/s", ">= 4,000 and >= 30x LiteLLM", met)
        else:
            row(f"{what}: req/s", key, "rps", "/s")
        target, met = ("<= 0.5 ms added", added(key, "p50") <= 0.5) if c == 1 else ("", None)
        row(f"{what}: p50 ms", key, "p50", "ms", target, met)
        row(f"{what}: p99 ms", key, "p99", "ms")
    for n in (1, 10):
        key, label = f"paced{n}", f"stream, paced, {n} at a time"
        target, met = ("<= 1 ms added", added(key, "ttft_p50_ms") <= 1) if n == 1 else ("", None)
        row(f"{label}: TTFT p50 ms", key, "ttft_p50_ms", "ms", target, met)
        target, met = ("<= 0.2 ms added", added(key, "delay_p50_ms") <= 0.2) if n == 1 else ("", None)
        row(f"{label}: chunk delay p50 ms", key, "delay_p50_ms", "ms", target, met)
        row(f"{label}: chunk delay p99 ms", key, "delay_p99_ms", "ms")
    for n in (1, 10):
        key = f"burst{n}"
        met = r["router"][key]["chunks_per_s"] >= 20000
        row(f"stream, burst, {n} at a time: chunks/s", key, "chunks_per_s", "/s", ">= 20,000", met)
    blank = ("-", "-")
    for key, label in (("down", "unhealthy route"), ("tripped", "open breaker")):
        for c in (1, 50):
            v = r["router"][f"{key}{c}"]
            met = v["p99"] <= 2 if c == 1 else None
            target = "<= 2 ms p99" if c == 1 else "(p99 >= 50 / req/s)"
            figures = f"{ms(v['p50'])} / {ms(v['p99'])} ({v['rps']:,.0f}/s)"
            label_c = f"{label} -> 503, {c} client(s): p50 / p99 ms"
            rows.append((label_c, "-", "-", figures, "-", *blank, "", target, verdict(met)))
    if "hold" in r:
        h = r["hold"]
        label = f"{h['streams']:,} slow streams at once: held / dropped / router RSS"
        figures = f"{h['held']:,} / {h['dropped']:,} / {h['rss_peak']:.0f} MB (idle {h['rss_before']:.0f} MB)"
        met = h["held"] >= HOLD_STREAMS and not h["dropped"] and h["rss_peak"] < 300
        target = f"{HOLD_STREAMS:,} held, none dropped, < 300 MB"
        rows.append((label, "-", "-", figures, "-", *blank, "", target, verdict(met)))
    shared = r.get("router_redis", {})
    if "ns50" in shared:
        rps, memory_rps = shared["ns50"]["rps"], r["router"]["ns50"]["rps"]
        label = "router on Redis (state.backend: redis), 50 clients: req/s (memory)"
        figures = f"{rps:,.0f} ({memory_rps:,.0f})"
        rows.append((label, "-", "-", figures, "-", *blank, "", ">= 3,500", verdict(rps >= 3500)))
        p50, memory_p50 = shared["ns1"]["p50"], r["router"]["ns1"]["p50"]
        label = "router on Redis, 1 client: p50 ms (memory)"
        figures = f"{ms(p50)} ({ms(memory_p50)})"
        more = p50 - memory_p50
        rows.append(
            (
                label,
                "-",
                "-",
                figures,
                "-",
                *blank,
                f"{more:+.3f} ms",
                "<= 0.2 ms over memory",
                verdict(more <= 0.2),
            )
        )
    elif "error" in shared:
        rows.append(("router on Redis", "-", "-", shared["error"], "-", *blank, "", "", ""))
    on, off = r["probing_on"], r["probing_off"]
    label = f"idle router, {PROBED_ROUTES} routes: % of a core, probing off / every 1 s"
    figures = f"{off:.2f} / {on:.2f}"
    rows.append((label, "-", "-", figures, "-", *blank, f"{on - off:+.2f}", "< 2 %", verdict(on < 2)))
    table = "\n".join("| " + " | ".join(cells) + " |" for cells in rows)
    table = table.replace("\n", "\n|" + "---|" * len(rows[0]) + "\n", 1)
    text = f"{header}\n\n{table}\n"
    if "error" in lite:
        text += f"\nLiteLLM n/a: {lite['error']}\n"
    for name, lines in r.get("profiles", {}).items():
        text += f"\n## Router profile: {name} (py-spy, own time, top 15)\n\n```\n"
        text += "\n".join(lines) + "\n```\n"
    return text


def machine_header(command: str) -> str:
    models = [
        x.split(":", 1)[1].strip()
        for x in Path("/proc/cpuinfo").read_text().splitlines()
        if "model name" in x
    ]
    cpu = models[0] if models else "?"
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(" [")[0]
    nginx_version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    dists = sorted(PERF.glob(".litellm-venv/lib/python*/site-packages/litellm-*.dist-info"))
    litellm = "LiteLLM " + dists[0].name.split("-")[1].removesuffix(".dist") if dists else "no LiteLLM"
    return (
        "# Router benchmark: direct vs nginx proxy vs one router worker vs one LiteLLM worker\n\n"
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}\n"
        f"- machine: nproc {os.cpu_count()} ({cpu}), Linux {platform.release()}, load average {load}\n"
        f"- Python {platform.python_version()}, {wrk_version}, {nginx_version}, {litellm}\n"
        f"- command: `{command}`\n"
        f"- pinning: core {ROUTER_CPU} = the proxy under test alone, one at a time; core {LOADGEN_CPU} = wrk "
        "(1 thread), the stream client, nginx (1 worker) and the SSE upstream\n"
        "- nginx proxy: a second nginx (1 worker), proxy_pass to the same upstreams with a keepalive pool of "
        "64, HTTP/1.1, `proxy_buffering off` for streams: the floor for any proxy\n"
        "- LiteLLM: `litellm --num_workers 1` with a master key, no database, the bundled cost map, no "
        "telemetry, retries off; each model an `openai/...` model at the same upstreams; its stream rows are "
        "bounded to about 15 s each\n"
        f"- non-streaming: wrk {WRK_SECONDS} s per figure, POST of a {len(BODY)}-byte chat request, "
        "nginx answers a fixed chat.completion; the router has everything on: client key with a rate "
        "limit, a JSON log line per request (to a file), health checks every 5 s, breaker, retries\n"
        f"- streaming: {CHUNKS} chunks per stream from a uvloop SSE server; `paced` = {PACE * 1000:g} ms "
        "between chunks (10 streams one at a time, 30 streams 10 at a time); `burst` = as fast as it can "
        "(50 streams one at a time, 200 streams 10 at a time); chunk delay = arrival at the client minus "
        "the upstream's send time stamped in the chunk, so its `added` is the inter-chunk delay added\n"
        "- 503 rows: `down` is marked unhealthy by probes of a closed port; `tripped`'s breaker was opened "
        "by one refused call; every answer was checked to be 503\n"
        f"- held streams: {HOLD_STREAMS:,} streams opened at once through the router (route `slow`: "
        f"{SLOW_CHUNKS} chunks {SLOW_PACE:g} s apart, an upstream pool of 4,096 connections); held = the "
        "most open at a time, seen by the client; dropped = not ending with every chunk and [DONE]; RSS = "
        "the router's VmRSS (/proc/PID/status), its peak, sampled every 50 ms"
    )


# ---------------------------------------------------------------------------------------------- main


def redis_run(r: dict[str, Any], procs: Processes, tmp: Path, nginx_port: int, sse_port: int) -> None:
    """The same router and table with `state.backend: redis` (a local redis-server beside wrk), so every
    keyed request takes its rate-limit token in Redis: non-streaming at 1 and 50 clients, next to memory."""
    if shutil.which("redis-server") is None:
        r["router_redis"] = {"error": "no redis-server (apt-get install redis-server)"}
        return
    print("router on Redis (state.backend: redis) ...", flush=True)
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    redis = procs.start("redis", argv, LOADGEN_CPU)
    config = main_config(nginx_port, sse_port, tmp / "requests-redis.log")
    config["state"] = {"backend": "redis", "url": f"redis://127.0.0.1:{port}/0"}
    proc, router = start_router(procs, tmp, "router-redis", config)
    wait_for("route bench healthy", lambda: route_state(router, "bench") == ("healthy", "closed"), procs)
    url = f"{router}/v1/chat/completions"
    wrk(url, 50, seconds=2)  # warm-up
    r["router_redis"] = {f"ns{c}": wrk(url, c) for c in (1, 50)}
    procs.stop(proc)
    procs.stop(redis)


def run(procs: Processes, tmp: Path, with_profile: bool, hold: bool, litellm_skip: str) -> dict[str, Any]:
    r: dict[str, Any] = {"direct": {}, "router": {}, "nginx": {}, "litellm": {}}
    nginx_port, sse_port = free_port(), free_port()
    (tmp / "nginx.conf").write_text(
        NGINX_CONF.format(tmp=tmp, port=nginx_port, completion=COMPLETION, models=MODELS)
    )
    conf = ["-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "nginx-error.log")]
    procs.start("nginx", ["nginx", *conf], LOADGEN_CPU)
    argv = [sys.executable, "-m", "tests.perf.sse_upstream", "--port", str(sse_port), "--chunks", str(CHUNKS)]
    procs.start("sse-upstream", argv, LOADGEN_CPU)
    nginx, sse = f"http://127.0.0.1:{nginx_port}/v1", f"http://127.0.0.1:{sse_port}/v1"
    wait_for("nginx", lambda: http("GET", f"{nginx}/models")[0] == 200, procs)
    wait_for("the SSE upstream", lambda: http("GET", f"{sse}/models")[0] == 200, procs)

    router_proc, router = start_router(
        procs, tmp, "router", main_config(nginx_port, sse_port, tmp / "requests.log")
    )
    print(f"router pid {router_proc.pid} on {router}; logs in {tmp}", flush=True)
    trip = json.dumps({"model": "tripped", "messages": [{"role": "user", "content": "hi"}]})
    http("POST", f"{router}/v1/chat/completions", trip)  # refused: opens the breaker
    for name in ("bench", "stream", "paced"):
        wait_for(
            f"route {name} healthy", lambda n=name: route_state(router, n) == ("healthy", "closed"), procs
        )
    wait_for("route down unhealthy", lambda: route_state(router, "down")[0] == "unhealthy", procs)
    wait_for("route tripped's breaker open", lambda: route_state(router, "tripped")[1] == "open", procs)

    print("direct ...", flush=True)
    measure(r["direct"], f"{nginx}/chat/completions", f"{sse}/chat/completions")
    print("router ...", flush=True)
    measure(r["router"], f"{router}/v1/chat/completions", f"{router}/v1/chat/completions")
    print("503 answers ...", flush=True)
    for key in ("down", "tripped"):
        for c in (1, 50):
            r["router"][f"{key}{c}"] = wrk(f"{router}/v1/chat/completions", c, model=key, expect=503)
    if hold:
        print(f"{HOLD_STREAMS} slow streams at once through the router ...", flush=True)
        r["hold"] = hold_streams(f"{router}/v1/chat/completions", router_proc.pid)

    if with_profile:
        print("profiling the router under load ...", flush=True)
        url = f"{router}/v1/chat/completions"
        r["profiles"] = {
            "non-streaming, 50 clients": profile(
                procs, router_proc.pid, 10, lambda: wrk(url, 50, seconds=12), tmp / "nonstream.txt"
            ),
            "streaming, 10 at a time": profile(
                procs,
                router_proc.pid,
                10,
                lambda: streams(url, "stream", 10**6, 10, seconds=12),
                tmp / "stream.txt",
            ),
        }
        for name in ("nonstream", "stream"):
            shutil.copy(tmp / f"{name}.txt", f"/tmp/router-perf-profile-{name}.txt")
    procs.stop(router_proc)
    redis_run(r, procs, tmp, nginx_port, sse_port)

    print("nginx reverse proxy ...", flush=True)
    proxy_port, proxy_stream_port = free_port(), free_port()
    (tmp / "nginx-proxy.conf").write_text(
        NGINX_PROXY_CONF.format(
            tmp=tmp, port=proxy_port, stream_port=proxy_stream_port, nginx=nginx_port, sse=sse_port
        )
    )
    conf = ["-p", str(tmp), "-c", str(tmp / "nginx-proxy.conf"), "-e", str(tmp / "nginx-proxy-error.log")]
    proxy = procs.start("nginx-proxy", ["nginx", *conf], ROUTER_CPU)
    proxied, proxied_sse = f"http://127.0.0.1:{proxy_port}/v1", f"http://127.0.0.1:{proxy_stream_port}/v1"
    wait_for("the nginx proxy", lambda: http("GET", f"{proxied_sse}/models")[0] == 200, procs)
    measure(r["nginx"], f"{proxied}/chat/completions", f"{proxied_sse}/chat/completions")
    procs.stop(proxy)

    if litellm_skip:
        r["litellm"]["error"] = litellm_skip
    else:
        print("LiteLLM proxy ...", flush=True)
        try:
            url = start_litellm(procs, tmp, nginx_port, sse_port) + "/v1/chat/completions"
            measure(r["litellm"], url, url, key=LITELLM_KEY, seconds=15)
        except Exception as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[-1][:300]
            r["litellm"]["error"] = reason
            print(f"LiteLLM: {reason}", flush=True)
        finally:
            for name, proc in list(procs.running):
                if name == "litellm":
                    procs.stop(proc)

    for enabled in (False, True):
        what = "probing every 1 s" if enabled else "probing off"
        print(f"idle router with {PROBED_ROUTES} routes, {what}, {PROBE_SECONDS} s ...", flush=True)
        proc, router = start_router(procs, tmp, "router-probing", probing_config(nginx_port, enabled))
        want = "healthy" if enabled else "off"
        wait_for(f"all routes {want}", lambda u=router, w=want: routes_in(u, w), procs)
        time.sleep(2)  # let start-up work settle
        before = cpu_seconds(proc.pid)
        time.sleep(PROBE_SECONDS)
        r["probing_on" if enabled else "probing_off"] = 100 * (cpu_seconds(proc.pid) - before) / PROBE_SECONDS
        if not routes_in(router, want):
            raise RuntimeError(f"routes were not all {want} at the end of the measurement")
        if with_profile:
            print("profiling the idle router ...", flush=True)
            out = tmp / f"idle-{'probing' if enabled else 'no-probing'}.txt"
            name = f"idle, {PROBED_ROUTES} routes, {what}"
            r["profiles"][name] = profile(procs, proc.pid, 10, lambda: time.sleep(11), out)
            shutil.copy(out, f"/tmp/router-perf-profile-{out.stem}.txt")
        procs.stop(proc)
    return r


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.perf", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true", help="also py-spy the router under load")
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM proxy (its install too)")
    parser.add_argument("--no-hold", action="store_true", help=f"skip holding {HOLD_STREAMS} slow streams")
    args = parser.parse_args()
    litellm_skip = (
        "skipped (--no-litellm)"
        if args.no_litellm
        else os.environ.get("LITELLM_UNAVAILABLE")
        or ("" if LITELLM.exists() else f"not installed at {LITELLM} (bash tests/perf/run.sh installs it)")
    )
    # thousands of sockets for the held streams: the soft limit of open files up to the hard one
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    command = os.environ.get("PERF_COMMAND") or "python -m tests.perf " + " ".join(sys.argv[1:])
    if args.profile and not (BIN / "py-spy").exists():
        print(f"--profile needs py-spy: {BIN}/pip install py-spy", file=sys.stderr)
        return 2
    for tool in ("wrk", "nginx", "taskset"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: bash tests/perf/run.sh installs it (apt-get)", file=sys.stderr)
            return 2

    def stop(signum: int, _frame: object) -> None:
        why = f"the {TIME_LIMIT} s time limit" if signum == signal.SIGALRM else signal.Signals(signum).name
        raise SystemExit(f"benchmark stopped: {why}")

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, stop)
    signal.alarm(TIME_LIMIT)
    header = machine_header(command.strip())
    busy, started = machine_busy_seconds(), time.monotonic()
    time.sleep(2)
    before = 100 * (machine_busy_seconds() - busy) / (time.monotonic() - started)
    if before > 10:
        print(
            f"WARNING: the machine is already busy ({before:.0f}% of a core): figures will be low", flush=True
        )
    tmp = Path(tempfile.mkdtemp(prefix="router-perf-"))
    procs = Processes(tmp)
    busy, ours, started = machine_busy_seconds(), own_cpu_seconds(), time.monotonic()
    try:
        results = run(procs, tmp, args.profile, not args.no_hold, litellm_skip)
    finally:
        procs.stop_all()
        signal.alarm(0)
    others = machine_busy_seconds() - busy - (own_cpu_seconds() - ours)
    others = max(0.0, 100 * others / (time.monotonic() - started))  # clock ticks vs rusage: can dip below 0
    shutil.rmtree(tmp, ignore_errors=True)
    noisy = " (NOISY: rerun on a quiet machine)" if max(before, others) > 10 else ""
    header += (
        f"\n- other processes' CPU (not the benchmark's): {before:.0f}% of a core just before, "
        f"{others:.0f}% on average during the run{noisy}; the run took {time.monotonic() - started:.0f} s"
    )
    text = report(results, header)
    (PERF / "results.md").write_text(text)
    print("\n" + text)
    print(f"written to {PERF / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
