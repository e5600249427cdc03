"""`router serve` end to end: every line it writes is the table's log format, its own and uvicorn's alike."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.router_server import table


def test_serve_writes_json_lines_and_warns_without_keys(tmp_path: Path) -> None:
    file = tmp_path / "routes.yaml"
    file.write_text(
        table(
            upstreams={"u": {"type": "ollama", "base_url": "http://127.0.0.1:9"}},  # nothing listens there
            routes=[{"path": "/chat/m", "model": "m", "upstream": "u"}],
            defaults={"max_retries": 0},
            server={"port": 0},
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "router", "serve", "--config", str(file), "--no-watch"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 20
        port = None
        while port is None and time.monotonic() < deadline:
            found = [re.search(r"http://127\.0\.0\.1:(\d+)", line) for line in list(lines)]
            port = next((int(m.group(1)) for m in found if m), None)
            time.sleep(0.05)
        assert port is not None, "".join(lines)
        response = httpx.post(
            f"http://127.0.0.1:{port}/chat/m",
            json={"messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert response.status_code == 503
        deadline = time.monotonic() + 5
        while not any('"event":"request"' in line for line in list(lines)) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        reader.join(timeout=5)
    parsed: list[dict[str, Any]] = [json.loads(line) for line in lines if line.strip()]
    warnings = [p for p in parsed if p["level"] == "warning" and "no auth.api_keys" in p["event"]]
    assert warnings, lines
    [request] = [p for p in parsed if p["event"] == "request"]
    assert (request["status"], request["outcome"], request["route"]) == (503, "upstream_error", "/chat/m")
    assert any(p.get("logger", "").startswith("uvicorn") for p in parsed), "uvicorn's messages too"
