"""Benchmark the router against its upstream: the same requests, directly and through one router worker.

python -m tests.perf [--profile]   (bash tests/perf/run.sh installs wrk and nginx first)

Pinning (2 cores): core 1 runs the router alone, so it has exactly one core as a one-worker deployment
would; core 0 runs the load generators (wrk, the stream client) and the fake upstreams (nginx, the SSE
server), which are cheap next to the router. A direct run therefore never touches core 1.

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

from tests.perf.sse_upstream import PACE

ROOT = Path(__file__).resolve().parents[2]
PERF = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
TIME_LIMIT = 290  # seconds for the whole run; the brief is < 5 min
WRK_SECONDS = 5
PROBE_SECONDS = 20
PROBED_ROUTES = 100
CHUNKS = 200
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

NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
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
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    default_type application/json;
    location = /v1/chat/completions {{ return 200 '{completion}'; }}
    location = /v1/models {{ return 200 '{models}'; }}
  }}
}}
"""


# ---------------------------------------------------------------------------------------------- processes


class Processes:
    """Everything the benchmark starts; `stop_all` ends each one by its pid, newest first."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], cpu: int) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                ["taskset", "-c", str(cpu), *argv], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log
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


def http(method: str, url: str, body: str | None = None) -> tuple[int, Any]:
    data = body.encode() if body is not None else None
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
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
    url: str, clients: int, seconds: int = WRK_SECONDS, model: str = "bench", expect: int | None = None
) -> dict[str, float]:
    """req/s and p50/p99 (ms) of POSTing BODY for `model` for `seconds` from `clients` connections."""
    lua = str(PERF / "post.lua")
    argv = ["taskset", "-c", str(LOADGEN_CPU), "wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "-s", lua, url]
    body = BODY.replace('"bench"', f'"{model}"')
    env = {**os.environ, "BODY": body, "API_KEY": API_KEY, "EXPECT": str(expect or "")}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 30)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if done.returncode or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    r = json.loads(line[len("RESULT ") :])
    if r["errors"] or r["unexpected"] or not r["requests"]:
        raise RuntimeError(f"wrk {url} -c{clients}: bad answers: {line}")
    return {"rps": r["requests"] / r["seconds"], "p50": r["p50_us"] / 1000, "p99": r["p99_us"] / 1000}


def streams(url: str, model: str, count: int, concurrency: int, seconds: float = 0) -> dict[str, float]:
    """Figures of `count` streams of CHUNKS chunks, `concurrency` at a time, for at most about `seconds`."""
    argv = [sys.executable, "-m", "tests.perf.stream_client", url, "--model", model, "--api-key", API_KEY]
    argv += ["--streams", str(count), "--concurrency", str(concurrency), "--chunks", str(CHUNKS)]
    argv += ["--seconds", str(seconds)]
    done = subprocess.run(
        ["taskset", "-c", str(LOADGEN_CPU), *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    if done.returncode:
        raise RuntimeError(f"stream client failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


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
    rows = [("measure", "direct", "router", "router/direct", "added", "target", "met")]

    def row(label: str, d: float, v: float, unit: str, target: str = "", met: bool | None = None) -> None:
        fmt = (lambda x: f"{x:,.0f}") if unit == "/s" else ms
        added = "" if unit == "/s" else f"{v - d:+.3f} ms"
        verdict = "" if met is None else ("yes" if met else "**NO**")
        rows.append((label, fmt(d), fmt(v), f"{v / d:.2f}", added, target, verdict))

    for c in (1, 50):
        d, v = r["direct"][f"ns{c}"], r["router"][f"ns{c}"]
        n = f"non-streaming, {c} client{'s' * (c > 1)}"
        rps_ok = v["rps"] >= 3000 if c == 50 else None
        row(f"{n}: req/s", d["rps"], v["rps"], "/s", "router >= 3,000" if c == 50 else "", rps_ok)
        p50_ok = v["p50"] - d["p50"] <= 0.5 if c == 1 else None
        row(f"{n}: p50 ms", d["p50"], v["p50"], "ms", "<= 0.5 ms added" if c == 1 else "", p50_ok)
        row(f"{n}: p99 ms", d["p99"], v["p99"], "ms")
    for n in (1, 10):
        d, v = r["direct"][f"paced{n}"], r["router"][f"paced{n}"]
        label = f"stream, paced, {n} at a time"
        row(f"{label}: TTFT p50 ms", d["ttft_p50_ms"], v["ttft_p50_ms"], "ms")
        row(f"{label}: chunk delay p50 ms", d["delay_p50_ms"], v["delay_p50_ms"], "ms")
        row(f"{label}: chunk delay p99 ms", d["delay_p99_ms"], v["delay_p99_ms"], "ms")
    for n in (1, 10):
        d, v = r["direct"][f"burst{n}"], r["router"][f"burst{n}"]
        row(f"stream, burst, {n} at a time: chunks/s", d["chunks_per_s"], v["chunks_per_s"], "/s")
    for key, label in (("down", "unhealthy route"), ("tripped", "open breaker")):
        for c in (1, 50):
            v = r["router"][f"{key}{c}"]
            met = v["p99"] <= 2 if c == 1 else None
            target = "<= 2 ms p99" if c == 1 else "(p99 >= 50 / req/s)"
            verdict = "" if met is None else ("yes" if met else "**NO**")
            figures = f"{ms(v['p50'])} / {ms(v['p99'])} ({v['rps']:,.0f}/s)"
            label_c = f"{label} -> 503, {c} client(s): p50 / p99 ms"
            rows.append((label_c, "-", figures, "", "", target, verdict))
    on, off = r["probing_on"], r["probing_off"]
    label = f"idle router, {PROBED_ROUTES} routes: % of a core, probing off / every 1 s"
    rows.append(
        (label, "-", f"{off:.2f} / {on:.2f}", "", f"{on - off:+.2f}", "< 2 %", "yes" if on < 2 else "**NO**")
    )
    table = "\n".join("| " + " | ".join(cells) + " |" for cells in rows)
    table = table.replace("\n", "\n|" + "---|" * len(rows[0]) + "\n", 1)
    text = f"{header}\n\n{table}\n"
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
    return (
        "# Router benchmark: direct to the upstream vs through one router worker\n\n"
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}\n"
        f"- machine: nproc {os.cpu_count()} ({cpu}), Linux {platform.release()}, load average {load}\n"
        f"- Python {platform.python_version()}, {wrk_version}, {nginx_version}\n"
        f"- command: `{command}`\n"
        f"- pinning: core {ROUTER_CPU} = the router alone; core {LOADGEN_CPU} = wrk (1 thread), the stream "
        "client, nginx (1 worker) and the SSE upstream\n"
        f"- non-streaming: wrk {WRK_SECONDS} s per figure, POST of a {len(BODY)}-byte chat request, "
        "nginx answers a fixed chat.completion; the router has everything on: client key with a rate "
        "limit, a JSON log line per request (to a file), health checks every 5 s, breaker, retries\n"
        f"- streaming: {CHUNKS} chunks per stream from a uvloop SSE server; `paced` = {PACE * 1000:g} ms "
        "between chunks (10 streams one at a time, 30 streams 10 at a time); `burst` = as fast as it can "
        "(50 streams one at a time, 200 streams 10 at a time); chunk delay = arrival at the client minus "
        "the upstream's send time stamped in the chunk, so its `added` is the inter-chunk delay added\n"
        "- 503 rows: `down` is marked unhealthy by probes of a closed port; `tripped`'s breaker was opened "
        "by one refused call; every answer was checked to be 503"
    )


# ---------------------------------------------------------------------------------------------- main


def run(procs: Processes, tmp: Path, with_profile: bool) -> dict[str, Any]:
    r: dict[str, Any] = {"direct": {}, "router": {}}
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

    for mode, base in (("direct", nginx), ("router", f"{router}/v1")):
        print(f"non-streaming, {mode} ...", flush=True)
        wrk(f"{base}/chat/completions", 50, seconds=2)  # warm-up: connections, pools, caches
        for c in (1, 50):
            r[mode][f"ns{c}"] = wrk(f"{base}/chat/completions", c)
    for mode, base in (("direct", sse), ("router", f"{router}/v1")):
        print(f"streaming, {mode} ...", flush=True)
        url = f"{base}/chat/completions"
        r[mode]["paced1"] = streams(url, "paced", 10, 1)
        r[mode]["paced10"] = streams(url, "paced", 30, 10)
        r[mode]["burst1"] = streams(url, "stream", 50, 1)
        r[mode]["burst10"] = streams(url, "stream", 200, 10)
    print("503 answers ...", flush=True)
    for key in ("down", "tripped"):
        for c in (1, 50):
            r["router"][f"{key}{c}"] = wrk(f"{router}/v1/chat/completions", c, model=key, expect=503)

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
    args = parser.parse_args()
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
        results = run(procs, tmp, args.profile)
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
