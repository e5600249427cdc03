"""A burst of new clients and the process's open-file limit: `server.listen_backlog` and the soft limit.

The backlog is checked the way a burst meets it: the router process is stopped (SIGSTOP, as a busy
event loop would be), clients connect, and only as many handshakes complete as the queue holds; the
others' SYNs are dropped by the kernel. Then the process continues and serves every queued one.
"""

from __future__ import annotations

import logging
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from router.config import load_config_text
from router.server import listen_backlog
from tests.fakes import FakeOllama
from tests.support.router_server import ServeProcess, free_port, table

BURST = 40


def write_table(tmp_path: Path, fake: FakeOllama, **server: object) -> str:
    path = tmp_path / "routes.yaml"
    path.write_text(
        table(
            upstreams={"u": {"type": "ollama", "base_url": fake.base_url}},
            routes=[{"path": "/chat/m", "model": "qwen3:32b", "upstream": "u"}],
            server=server,
        )
    )
    return str(path)


def connected_while_stopped(pid: int, port: int, attempts: int) -> list[socket.socket]:
    """Connect `attempts` times while `pid` is stopped; the sockets whose handshake completed at once."""
    done: list[socket.socket] = []
    pending: list[socket.socket] = []
    os.kill(pid, signal.SIGSTOP)
    try:
        for _ in range(attempts):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            # loopback answers in the same system call: a queued SYN is answered at once, a dropped one
            # waits for its retransmission, a second later
            _, writable, _ = select.select([], [sock], [], 0.3)
            if writable and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                done.append(sock)
            else:
                pending.append(sock)
    finally:
        os.kill(pid, signal.SIGCONT)
        for sock in pending:
            sock.close()
    return done


def serve_queued(url: str, socks: list[socket.socket]) -> None:
    """Each queued connection is served once the process runs again; then the router still answers."""
    for sock in socks:
        sock.setblocking(True)
        sock.settimeout(10)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert sock.recv(64).startswith(b"HTTP/1.1 200"), "a queued connection was not served"
        sock.close()
    assert httpx.get(url + "/healthz").status_code == 200


@pytest.mark.skipif(sys.platform != "linux", reason="the accept queue's behaviour is Linux's")
def test_a_small_backlog_drops_a_burst_and_the_default_queues_it(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    small = 4
    with ServeProcess(write_table(tmp_path, fake_ollama, listen_backlog=small)) as router:
        queued = connected_while_stopped(router.process.pid, router.port, BURST)
        # Linux queues backlog + 1 completed connections; a little slack for the kernel's accounting
        assert 1 <= len(queued) <= small + 3, (
            f"{len(queued)} handshakes completed with listen_backlog {small}"
        )
        serve_queued(router.url, queued)
    with ServeProcess(write_table(tmp_path, fake_ollama)) as router:
        queued = connected_while_stopped(router.process.pid, router.port, BURST)
        assert len(queued) == BURST, f"only {len(queued)} of {BURST} handshakes completed with the default"
        serve_queued(router.url, queued)


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="reads /proc/PID/limits")
def test_router_serve_raises_its_soft_open_file_limit_to_the_hard_one(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    config = write_table(tmp_path, fake_ollama, max_connections=64)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the hard open-file limit here is {hard}")
    port = free_port()

    def low_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, 2048))

    process = subprocess.Popen(
        [sys.executable, "-m", "router", "serve", "--config", config, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=low_soft_limit,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "router serve exited"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "router serve did not come up"
            time.sleep(0.05)
        line = next(
            x for x in Path(f"/proc/{process.pid}/limits").read_text().splitlines() if "open files" in x
        )
        assert line.split()[3:5] == ["2048", "2048"], line
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert (soft, hard) == resource.getrlimit(resource.RLIMIT_NOFILE)  # the test's own are untouched


def test_a_backlog_beyond_somaxconn_is_cut_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    somaxconn = tmp_path / "somaxconn"
    somaxconn.write_text("1024\n")
    monkeypatch.setattr("router.server.SOMAXCONN", str(somaxconn))
    text = table(
        upstreams={"u": {"type": "ollama", "base_url": "http://127.0.0.1:9"}},
        routes=[{"path": "/chat/m", "model": "m", "upstream": "u"}],
        server={"listen_backlog": 8192},
    )
    with caplog.at_level(logging.WARNING, logger="router.server"):
        assert listen_backlog(load_config_text(text, "t.yaml")) == 1024
    assert "net.core.somaxconn" in caplog.text
    caplog.clear()
    default = load_config_text(text.replace("8192", "512"), "t.yaml")
    assert listen_backlog(default) == 512 and not caplog.text
    monkeypatch.setattr("router.server.SOMAXCONN", str(tmp_path / "absent"))
    assert listen_backlog(load_config_text(text, "t.yaml")) == 8192  # no /proc: the kernel cuts it itself
