"""What the command-line agent tests share: where the agents are installed, and a trap that proves they
reach nothing but the router.

deploy/local/setup.sh installs the pinned agents from the npm registry into `.tools/npm` (git-ignored);
`CLAUDE_BIN` / `CODEX_BIN` point the tests at another copy. A missing binary fails the test rather than
skipping it: the suite is meant to run them (tests/run.sh runs setup.sh first).

The agents must only talk to 127.0.0.1. Their environment routes every other connection through
`ProxyTrap`, a loopback listener that records who tried and answers nothing, and `NO_PROXY` exempts
loopback; a test asserts the trap stayed empty.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NPM_BIN = REPO / ".tools" / "npm" / "node_modules" / ".bin"


def agent_binary(name: str, env_var: str) -> str:
    """The agent's program: `$env_var`, else setup.sh's `.tools/npm` copy, else `name` on PATH."""
    found = os.environ.get(env_var) or (str(NPM_BIN / name) if (NPM_BIN / name).exists() else None)
    found = found or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run deploy/local/setup.sh (it installs it into {NPM_BIN})")
    return found


class ProxyTrap:
    """A loopback TCP listener used as the agents' HTTP(S) proxy: each connection is recorded (its first
    line, e.g. `CONNECT host:443 HTTP/1.1`) and closed, so no traffic leaves the machine."""

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        """The proxy URL to put in HTTPS_PROXY and friends."""
        return f"http://127.0.0.1:{self._server.getsockname()[1]}"

    def env(self) -> dict[str, str]:
        """Proxy variables (both spellings) sending all but loopback traffic to the trap."""
        names = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")
        proxies = {n: self.url for n in names} | {n.lower(): self.url for n in names}
        loopback = "127.0.0.1,localhost,::1"
        return proxies | {"NO_PROXY": loopback, "no_proxy": loopback}

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    first = conn.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
                except OSError:
                    first = "<nothing sent>"
                self.attempts.append(first)

    def __enter__(self) -> ProxyTrap:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.close()


def base_env(home: Path) -> dict[str, str]:
    """A minimal environment for an agent: PATH, a fresh HOME, no inherited credentials or proxies."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}
