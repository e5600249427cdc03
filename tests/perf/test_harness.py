"""The benchmark harness's own pieces, over real sockets where they touch the network: the reference relay
relays a stream whole, the stream client counts chunks and extra headers reach the server, the soak's
verdicts flag growth and leaks, and the request-size curve makes bodies of the size it claims."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.perf.curves import SIZES, sized_body
from tests.perf.soak import verdicts

ROOT = Path(__file__).resolve().parents[2]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@pytest.fixture
def relay() -> Iterator[str]:
    """The SSE upstream (5 chunks) and the reference relay in front of it; the relay's chat URL."""
    up, front = _port(), _port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.perf.sse_upstream", "--port", str(up), "--chunks", "5"], cwd=ROOT
        ),
    ]
    try:
        _wait(up)
        argv = [sys.executable, "-m", "tests.perf.reference_relay", "--port", str(front)]
        procs.append(subprocess.Popen([*argv, "--upstream", f"http://127.0.0.1:{up}/v1"], cwd=ROOT))
        _wait(front)
        yield f"http://127.0.0.1:{front}/v1/chat/completions"
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


def test_reference_relay_relays_every_chunk_and_done(relay: str) -> None:
    argv = [sys.executable, "-m", "tests.perf.stream_client", relay, "--model", "stream", "--streams", "3"]
    done = subprocess.run([*argv, "--chunks", "5"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.splitlines()[-1])
    assert figures["streams"] == 3
    assert figures["ttft_p50_ms"] > 0


def test_stream_client_refuses_a_wrong_chunk_count(relay: str) -> None:
    argv = [sys.executable, "-m", "tests.perf.stream_client", relay, "--model", "stream", "--streams", "1"]
    done = subprocess.run([*argv, "--chunks", "6"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "wrong chunk count" in done.stderr


def test_stream_client_sends_extra_headers() -> None:
    """A one-shot server records the request head; --header lines must be in it."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"http://127.0.0.1:{server.getsockname()[1]}/v1/chat/completions"
        argv = [sys.executable, "-m", "tests.perf.stream_client", url, "--streams", "1"]
        argv += ["--header", "x-portkey-provider: openai", "--header", "Origin: http://localhost:3000"]
        client = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        server.settimeout(20)
        conn, _ = server.accept()
        head = conn.recv(65536).lower()
        conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        conn.close()
        client.wait(20)
    assert b"x-portkey-provider: openai" in head
    assert b"origin: http://localhost:3000" in head


def _rows(rss: list[float], fds: list[int]) -> list[dict[str, float]]:
    return [
        {"t": 10.0 * i, "rss_mb": r, "fds": f, "cpu_pct": 0.0}
        for i, (r, f) in enumerate(zip(rss, fds, strict=True))
    ]


def test_soak_verdicts_see_a_plateau_and_a_climb() -> None:
    flat = verdicts(_rows([50, 80, 81, 82, 81, 82, 82, 81, 82, 82], [30] * 10), 90, 30, 30)
    assert flat["plateau"] and not flat["fds_leaked"]
    climbing = verdicts(_rows([50, 80, 85, 90, 95, 100, 105, 110, 115, 120], [30] * 10), 90, 30, 30)
    assert not climbing["plateau"]
    assert climbing["growth_pct"] > 10
    leaking = verdicts(_rows([80] * 10, [30 + 20 * i for i in range(10)]), 90, 30, 210)
    assert leaking["fds_leaked"]


def test_sized_bodies_are_the_size_claimed() -> None:
    for size in SIZES:
        body = sized_body(size)
        assert size <= len(body) < size * 1.05
        assert json.loads(body)["messages"][-1]["role"] == "user"
