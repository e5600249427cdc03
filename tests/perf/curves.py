"""Curves: the router beside its peers as the load and the work grow, in one run, as CSV and PNG plots.

python -m tests.perf.curves [--rounds 3] [--seconds 5] [--no-litellm] [--no-portkey] [--profile]
(bash tests/perf/curves.sh installs wrk, nginx, the Portkey gateway and LiteLLM first, then runs this)

1. latency against concurrency: req/s, p50 and p99 at 1, 16 and 64 clients (and 50, the throughput
   target, for the router and the reference relay), in rounds, for direct (nginx answering a fixed
   chat.completion), the nginx reverse proxy, the reference relay (tests/perf/reference_relay.py), the
   router (every feature on), the same router with `server.cors_allowed_origins` set (and an Origin
   header sent), the Portkey gateway and the LiteLLM proxy; added = figure minus direct's, per round.
2. streams: time to first token and chunk delay (p50, p99) at 1 and 64 concurrent paced streams, same
   peers; added = over the direct path.
3. cost as the work grows, one router worker: (a) routes in the table (1 to 10,000): start-up, reload,
   p50 at one client, CPU per request and RSS; (b) request size (1 KB to 1 MB of messages): p50 and CPU
   per request beside the reference relay; (c) open slow streams (100 to 10,000, opened 500 a second and
   all open at once; a client and an upstream socket each, so the open-file limits are raised where that
   is allowed): peak RSS, drops (and why), and p50 of a plain request while they are held.

Pinning (2 cores) as in `python -m tests.perf`: the system under test alone on core 1, wrk, the stream
client and the fake upstreams on core 0. Everything runs on 127.0.0.1 and is stopped on exit; the run is
bounded by TIME_LIMIT. Writes tests/perf/results/*.csv, *.png and curves.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from router.server import SPARE_DESCRIPTORS
from tests.perf.__main__ import (
    API_KEY,
    BIN,
    BODY,
    COMPLETION,
    LITELLM,
    LITELLM_KEY,
    LOADGEN_CPU,
    MODELS,
    NGINX_CONF,
    NGINX_PROXY_CONF,
    PERF,
    ROOT,
    ROUTER_CPU,
    Processes,
    cpu_seconds,
    free_port,
    http,
    machine_busy_seconds,
    main_config,
    profile,
    route_state,
    start_litellm,
    start_router,
    vm_rss_mb,
    wait_for,
)

RESULTS = PERF / "results"
PORTKEY = PERF / ".portkey" / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
TIME_LIMIT = 25 * 60
CLIENTS = (1, 16, 64)
TARGET_CLIENTS = 50  # the throughput target's concurrency, measured for the router and the relay
STREAM_CHUNKS = 50  # per paced stream, 2 ms apart
STREAM_LEVELS = {1: 30, 64: 192}  # concurrency: streams per figure
ROUTE_COUNTS = (1, 100, 1000, 10_000)
SIZES = (1024, 10 * 1024, 100 * 1024, 1024 * 1024)
OPEN_STREAMS = (100, 1000, 3000, 10_000)
HOLD_FILES = 65_536  # open-file limit the hold phase asks for: 10,000 streams take 20,000 sockets
# Held streams open HOLD_RATE a second and send HOLD_CHUNKS events HOLD_PACE seconds apart (80 s): they
# outlast the opening of 10,000 (40 s). Opening a stream costs the router about 0.8 ms of CPU and relaying
# an event about 0.05-0.07 ms, so 10,000 held streams at one event a second plus 500 openings a second
# would take more than the one core the router has here (and a saturated loop's late timers are taken
# for upstream failures): the phase measures what one worker holds, not how fast it opens or relays.
HOLD_RATE = 250
HOLD_CHUNKS = 40
HOLD_PACE = 2.0
HOLD_SLACK = 16  # connections beyond the streams: the plain requests measured while they are held
STARTUP_LIMIT = 60  # seconds a router may take to become ready before its row is left empty
ADMIN_KEY = "bench-admin-0123456789abcdef"
ORIGIN = "http://localhost:3000"


@dataclass
class Peer:
    """One system under test: where to post plain and streamed requests, with what key and headers."""

    name: str
    ns_url: str
    stream_url: str
    key: str = API_KEY
    ns_headers: tuple[str, ...] = ()
    stream_headers: tuple[str, ...] = ()
    pid: int | None = None  # the process whose CPU counts (None: direct)
    stream_seconds: float = 0  # bound on a stream figure (LiteLLM is slow)
    clients: tuple[int, ...] = CLIENTS
    errors: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- load


def wrk(
    url: str,
    clients: int,
    seconds: float,
    key: str = API_KEY,
    headers: Iterable[str] = (),
    body: str = BODY,
    pid: int | None = None,
) -> dict[str, float]:
    """req/s, p50/p99 (ms) and, with `pid`, that process's CPU microseconds per request."""
    argv = ["taskset", "-c", str(LOADGEN_CPU), "wrk", "-t1", f"-c{clients}", f"-d{seconds:g}s"]
    argv += ["--timeout", "10s", "-s", str(PERF / "post.lua"), url]
    env = {**os.environ, "BODY": body, "API_KEY": key, "EXPECT": "", "HEADERS": "\n".join(headers)}
    if len(body) > 64 * 1024:  # too large for the environment: a file
        path = Path(tempfile.gettempdir()) / f"router-curves-body-{os.getpid()}.json"
        path.write_text(body)
        env.update(BODY="", BODY_FILE=str(path))
    cpu = cpu_seconds(pid) if pid else 0.0
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 30)
    used = cpu_seconds(pid) - cpu if pid else 0.0
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if done.returncode or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    r = json.loads(line[len("RESULT ") :])
    if r["errors"] or not r["requests"]:
        raise RuntimeError(f"wrk {url} -c{clients}: {r['errors']} errors in {r['requests']} requests")
    return {
        "rps": r["requests"] / r["seconds"],
        "p50": r["p50_us"] / 1000,
        "p99": r["p99_us"] / 1000,
        "cpu_us": 1e6 * used / r["requests"] if pid else 0.0,
    }


def streams(
    url: str, count: int, concurrency: int, key: str, headers: Iterable[str], seconds: float = 0
) -> dict[str, float]:
    """Figures of `count` paced streams of STREAM_CHUNKS chunks, `concurrency` at a time."""
    argv = [sys.executable, "-m", "tests.perf.stream_client", url, "--model", "paced", "--api-key", key]
    argv += ["--streams", str(count), "--concurrency", str(concurrency), "--chunks", str(STREAM_CHUNKS)]
    argv += ["--seconds", str(seconds)]
    for h in headers:
        argv += ["--header", h]
    done = subprocess.run(
        ["taskset", "-c", str(LOADGEN_CPU), *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    if done.returncode:
        raise RuntimeError(f"stream client failed: {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------- peers


def router_config(nginx: int, sse: int, log: Path, cors: bool = False) -> dict[str, Any]:
    """The benchmark's everything-on table (tests/perf/__main__.py), with room for thousands of streams."""
    config = main_config(nginx, sse, log)
    config["server"]["max_connections"] = 12_000
    config["upstreams"]["sse-slow"]["max_connections"] = 10_000
    config["auth"]["admin_keys"] = [{"name": "bench-admin", "key": ADMIN_KEY}]
    if cors:
        config["server"]["cors_allowed_origins"] = [ORIGIN]
    return config


def start_relay(procs: Processes, name: str, upstream: str) -> tuple[Any, str]:
    port = free_port()
    argv = [sys.executable, "-m", "tests.perf.reference_relay", "--port", str(port), "--upstream", upstream]
    proc = procs.start(name, argv, ROUTER_CPU)
    url = f"http://127.0.0.1:{port}"
    wait_for(name, lambda: http("GET", f"{url}/healthz")[0] == 200, procs)
    return proc, f"{url}/v1/chat/completions"


def start_portkey(procs: Processes, nginx: int, sse: int) -> Peer:
    """The Portkey gateway (npm package, one node process, loopback only), provider `openai` at a custom
    host: the same upstreams as everyone else."""
    port = free_port()
    argv = ["node", "-r", str(PERF / "loopback.cjs"), str(PORTKEY), f"--port={port}", "--headless"]
    proc = procs.start("portkey", argv, ROUTER_CPU, {**os.environ, "NODE_ENV": "production"})
    url = f"http://127.0.0.1:{port}/v1/chat/completions"

    def ready() -> bool:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/", method="GET")
        with urllib.request.urlopen(request, timeout=2) as answer:
            return answer.status < 500

    wait_for("the Portkey gateway", ready, procs, 60)
    ns = ("x-portkey-provider: openai", f"x-portkey-custom-host: http://127.0.0.1:{nginx}/v1")
    st = ("x-portkey-provider: openai", f"x-portkey-custom-host: http://127.0.0.1:{sse}/v1")
    return Peer("Portkey", url, url, API_KEY, ns, st, proc.pid, stream_seconds=15)


def start_peers(
    procs: Processes, tmp: Path, nginx: int, sse: int, portkey: bool, litellm: bool
) -> list[Peer]:
    n, s = f"http://127.0.0.1:{nginx}/v1", f"http://127.0.0.1:{sse}/v1"
    peers = [Peer("direct", f"{n}/chat/completions", f"{s}/chat/completions")]

    port, stream_port = free_port(), free_port()
    conf = NGINX_PROXY_CONF.format(tmp=tmp, port=port, stream_port=stream_port, nginx=nginx, sse=sse)
    (tmp / "nginx-proxy.conf").write_text(conf)
    proc = procs.start(
        "nginx-proxy", ["nginx", "-p", str(tmp), "-c", str(tmp / "nginx-proxy.conf")], ROUTER_CPU
    )
    proxied, proxied_sse = f"http://127.0.0.1:{port}/v1", f"http://127.0.0.1:{stream_port}/v1"
    wait_for("the nginx proxy", lambda: http("GET", f"{proxied_sse}/models")[0] == 200, procs)
    peers.append(
        Peer("nginx", f"{proxied}/chat/completions", f"{proxied_sse}/chat/completions", pid=proc.pid)
    )

    relay, relay_url = start_relay(procs, "relay", n)
    _, relay_stream_url = start_relay(procs, "relay-stream", s)
    peers.append(
        Peer("relay", relay_url, relay_stream_url, pid=relay.pid, clients=(*CLIENTS, TARGET_CLIENTS))
    )

    for name, cors in (("router", False), ("router+CORS", True)):
        config = router_config(nginx, sse, tmp / f"{name}.log", cors)
        proc, url = start_router(procs, tmp, name.replace("+", "-"), config)
        wait_for(
            f"{name}: route bench", lambda u=url: route_state(u, "bench") == ("healthy", "closed"), procs
        )
        wait_for(
            f"{name}: route paced", lambda u=url: route_state(u, "paced") == ("healthy", "closed"), procs
        )
        origin = (f"Origin: {ORIGIN}",) if cors else ()
        chat = f"{url}/v1/chat/completions"
        peers.append(
            Peer(name, chat, chat, API_KEY, origin, origin, proc.pid, clients=(*CLIENTS, TARGET_CLIENTS))
        )

    if portkey:
        peers.append(start_portkey(procs, nginx, sse))
    if litellm:
        url = start_litellm(procs, tmp, nginx, sse) + "/v1/chat/completions"
        pid = next(p.pid for name, p in procs.running if name == "litellm")
        peers.append(Peer("LiteLLM", url, url, LITELLM_KEY, pid=pid, stream_seconds=15))
    return peers


# ---------------------------------------------------------------------------------------------- phases


def latency_phase(peers: list[Peer], rounds: int, seconds: float) -> list[dict[str, Any]]:
    """Rounds over every peer and concurrency, interleaved so that the machine's drift hits all alike."""
    rows = []
    for rnd in range(1, rounds + 1):
        for peer in peers:
            if peer.errors:
                continue
            print(f"round {rnd}: {peer.name} ...", flush=True)
            try:
                try:  # warm-up: connections, pools, caches (a slow peer may answer nothing in it)
                    wrk(peer.ns_url, 64, 2, peer.key, peer.ns_headers)
                except RuntimeError:
                    pass
                for c in peer.clients:
                    r = wrk(peer.ns_url, c, seconds, peer.key, peer.ns_headers, pid=peer.pid)
                    rows.append({"round": rnd, "peer": peer.name, "clients": c, **r})
            except RuntimeError as error:
                peer.errors.append(str(error)[-300:])
                print(f"{peer.name}: {peer.errors[-1]}", flush=True)
    direct = {(r["round"], r["clients"]): r for r in rows if r["peer"] == "direct"}
    for r in rows:
        d = direct.get((r["round"], r["clients"]), direct.get((r["round"], 64)))
        r["added_p50"] = r["p50"] - d["p50"] if d else float("nan")
        r["added_p99"] = r["p99"] - d["p99"] if d else float("nan")
    return rows


def stream_phase(peers: list[Peer], rounds: int) -> list[dict[str, Any]]:
    rows = []
    for rnd in range(1, rounds + 1):
        for peer in peers:
            print(f"streams, round {rnd}: {peer.name} ...", flush=True)
            for concurrency, count in STREAM_LEVELS.items():
                try:
                    s = streams(
                        peer.stream_url,
                        count,
                        concurrency,
                        peer.key,
                        peer.stream_headers,
                        peer.stream_seconds,
                    )
                except RuntimeError as error:
                    print(f"{peer.name} streams: {str(error)[-300:]}", flush=True)
                    peer.errors.append(f"streams x{concurrency}: {str(error)[-200:]}")
                    continue
                s["count"] = s.pop("streams")
                rows.append({"round": rnd, "peer": peer.name, "at_once": concurrency, **s})
    direct = {(r["round"], r["at_once"]): r for r in rows if r["peer"] == "direct"}
    for r in rows:
        d = direct.get((r["round"], r["at_once"]))
        for fig in ("ttft_p50_ms", "ttft_p99_ms", "delay_p50_ms", "delay_p99_ms"):
            r[f"added_{fig}"] = r[fig] - d[fig] if d else float("nan")
    return rows


def routes_config(nginx: int, count: int, log: Path, version: int = 1) -> dict[str, Any]:
    """`count` routes (models bench-0 ...), each to the same upstream, probes off, the request log on."""
    return {
        "version": 1,
        "server": {"host": "127.0.0.1"},
        "auth": {
            "api_keys": [{"name": "bench", "key": API_KEY, "rate_limit_per_minute": 10**9}],
            "admin_keys": [{"name": "bench-admin", "key": ADMIN_KEY}],
        },
        "logging": {"level": "info", "format": "json", "file": str(log)},
        "upstreams": {"nginx": {"type": "openai", "base_url": f"http://127.0.0.1:{nginx}/v1"}},
        "defaults": {"health_check": {"enabled": False}},
        "routes": [
            {"path": f"/chat/r{i}", "model": f"bench-{i}", "upstream": "nginx", "description": f"v{version}"}
            for i in range(count)
        ],
    }


def reload_seconds(router: str) -> float:
    request = urllib.request.Request(
        f"{router}/admin/reload", method="POST", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as answer:
        result = json.loads(answer.read())
    took = time.perf_counter() - started
    if not result.get("changed"):
        raise RuntimeError(f"the reload changed nothing: {result}")
    return took


def routes_phase(procs: Processes, tmp: Path, nginx: int, seconds: float) -> list[dict[str, Any]]:
    rows = []
    for count in ROUTE_COUNTS:
        print(f"{count:,} routes ...", flush=True)
        config = routes_config(nginx, count, tmp / f"routes-{count}.log")
        path = tmp / f"routes-{count}.yaml"
        path.write_text(json.dumps(config))
        port = free_port()
        argv = [str(BIN / "router"), "serve", "--config", str(path), "--port", str(port), "--no-watch"]
        started = time.perf_counter()
        proc = procs.start(f"routes-{count}", argv, ROUTER_CPU)
        router = f"http://127.0.0.1:{port}"
        try:
            wait_for(
                f"{count} routes", lambda u=router: http("GET", f"{u}/readyz")[0] == 200, procs, STARTUP_LIMIT
            )
        except RuntimeError:
            print(f"{count:,} routes: not ready within {STARTUP_LIMIT} s; skipped", flush=True)
            rows.append(
                {
                    "routes": count,
                    "startup_s": float("nan"),
                    "reload_s": float("nan"),
                    "p50_1": float("nan"),
                    "p99_1": float("nan"),
                    "rps_16": float("nan"),
                    "cpu_us_16": float("nan"),
                    "rss_mb": vm_rss_mb(proc.pid),
                }
            )
            procs.stop(proc)
            continue
        startup = time.perf_counter() - started
        reloads = []
        for version in (2, 3):
            path.write_text(json.dumps(routes_config(nginx, count, tmp / f"routes-{count}.log", version)))
            reloads.append(reload_seconds(router))
        url = f"{router}/v1/chat/completions"
        body = BODY.replace('"bench"', f'"bench-{count - 1}"')  # the last route: a scan would show
        wrk(url, 16, 1, body=body)  # warm-up
        one = wrk(url, 1, seconds, body=body, pid=proc.pid)
        many = wrk(url, 16, seconds, body=body, pid=proc.pid)
        rows.append(
            {
                "routes": count,
                "startup_s": startup,
                "reload_s": max(reloads),
                "p50_1": one["p50"],
                "p99_1": one["p99"],
                "rps_16": many["rps"],
                "cpu_us_16": many["cpu_us"],
                "rss_mb": vm_rss_mb(proc.pid),
            }
        )
        procs.stop(proc)
    return rows


def sized_body(size: int) -> str:
    """A chat request of about `size` bytes: a few messages sharing the text."""
    text = "lorem ipsum dolor sit amet " * (size // 27 // 3 + 1)
    turns = ["user", "assistant", "user"]
    messages = [{"role": role, "content": text[: size // 3 - 60]} for role in turns] + [
        {"role": "user", "content": "Summarise."}
    ]
    return json.dumps({"model": "bench", "messages": messages, "max_tokens": 16})


def size_phase(peers: list[Peer], seconds: float) -> list[dict[str, Any]]:
    rows = []
    chosen = [p for p in peers if p.name in ("direct", "relay", "router") and not p.errors]
    for size in SIZES:
        body = sized_body(size)
        print(f"request of {len(body):,} bytes ...", flush=True)
        for peer in chosen:
            wrk(peer.ns_url, 16, 1, peer.key, peer.ns_headers, body)  # warm-up
            one = wrk(peer.ns_url, 1, seconds, peer.key, peer.ns_headers, body, peer.pid)
            many = wrk(peer.ns_url, 16, seconds, peer.key, peer.ns_headers, body, peer.pid)
            rows.append(
                {
                    "bytes": len(body),
                    "peer": peer.name,
                    "p50_1": one["p50"],
                    "p99_1": one["p99"],
                    "cpu_us_1": one["cpu_us"],
                    "rps_16": many["rps"],
                    "cpu_us_16": many["cpu_us"],
                    "rss_mb": vm_rss_mb(peer.pid) if peer.pid else 0.0,
                }
            )
    return rows


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def raise_file_limit(wanted: int) -> int:
    """Raise this process's open-file limits (soft and hard) to `wanted` if it may (root may, up to
    fs.nr_open); the processes it starts next inherit them. Returns the soft limit it got."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):  # not root: the hard limit stays
            pass
    soft = hard if hard != resource.RLIM_INFINITY else max(soft, wanted)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def hold_phase(procs: Processes, tmp: Path, nginx: int) -> list[dict[str, Any]]:
    """A fresh router and SSE upstream; ever more slow streams held at once; RSS, drops, and a plain
    request's p50 then.

    The streams open HOLD_RATE a second and each lasts HOLD_CHUNKS x HOLD_PACE seconds, longer than the
    opening of the largest count takes, so that all of them are open at once: `held` is the most open at
    a time.
    (All at once, as a burst, they measure how fast the router accepts, not what it holds.) The router
    needs a client and an upstream socket per stream, so the open-file limits of this process (and so of
    the router, the upstream and the client it starts) are raised first where that is allowed.
    """
    limit = raise_file_limit(HOLD_FILES)
    # The router keeps descriptors for every pool it may fill (server.max_connections is lowered to fit):
    # 2 x streams + the other pools + spare must fit in the limit. Without CAP_SYS_RESOURCE (a container
    # may drop it even for root) the hard limit stays, and the largest count is the most that fits.
    pools = router_config(nginx, 0, tmp / "x")["upstreams"]
    others = sum(u.get("max_connections", 100) for name, u in pools.items() if name != "sse-slow")
    fits = (limit - others - SPARE_DESCRIPTORS - 2 * HOLD_SLACK) // 2 // 50 * 50
    counts = sorted({min(c, fits) for c in OPEN_STREAMS})
    sse = free_port()
    argv = [sys.executable, "-m", "tests.perf.sse_upstream", "--port", str(sse)]
    argv += ["--slow-chunks", str(HOLD_CHUNKS), "--slow-pace", str(HOLD_PACE)]
    procs.start("sse-hold", argv, LOADGEN_CPU)
    wait_for("the SSE upstream", lambda: http("GET", f"http://127.0.0.1:{sse}/v1/models")[0] == 200, procs)
    config = router_config(nginx, sse, tmp / "hold.log")
    config["server"]["max_connections"] = config["upstreams"]["sse-slow"]["max_connections"] = (
        max(counts) + HOLD_SLACK
    )
    proc, router = start_router(procs, tmp, "router-hold", config)
    wait_for("route slow", lambda: route_state(router, "slow") == ("healthy", "closed"), procs)
    url = f"{router}/v1/chat/completions"
    wrk(url, 16, 1)  # warm-up
    rows = []
    for count in counts:
        why = f" (the most the open-file limit, {limit:,}, lets one process hold)" if count == fits else ""
        print(f"{count:,} open streams{why} ...", flush=True)
        idle = vm_rss_mb(proc.pid)
        argv = ["taskset", "-c", str(LOADGEN_CPU), sys.executable, "-m", "tests.perf.stream_client", url]
        argv += ["--hold", "--model", "slow", "--api-key", API_KEY, "--streams", str(count)]
        argv += ["--chunks", str(HOLD_CHUNKS), "--rate", str(HOLD_RATE)]
        client = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peak, peak_fds, deadline = (
            idle,
            0,
            time.monotonic() + HOLD_CHUNKS * HOLD_PACE + 2 * count / HOLD_RATE + 60,
        )
        loaded: dict[str, float] = {}
        opened_at = time.monotonic()
        while client.poll() is None:
            peak = max(peak, vm_rss_mb(proc.pid))
            fds = open_fds(proc.pid)
            peak_fds = max(peak_fds, fds)
            if not loaded and (fds >= 2 * count or time.monotonic() - opened_at > count / HOLD_RATE + 6):
                try:  # a plain request while the streams are held
                    loaded = wrk(url, 1, 3, pid=proc.pid)
                except RuntimeError:  # none answered within the window: the loop is saturated
                    loaded = {"p50": float("inf"), "p99": float("inf"), "cpu_us": float("nan")}
            if time.monotonic() > deadline:
                client.kill()
                raise RuntimeError(f"the hold client did not finish in time ({count} streams)")
            time.sleep(0.05)
        out, err = client.communicate()
        if client.returncode:
            raise RuntimeError(f"hold client failed ({client.returncode}): {err.strip()[-500:]}")
        held = json.loads(out.splitlines()[-1])
        if held["dropped"]:
            print(f"  dropped: {held['reasons']}", flush=True)
        rows.append(
            {
                "streams": count,
                "held": held["held"],
                "dropped": held["dropped"],
                "rss_idle_mb": idle,
                "rss_peak_mb": peak,
                "fds_peak": peak_fds,
                "p50_1_during": loaded.get("p50", float("nan")),
                "p99_1_during": loaded.get("p99", float("nan")),
                "cpu_us_during": loaded.get("cpu_us", float("nan")),
                "drop_reasons": " ".join(f"{k.replace(' ', '_')}={v}" for k, v in held["reasons"].items()),
            }
        )
        time.sleep(2)
    procs.check("router-hold", proc)
    procs.stop(proc)
    return rows


# ---------------------------------------------------------------------------------------------- output


def write_csv(name: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    with open(RESULTS / name, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})


def med(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def spread(rows: list[dict[str, Any]], fig: str, **match: Any) -> tuple[float, float, float]:
    """(median, min, max) of `fig` over the rounds of the rows matching."""
    values = [r[fig] for r in rows if all(r[k] == v for k, v in match.items())]
    if not values:
        return (float("nan"),) * 3
    return med(values), min(values), max(values)


COLOURS = {
    "direct": "black",
    "nginx": "tab:green",
    "relay": "tab:purple",
    "router": "tab:blue",
    "router+CORS": "tab:cyan",
    "Portkey": "tab:orange",
    "LiteLLM": "tab:red",
}


def plots(
    lat: list[dict[str, Any]],
    st: list[dict[str, Any]],
    routes: list[dict[str, Any]],
    sizes: list[dict[str, Any]],
    hold: list[dict[str, Any]],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in COLOURS if any(r["peer"] == n for r in lat)]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, fig_name, title in zip(
        axes,
        ("rps", "added_p50", "added_p99"),
        ("throughput (req/s)", "added p50 over direct (ms)", "added p99 over direct (ms)"),
        strict=True,
    ):
        for name in names:
            if fig_name != "rps" and name == "direct":
                continue
            xs = sorted({r["clients"] for r in lat if r["peer"] == name})
            m = [spread(lat, fig_name, peer=name, clients=c) for c in xs]
            lo = [max(0.0, a - b) for a, b, _ in m]
            hi = [c - a for a, _, c in m]
            ax.errorbar(
                xs,
                [a for a, _, _ in m],
                yerr=[lo, hi],
                label=name,
                color=COLOURS[name],
                marker="o",
                capsize=3,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([*CLIENTS, TARGET_CLIENTS])
        ax.set_xticklabels([str(c) for c in (*CLIENTS, TARGET_CLIENTS)])
        ax.set_xlabel("concurrent clients")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.suptitle("Non-streaming: median of the rounds, bars from the lowest to the highest round")
    fig.tight_layout()
    fig.savefig(RESULTS / "latency.png", dpi=90)
    plt.close(fig)

    if st:
        names = [n for n in COLOURS if n != "direct" and any(r["peer"] == n for r in st)]
        figs = ("added_ttft_p50_ms", "added_ttft_p99_ms", "added_delay_p50_ms", "added_delay_p99_ms")
        titles = ("TTFT added, p50", "TTFT added, p99", "chunk delay added, p50", "chunk delay added, p99")
        fig, axes = plt.subplots(1, 4, figsize=(16, 4.2))
        width = 0.8 / max(1, len(names))
        for ax, f, title in zip(axes, figs, titles, strict=True):
            for i, name in enumerate(names):
                vals = [spread(st, f, peer=name, at_once=c)[0] for c in STREAM_LEVELS]
                xs = [j + i * width for j in range(len(STREAM_LEVELS))]
                ax.bar(xs, [max(v, 0.001) for v in vals], width, label=name, color=COLOURS[name])
            ax.set_yscale("log")
            ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(STREAM_LEVELS))])
            ax.set_xticklabels([f"{c} stream{'s' * (c > 1)}" for c in STREAM_LEVELS])
            ax.set_title(f"{title} (ms)")
            ax.grid(alpha=0.3, axis="y", which="both")
        axes[0].legend(fontsize=8)
        fig.suptitle(
            "Paced streams (50 chunks 2 ms apart): added over the direct path, median of the rounds "
            "(floor 0.001 ms)"
        )
        fig.tight_layout()
        fig.savefig(RESULTS / "streams.png", dpi=90)
        plt.close(fig)

    if routes:
        xs = [r["routes"] for r in routes]
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
        axes[0].plot(xs, [r["startup_s"] for r in routes], "o-", label="start to ready")
        axes[0].plot(xs, [r["reload_s"] for r in routes], "s-", label="reload (POST /admin/reload)")
        axes[0].axhline(2, color="grey", ls="--", lw=1, label="target 2 s")
        axes[0].set_ylabel("seconds")
        axes[0].legend(fontsize=8)
        axes[1].plot(
            xs, [r["cpu_us_16"] for r in routes], "o-", label="router CPU per request (us), 16 clients"
        )
        axes[1].plot(xs, [1000 * r["p50_1"] for r in routes], "s-", label="p50 at 1 client (us)")
        axes[1].set_ylim(bottom=0)
        axes[1].legend(fontsize=8)
        axes[2].plot(xs, [r["rss_mb"] for r in routes], "o-")
        axes[2].set_ylabel("RSS after the load (MB)")
        for ax in axes:
            ax.set_xscale("log")
            ax.set_xlabel("routes in the table")
            ax.grid(alpha=0.3, which="both")
        fig.suptitle("Cost against the size of the routing table (one worker; requests to the last route)")
        fig.tight_layout()
        fig.savefig(RESULTS / "cost_routes.png", dpi=90)
        plt.close(fig)

    if sizes:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for name in ("direct", "relay", "router"):
            rs = [r for r in sizes if r["peer"] == name]
            if not rs:
                continue
            xs = [r["bytes"] / 1024 for r in rs]
            axes[0].plot(xs, [r["p50_1"] for r in rs], "o-", label=name, color=COLOURS[name])
            if name != "direct":
                axes[1].plot(xs, [r["cpu_us_16"] for r in rs], "o-", label=name, color=COLOURS[name])
        axes[0].set_ylabel("p50 at 1 client (ms)")
        axes[1].set_ylabel("CPU per request at 16 clients (us)")
        for ax in axes:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("request size (KB)")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
        fig.suptitle("Cost against the size of the request")
        fig.tight_layout()
        fig.savefig(RESULTS / "cost_size.png", dpi=90)
        plt.close(fig)

    if hold:
        xs = [r["streams"] for r in hold]
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        axes[0].plot(xs, [r["rss_peak_mb"] for r in hold], "o-", label="peak RSS")
        axes[0].axhline(1024, color="grey", ls="--", lw=1, label="target 1 GB (at 10,000)")
        axes[0].set_ylabel("router RSS (MB)")
        axes[0].legend(fontsize=8)
        axes[1].plot(xs, [r["p50_1_during"] for r in hold], "o-", label="p50")
        axes[1].plot(xs, [r["p99_1_during"] for r in hold], "s-", label="p99")
        axes[1].set_ylabel("plain request at 1 client, while held (ms)")
        axes[1].set_yscale("log")
        axes[1].legend(fontsize=8)
        for ax in axes:
            ax.set_xscale("log")
            ax.set_xlabel("open streams held at once")
            ax.grid(alpha=0.3, which="both")
        fig.suptitle(
            f"Cost against open streams ({HOLD_CHUNKS} chunks {HOLD_PACE:g} s apart, "
            f"opened {HOLD_RATE}/s; one worker)"
        )
        fig.tight_layout()
        fig.savefig(RESULTS / "cost_streams.png", dpi=90)
        plt.close(fig)


def fmt(x: float, digits: int = 3) -> str:
    if x != x:  # NaN
        return "n/a"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.{digits}f}"


def report(
    header: str,
    peers: list[Peer],
    lat: list[dict[str, Any]],
    st: list[dict[str, Any]],
    routes: list[dict[str, Any]],
    sizes: list[dict[str, Any]],
    hold: list[dict[str, Any]],
    profiles: dict[str, list[str]],
) -> str:
    out = [header, ""]
    names = [p.name for p in peers]
    out += ["## Latency against concurrency (non-streaming)", "", "![latency](latency.png)", ""]
    out += ["Median of the rounds [lowest, highest]; added = over direct in the same round.", ""]
    out += ["| peer | clients | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | CPU us/req |"]
    out += ["|---|---|---|---|---|---|---|---|"]
    for name in names:
        for c in sorted({r["clients"] for r in lat if r["peer"] == name}):
            cells = []
            for f in ("rps", "p50", "p99", "added_p50", "added_p99"):
                m, lo, hi = spread(lat, f, peer=name, clients=c)
                cells.append(f"{fmt(m)} [{fmt(lo)}, {fmt(hi)}]")
            cpu = spread(lat, "cpu_us", peer=name, clients=c)[0]
            out.append(f"| {name} | {c} | " + " | ".join(cells) + f" | {fmt(cpu, 0) if cpu else '-'} |")
    out += ["", "Throughput ratios (medians of the rounds):", ""]
    out += [
        "| clients | router / relay | router+CORS / relay | router / nginx | router / Portkey "
        "| router / LiteLLM |"
    ]
    out += ["|---|---|---|---|---|---|"]

    def rps(name: str, c: int) -> float:
        return spread(lat, "rps", peer=name, clients=c)[0]

    for c in (*CLIENTS, TARGET_CLIENTS):
        r = rps("router", c)
        cells = [r / rps(n, c) for n in ("relay",)] + [rps("router+CORS", c) / rps("relay", c)]
        cells += [r / rps(n, c) for n in ("nginx", "Portkey", "LiteLLM")]
        out.append(f"| {c} | " + " | ".join(f"{x:.2f}" if x == x else "n/a" for x in cells) + " |")
    out += [
        "",
        "CPU per request of the system under test, as a capacity ratio (the other's CPU microseconds per "
        "request over the router's, median of the per-round ratios): how many requests the router serves "
        "for one of the other's on the same core, whatever share of the core the neighbours left it.",
        "",
    ]
    out += ["| clients | relay / router | relay / router+CORS | Portkey / router | LiteLLM / router |"]
    out += ["|---|---|---|---|---|"]

    def cpu_ratio(other: str, mine: str, c: int) -> float:
        ours = {r["round"]: r["cpu_us"] for r in lat if r["peer"] == mine and r["clients"] == c}
        theirs = {r["round"]: r["cpu_us"] for r in lat if r["peer"] == other and r["clients"] == c}
        return med(theirs[k] / ours[k] for k in ours if k in theirs and ours[k])

    for c in (*CLIENTS, TARGET_CLIENTS):
        cells = [cpu_ratio("relay", "router", c), cpu_ratio("relay", "router+CORS", c)]
        cells += [cpu_ratio(n, "router", c) for n in ("Portkey", "LiteLLM")]
        out.append(f"| {c} | " + " | ".join(f"{x:.2f}" if x == x else "n/a" for x in cells) + " |")
    if st:
        out += ["", "## Streams (paced: 50 chunks 2 ms apart)", "", "![streams](streams.png)", ""]
        out += ["Median of the rounds; added = over direct in the same round.", ""]
        out += [
            "| peer | streams at once | TTFT p50 ms | TTFT p99 ms | added TTFT p50 | added TTFT p99 "
            "| chunk delay p50 ms | p99 ms | added delay p50 | added delay p99 |"
        ]
        out += ["|---|---|---|---|---|---|---|---|---|---|"]
        for name in names:
            for c in STREAM_LEVELS:
                figs = (
                    "ttft_p50_ms",
                    "ttft_p99_ms",
                    "added_ttft_p50_ms",
                    "added_ttft_p99_ms",
                    "delay_p50_ms",
                    "delay_p99_ms",
                    "added_delay_p50_ms",
                    "added_delay_p99_ms",
                )
                vals = [spread(st, f, peer=name, at_once=c)[0] for f in figs]
                if all(v != v for v in vals):
                    continue
                out.append(f"| {name} | {c} | " + " | ".join(fmt(v) for v in vals) + " |")
    if routes:
        out += ["", "## Cost against the number of routes", "", "![routes](cost_routes.png)", ""]
        out += [
            "| routes | start to ready s | reload s | p50 ms (1 client) | p99 ms | req/s (16) "
            "| CPU us/req | RSS MB |"
        ]
        out += ["|---|---|---|---|---|---|---|---|"]
        for r in routes:
            if r["startup_s"] != r["startup_s"]:
                out.append(
                    f"| {r['routes']:,} | not ready in {STARTUP_LIMIT} s | | | | | | {r['rss_mb']:.0f} |"
                )
                continue
            out.append(
                f"| {r['routes']:,} | {r['startup_s']:.2f} | {r['reload_s']:.2f} | {r['p50_1']:.3f} | "
                f"{r['p99_1']:.3f} | {r['rps_16']:,.0f} | {r['cpu_us_16']:.0f} | {r['rss_mb']:.0f} |"
            )
    if sizes:
        out += ["", "## Cost against the request size", "", "![sizes](cost_size.png)", ""]
        out += ["| bytes | peer | p50 ms (1 client) | p99 ms | req/s (16) | CPU us/req (16) | RSS MB |"]
        out += ["|---|---|---|---|---|---|---|"]
        for r in sizes:
            out.append(
                f"| {r['bytes']:,} | {r['peer']} | {r['p50_1']:.3f} | {r['p99_1']:.3f} | "
                f"{r['rps_16']:,.0f} | "
                f"{r['cpu_us_16']:.0f} | {r['rss_mb']:.0f} |"
            )
    if hold:
        out += ["", "## Cost against open streams", "", "![streams held](cost_streams.png)", ""]
        out += [
            "| streams | held | dropped | RSS idle MB | RSS peak MB | KB per stream | descriptors | "
            "plain p50 / p99 ms while held |"
        ]
        out += ["|---|---|---|---|---|---|---|---|"]
        for r in hold:
            per = 1024 * (r["rss_peak_mb"] - r["rss_idle_mb"]) / r["streams"]
            out.append(
                f"| {r['streams']:,} | {r['held']:,} | {r['dropped']:,} | {r['rss_idle_mb']:.0f} | "
                f"{r['rss_peak_mb']:.0f} | {per:.1f} | {r['fds_peak']:,} | "
                f"{fmt(r['p50_1_during'])} / {fmt(r['p99_1_during'])} |"
            )
    errors = [(p.name, e) for p in peers for e in p.errors]
    if errors:
        out += ["", "## Errors", ""] + [f"- {n}: {e}" for n, e in errors]
    for name, lines in profiles.items():
        out += ["", f"## Router profile: {name} (py-spy, own time, top 15)", "", "```", *lines, "```"]
    return "\n".join(out) + "\n"


def machine_header(command: str, load_before: str) -> str:
    models = [
        x.split(":", 1)[1].strip()
        for x in Path("/proc/cpuinfo").read_text().splitlines()
        if "model name" in x
    ]
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(" [")[0]
    nginx_version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    pk = PORTKEY.parents[1] / "package.json"
    portkey = json.loads(pk.read_text())["version"] if pk.exists() else "absent"
    dists = sorted(PERF.glob(".litellm-venv/lib/python*/site-packages/litellm-*.dist-info"))
    litellm = dists[0].name.split("-")[1].removesuffix(".dist") if dists else "absent"
    return (
        "# Curves: the router beside its peers as load and work grow\n\n"
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; command: `{command}`\n"
        f"- machine: nproc {os.cpu_count()} ({models[0] if models else '?'}), Linux {platform.release()}; "
        f"load average before the run {load_before} (shared with other engineers: compare ratios within this "
        "run, not absolute figures across runs)\n"
        f"- Python {platform.python_version()}, {wrk_version}, {nginx_version}, node {node}, "
        f"@portkey-ai/gateway {portkey}, LiteLLM {litellm}\n"
        f"- pinning: core {ROUTER_CPU} = the system under test (idle ones wait there too); "
        f"core {LOADGEN_CPU} = "
        "wrk (1 thread), the stream client, nginx answering a fixed chat.completion, the SSE upstream\n"
        "- peers: direct = nginx upstream itself; nginx = nginx reverse proxy (keepalive pool 64); relay = "
        "tests/perf/reference_relay.py (Litestar, uvicorn, uvloop, httptools, one aiohttp session); router = "
        "one worker, everything on (client key with a rate limit, JSON request log to a file, health "
        "checks, breakers, retries); router+CORS = the same with `server.cors_allowed_origins` and an "
        "Origin header on every request; Portkey = `@portkey-ai/gateway` (one node process, provider openai "
        "at a custom host); LiteLLM = `litellm --num_workers 1` (as in `python -m tests.perf`)"
    )


# ---------------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.perf.curves", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stream-rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5, help="per non-streaming point")
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--no-portkey", action="store_true")
    parser.add_argument("--only", default="latency,streams,routes,sizes,hold", help="phases, comma-separated")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the router and router+CORS at 50 clients"
    )
    parser.add_argument(
        "--peers",
        default="",
        help="only these peers (comma-separated; direct is always in), into *-PEERS.csv",
    )
    parser.add_argument("--from-csv", action="store_true", help="only redraw the plots and curves.md")
    args = parser.parse_args()
    only = set(args.only.split(","))
    if args.from_csv:
        return redraw()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
    for tool in ("wrk", "nginx", "taskset"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: bash tests/perf/curves.sh installs it (apt-get)", file=sys.stderr)
            return 2
    portkey = not args.no_portkey and PORTKEY.exists() and shutil.which("node") is not None
    litellm = not args.no_litellm and LITELLM.exists()

    def stop(signum: int, _frame: object) -> None:
        why = f"the {TIME_LIMIT} s time limit" if signum == signal.SIGALRM else signal.Signals(signum).name
        raise SystemExit(f"curves stopped: {why}")

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, stop)
    signal.alarm(TIME_LIMIT)
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    command = os.environ.get("PERF_COMMAND") or "python -m tests.perf.curves " + " ".join(sys.argv[1:])
    header = machine_header(command.strip(), load_before)
    RESULTS.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="router-curves-"))
    procs = Processes(tmp)
    lat: list[dict[str, Any]] = []
    st: list[dict[str, Any]] = []
    routes: list[dict[str, Any]] = []
    sizes: list[dict[str, Any]] = []
    hold: list[dict[str, Any]] = []
    profiles: dict[str, list[str]] = {}
    busy, started = machine_busy_seconds(), time.monotonic()
    peers: list[Peer] = []
    try:
        nginx_port, sse_port = free_port(), free_port()
        conf = NGINX_CONF.format(tmp=tmp, port=nginx_port, completion=COMPLETION, models=MODELS)
        conf = conf.replace("  access_log off;\n", "  access_log off;\n  client_max_body_size 8m;\n", 1)
        (tmp / "nginx.conf").write_text(conf)
        procs.start("nginx", ["nginx", "-p", str(tmp), "-c", str(tmp / "nginx.conf")], LOADGEN_CPU)
        argv = [sys.executable, "-m", "tests.perf.sse_upstream", "--port", str(sse_port)]
        procs.start("sse-upstream", [*argv, "--chunks", str(STREAM_CHUNKS)], LOADGEN_CPU)
        wait_for("nginx", lambda: http("GET", f"http://127.0.0.1:{nginx_port}/v1/models")[0] == 200, procs)
        wait_for(
            "the SSE upstream", lambda: http("GET", f"http://127.0.0.1:{sse_port}/v1/models")[0] == 200, procs
        )
        peers = start_peers(procs, tmp, nginx_port, sse_port, portkey, litellm)
        suffix = ""
        if args.peers:
            wanted = {"direct", *args.peers.split(",")}
            peers = [p for p in peers if p.name in wanted]
            suffix = "-" + args.peers.replace(",", "-").replace("+", "")
        if "latency" in only:
            lat = latency_phase(peers, args.rounds, args.seconds)
            write_csv(f"latency{suffix}.csv", lat)
        if "streams" in only:
            st = stream_phase(peers, args.stream_rounds)
            write_csv(f"streams{suffix}.csv", st)
        if args.profile:
            profiles = profile_phase(procs, tmp, peers)
        if "sizes" in only:
            sizes = size_phase(peers, 3)
            write_csv("cost_size.csv", sizes)
        for name, proc in list(procs.running):
            if name not in ("nginx", "sse-upstream"):
                procs.stop(proc)
        if "routes" in only:
            routes = routes_phase(procs, tmp, nginx_port, 3)
            write_csv("cost_routes.csv", routes)
        if "hold" in only:
            hold = hold_phase(procs, tmp, nginx_port)
            write_csv("cost_streams.csv", hold)
    finally:
        procs.stop_all()
        signal.alarm(0)
        shutil.rmtree(tmp, ignore_errors=True)
    took = time.monotonic() - started
    others = 100 * (machine_busy_seconds() - busy) / took
    load_after = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    header += (
        f"\n- the run took {took:.0f} s; load average after it {load_after}; all cores were busy "
        f"{others:.0f}% of one core on average (the benchmark's own share included)"
    )
    if suffix:
        print(report(header, peers, lat, st, [], [], [], {}))
        return 0
    if only >= {"latency", "streams"}:  # the run the ratios come from
        (RESULTS / "header.md").write_text(header + "\n")
    if profiles:
        (RESULTS / "profiles.md").write_text(
            "".join(f"### {n}\n\n```\n" + "\n".join(lines) + "\n```\n\n" for n, lines in profiles.items())
        )
    return redraw(peers)


def read_csv(name: str) -> list[dict[str, Any]]:
    """A results CSV back as rows of numbers (and names)."""
    path = RESULTS / name
    if not path.exists():
        return []
    rows = []
    for raw in csv.DictReader(path.open()):
        row: dict[str, Any] = {}
        for k, v in raw.items():
            try:
                row[k] = int(v)
            except ValueError:
                try:
                    row[k] = float(v)
                except ValueError:
                    row[k] = v
        rows.append(row)
    return rows


def redraw(peers: list[Peer] | None = None) -> int:
    """Plots and curves.md from the CSVs in tests/perf/results (each phase's latest run)."""
    lat, st = read_csv("latency.csv"), read_csv("streams.csv")
    routes, sizes, hold = read_csv("cost_routes.csv"), read_csv("cost_size.csv"), read_csv("cost_streams.csv")
    if peers is None:
        seen = {r["peer"] for r in lat + st}
        peers = [Peer(n, "", "") for n in COLOURS if n in seen]
    header_path, profiles_path = RESULTS / "header.md", RESULTS / "profiles.md"
    header = header_path.read_text().rstrip() if header_path.exists() else "# Curves"
    plots(lat, st, routes, sizes, hold)
    text = report(header, peers, lat, st, routes, sizes, hold, {})
    for path in sorted(RESULTS.glob("latency-*.csv")):  # runs of a few peers (--peers)
        extra = read_csv(path.name)
        names = [Peer(n, "", "") for n in COLOURS if any(r["peer"] == n for r in extra)]
        title = f"# Supplementary run: {', '.join(p.name for p in names)} (`{path.name}`)"
        sub = report(title, names, extra, [], [], [], [], {}).replace("![latency](latency.png)\n", "")
        text += "\n" + sub.replace("\n## ", "\n### ").replace("# Supplementary", "## Supplementary", 1)
    if profiles_path.exists():
        text += "\n## Router profiles (py-spy, own time, top 15)\n\n" + profiles_path.read_text()
    (RESULTS / "curves.md").write_text(text)
    print(text)
    return 0


def profile_phase(procs: Processes, tmp: Path, peers: list[Peer]) -> dict[str, list[str]]:
    """py-spy (own time) on the router and the router with CORS at 50 clients, and on paced streams."""
    if not (BIN / "py-spy").exists():
        return {"(py-spy missing)": [f"{BIN}/pip install py-spy"]}
    out: dict[str, list[str]] = {}
    for peer in peers:
        if peer.name not in ("router", "router+CORS") or peer.pid is None:
            continue
        print(f"profiling {peer.name} ...", flush=True)
        load: Callable[[], object] = lambda p=peer: wrk(p.ns_url, TARGET_CLIENTS, 10, p.key, p.ns_headers)  # noqa: E731
        stem = peer.name.replace("+", "-")
        out[f"{peer.name}, non-streaming, 50 clients"] = profile(
            procs, peer.pid, 8, load, tmp / f"{stem}.txt"
        )
        shutil.copy(tmp / f"{stem}.txt", f"/tmp/router-curves-profile-{stem}.txt")
        if peer.name == "router":
            load = lambda p=peer: streams(p.stream_url, 400, 1, p.key, p.stream_headers, 10)  # noqa: E731
            out["router, paced streams one at a time (TTFT)"] = profile(
                procs, peer.pid, 8, load, tmp / "stream.txt"
            )
            shutil.copy(tmp / "stream.txt", "/tmp/router-curves-profile-stream.txt")
    return out


if __name__ == "__main__":
    sys.exit(main())
