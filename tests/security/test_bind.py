"""Without client keys the router only listens on loopback, unless the table says otherwise explicitly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from router.config import load_config_text
from router.security import bind_refusal, is_loopback, unauthenticated_warning
from tests.support.router_server import table

OPEN = table(
    upstreams={"u": {"type": "ollama", "base_url": "http://127.0.0.1:9"}},
    routes=[{"path": "/chat/m", "model": "m", "upstream": "u"}],
)


def with_top(**top: object) -> str:
    return table(
        upstreams={"u": {"type": "ollama", "base_url": "http://127.0.0.1:9"}},
        routes=[{"path": "/chat/m", "model": "m", "upstream": "u"}],
        **top,
    )


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("router.example", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_refuses_non_loopback_without_keys() -> None:
    config = load_config_text(OPEN, "routes.yaml")
    refusal = bind_refusal(config, "0.0.0.0")
    assert refusal is not None
    assert "auth.api_keys" in refusal and "server.allow_unauthenticated" in refusal
    assert bind_refusal(config, "127.0.0.1") is None
    assert unauthenticated_warning(config, "127.0.0.1") is not None, "open routes are warned about anyway"


def test_keys_or_an_explicit_opt_in_allow_any_address() -> None:
    allowed = load_config_text(with_top(server={"allow_unauthenticated": True}), "routes.yaml")
    assert bind_refusal(allowed, "0.0.0.0") is None
    keyed = load_config_text(
        with_top(auth={"api_keys": [{"name": "a", "key": "${K}"}]}), "routes.yaml", env={"K": "k" * 20}
    )
    assert bind_refusal(keyed, "0.0.0.0") is None
    assert unauthenticated_warning(keyed, "0.0.0.0") is None
    admin_only = load_config_text(
        with_top(auth={"admin_keys": [{"name": "a", "key": "${K}"}]}), "routes.yaml", env={"K": "k" * 20}
    )
    assert bind_refusal(admin_only, "0.0.0.0") is not None, "admin keys do not protect the model routes"


@pytest.mark.parametrize("where", ["--host", "file"])
def test_router_serve_exits_1_with_a_clear_message(tmp_path: Path, where: str) -> None:
    file = tmp_path / "routes.yaml"
    file.write_text(with_top(server={"host": "0.0.0.0"}) if where == "file" else OPEN)
    args = [sys.executable, "-m", "router", "serve", "--config", str(file)]
    if where == "--host":
        args += ["--host", "0.0.0.0"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "refusing to listen on 0.0.0.0" in done.stderr
    assert "auth.api_keys" in done.stderr
