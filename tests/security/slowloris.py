"""Measure the router under a slow-loris attack: its memory, its descriptors, and how fast /healthz answers.

Not a test (pytest does not collect it): a measurement to run by hand, against this tree or another one.

    python -m tests.security.slowloris [--sockets 2000] [--seconds 15] [--nofile 1024] [--router-path DIR]

It starts `router serve` as a process (with `--router-path` first on its PYTHONPATH, so an older tree can
be measured the same way, and with `--nofile` as its open-file limit) in front of a fake Ollama, then
holds `--sockets` connections to it on 127.0.0.1 that each send one byte and go silent, opening a new one
whenever the router closes one, as a real attacker would. Meanwhile it asks GET /healthz on a new
connection every 0.2 s and samples the router's RSS and open descriptors every 0.25 s. Prints one JSON
line. Everything stops after `--seconds`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.fakes import FakeOllama
from tests.support.router_server import free_port, table


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def descriptors(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


async def attacker(port: int, stop: float, closed: list[int]) -> None:
    while time.monotonic() < stop:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        try:
            writer.write(b"G")
            await asyncio.wait_for(reader.read(), timeout=max(stop - time.monotonic(), 0.01))
            closed[0] += 1  # the router let go of it: come back, as an attacker does
        except (TimeoutError, OSError):
            pass
        finally:
            writer.close()


async def healthz(port: int) -> float | bytes | None:
    """Milliseconds to a 200; else the status line of another answer, or None for no answer in 5 s."""
    start = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    except (TimeoutError, OSError):
        return None
    if answer.startswith(b"HTTP/1.1 200"):
        return (time.perf_counter() - start) * 1000
    return answer.partition(b"\r\n")[0] or None


async def attack(pid: int, port: int, sockets: int, seconds: float) -> dict[str, object]:
    stop = time.monotonic() + seconds
    closed = [0]
    tasks = [asyncio.create_task(attacker(port, stop, closed)) for _ in range(sockets)]
    latencies: list[float] = []
    failures = refusals = 0
    rss, fds = [], []
    next_probe = time.monotonic() + 0.5  # once the flood is connected
    while time.monotonic() < stop:
        rss.append(rss_mb(pid))
        fds.append(descriptors(pid))
        if time.monotonic() >= next_probe:
            next_probe += 0.2
            took = await healthz(port)
            if isinstance(took, float):
                latencies.append(took)
            elif took is not None and b" 503 " in took:
                refusals += 1
            else:
                failures += 1
        await asyncio.sleep(0.25)
    await asyncio.gather(*tasks, return_exceptions=True)
    latencies.sort()
    return {
        "rss_peak_mb": round(max(rss), 1),
        "fds_peak": max(fds),
        "healthz_ok": len(latencies),
        "healthz_503": refusals,
        "healthz_failed": failures,
        "healthz_p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "healthz_max_ms": round(latencies[-1], 2) if latencies else None,
        "attack_sockets_closed_by_router": closed[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--nofile", type=int, default=0, help="the router's open-file limit (0: inherited)")
    parser.add_argument("--router-path", default=os.getcwd(), help="put first on the router's PYTHONPATH")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.sockets * 2 + 256)), hard))
    with FakeOllama(["qwen3:32b"]) as fake, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "routes.yaml"
        config.write_text(
            table(
                upstreams={"u": {"type": "ollama", "base_url": fake.base_url}},
                routes=[{"path": "/chat/m", "model": "qwen3:32b", "upstream": "u"}],
                defaults={"health_check": {"enabled": True, "interval": 1, "timeout": 1}},
            )
        )
        port = free_port()
        limit = args.nofile

        def limited() -> None:
            if limit:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        process = subprocess.Popen(
            [sys.executable, "-m", "router", "serve", "--config", str(config), "--port", str(port)],
            env={**os.environ, "PYTHONPATH": args.router_path},
            cwd=args.router_path,  # `-m` puts the working directory first on the path
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=limited,
        )
        try:
            deadline = time.monotonic() + 30
            while not isinstance(asyncio.run(healthz(port)), float):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("router serve did not come up")
                time.sleep(0.1)
            before = rss_mb(process.pid)
            result = asyncio.run(attack(process.pid, port, args.sockets, args.seconds))
            probes_after = sum(fake.probe_count.values())
            time.sleep(1.5)
            probing = sum(fake.probe_count.values()) > probes_after
        finally:
            process.terminate()
            process.wait(timeout=20)
    print(
        json.dumps(
            {
                "router": args.router_path,
                "sockets": args.sockets,
                "nofile": limit or soft,
                "rss_before_mb": round(before, 1),
                **result,
                "probes_after_attack": probing,
            }
        )
    )


if __name__ == "__main__":
    main()
