"""The `auth` and `logging` sections: typed settings, and located problems that never quote a key."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from router.config import ConfigError, RouterConfig, load_config
from router.config.build import key_digest
from router.config.models import AuthSettings, LoggingSettings

BASE = """\
version: 1
upstreams:
  ollama: {type: ollama, base_url: "http://127.0.0.1:11434"}
routes:
  - {path: /chat/qwen3, model: "qwen3:32b", upstream: ollama}
  - {path: /chat/qwen2, model: "qwen2:7b", upstream: ollama}
"""
ALICE = "alice-0123456789abcdef"
BOB_DIGEST = hashlib.sha256(b"bob-0123456789abcdef").hexdigest()
ENV = {"ALICE_KEY": ALICE, "ADMIN_KEY": "admin-0123456789abcdef"}


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> RouterConfig:
    file = tmp_path / "routes.yaml"
    file.write_text(text)
    return load_config(file, env=ENV if env is None else env)


def problems(tmp_path: Path, text: str) -> list[tuple[int, int, str, str]]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return [(p.line, p.col, p.json_path, p.message) for p in info.value.problems]


def test_defaults_are_open_and_json_to_stderr(tmp_path: Path) -> None:
    config = load(tmp_path, BASE)
    assert config.auth == AuthSettings()
    assert config.auth.api_keys == () and not config.auth.public_status
    assert config.logging == LoggingSettings(level="info", format="json", file=None)


def test_keys_from_the_environment_or_as_digests(tmp_path: Path) -> None:
    text = (
        BASE
        + f"""\
auth:
  api_keys:
    - {{name: alice, key: "${{ALICE_KEY}}", routes: [/chat/qwen3], rate_limit_per_minute: 60}}
    - {{name: bob, key: "sha256:{BOB_DIGEST}"}}
  admin_keys:
    - {{name: ops, key: "${{ADMIN_KEY}}"}}
  public_status: true
logging: {{level: debug, format: text, file: /var/log/router.log}}
"""
    )
    config = load(tmp_path, text)
    alice, bob = config.auth.api_keys
    assert alice.name == "alice" and alice.key.get_secret_value() == ALICE
    assert alice.routes == ("/chat/qwen3",) and alice.rate_limit_per_minute == 60
    assert bob.routes is None and bob.rate_limit_per_minute is None
    assert key_digest(bob.key.get_secret_value()) == hashlib.sha256(b"bob-0123456789abcdef").digest()
    assert key_digest(ALICE) == hashlib.sha256(ALICE.encode()).digest()
    assert config.auth.admin_keys[0].name == "ops" and config.auth.public_status
    assert config.logging == LoggingSettings(level="debug", format="text", file="/var/log/router.log")
    assert ALICE not in repr(config), "keys are SecretStr: never in a repr"


def test_bad_keys_are_located_and_never_quoted(tmp_path: Path) -> None:
    text = (
        BASE
        + """\
auth:
  api_keys:
    - {name: short, key: "tiny-key"}
    - {name: badhash, key: "sha256:nothex-0123456789"}
    - {name: "bad name", key: "${ALICE_KEY}"}
    - {name: unknown, key: "${ALICE_KEY}", rate_limit_per_minute: 0, colour: red}
"""
    )
    found = problems(tmp_path, text)
    assert (9, 26, "$.auth.api_keys[0].key", "must be at least 16 characters long") in found
    assert any(p[2] == "$.auth.api_keys[1].key" and "64 hex digits" in p[3] for p in found)
    assert any(p[2] == "$.auth.api_keys[2].name" and "key name" in p[3] for p in found)
    assert any(p[2] == "$.auth.api_keys[3].rate_limit_per_minute" for p in found)
    assert any(p[2] == "$.auth.api_keys[3].colour" and "unknown key" in p[3] for p in found)
    assert all("tiny-key" not in p[3] and ALICE not in p[3] for p in found)


def test_duplicates_and_unknown_routes(tmp_path: Path) -> None:
    digest = hashlib.sha256(ALICE.encode()).hexdigest()
    text = (
        BASE
        + f"""\
auth:
  api_keys:
    - {{name: alice, key: "${{ALICE_KEY}}", routes: [/chat/QWEN3, /chat/nope]}}
    - {{name: alice, key: "sha256:{digest}"}}
  admin_keys:
    - {{name: ops, key: "${{ALICE_KEY}}"}}
"""
    )
    found = problems(tmp_path, text)
    assert found == [
        (
            9,
            64,
            "$.auth.api_keys[0].routes[1]",
            "/chat/nope is not a route path in this file; known: /chat/qwen3, /chat/qwen2",
        ),
        (10, 14, "$.auth.api_keys[1].name", "key name 'alice' is already used in auth.api_keys"),
        (10, 26, "$.auth.api_keys[1].key", "this key is already listed at line 9; list it once"),
        (12, 24, "$.auth.admin_keys[0].key", "this key is already listed at line 9; list it once"),
    ]


def test_an_unset_key_variable_is_a_located_problem(tmp_path: Path) -> None:
    text = BASE + 'auth:\n  api_keys:\n    - {name: alice, key: "${ALICE_KEY}"}\n'
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env={})
    [problem] = info.value.problems
    assert (problem.line, problem.json_path) == (9, "$.auth.api_keys[0].key")
    assert "ALICE_KEY is not set" in problem.message


def test_logging_values_are_checked(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE + "logging: {level: verbose, format: xml, file: ''}\n")
    assert [(p[0], p[2]) for p in found] == [
        (7, "$.logging.level"),
        (7, "$.logging.format"),
        (7, "$.logging.file"),
    ]
    assert "is not one of" in found[0][3]
