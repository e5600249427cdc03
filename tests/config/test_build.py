"""From checked data to the frozen RouterConfig: defaults merged, names derived, references resolved."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from router.config import ConfigError, RouterConfig, load_config, load_config_text
from router.config.build import build_config
from router.config.models import HealthCheckPolicy, ResumePolicy, RoutePolicy, UpstreamConfig, UpstreamRef
from router.config.source import parse_yaml

EXAMPLE = """\
version: 1
server: {host: 127.0.0.1, port: 8080}
upstreams:
  ollama:
    type: ollama
    base_url: http://127.0.0.1:11434
  local:
    type: openai
    base_url: http://127.0.0.1:18080/v1
    api_key: ${LOCAL_API_KEY:-}
defaults:
  timeout: 120
  connect_timeout: 5
  stall_timeout: 60
  max_retries: 3
  max_tokens: 2048
  health_check: {enabled: true, interval: 30, timeout: 5, failure_threshold: 2, \
recovery_threshold: 3, recovery_interval: 10}
routes:
  - path: /chat/qwen3
    model: qwen3:32b
    upstream: ollama
    options: {num_ctx: 32768}
  - path: /chat/qwen2
    model: qwen2:7b
    upstream: ollama
  - path: /chat/local
    name: local
    model: smollm2
    upstream: local
    timeout: 30
"""


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> RouterConfig:
    file = tmp_path / "routes.yaml"
    file.write_text(text)
    return load_config(file, env=env or {})


def test_example_table(tmp_path: Path) -> None:
    config = load(tmp_path, EXAMPLE)
    assert config.source == str(tmp_path / "routes.yaml")
    assert config.sha256 == hashlib.sha256(EXAMPLE.encode()).hexdigest()
    assert config.server.host == "127.0.0.1" and config.server.port == 8080
    assert config.upstreams["ollama"] == UpstreamConfig(
        name="ollama", type="ollama", base_url="http://127.0.0.1:11434"
    )
    assert config.upstreams["local"].name == "local"
    assert config.upstreams["local"].api_key is None  # `${LOCAL_API_KEY:-}` is empty: no key
    qwen3, qwen2, local = config.routes
    assert (qwen3.name, qwen3.model, qwen3.upstreams) == ("qwen3", "qwen3:32b", (UpstreamRef(name="ollama"),))
    assert qwen3.options == {"num_ctx": 32768}
    assert qwen2.name == "qwen2" and qwen2.options == {}
    assert (local.name, local.model, local.upstreams) == ("local", "smollm2", (UpstreamRef(name="local"),))
    assert local.policy.timeout == 30
    assert qwen3.policy == RoutePolicy(
        timeout=120,
        connect_timeout=5,
        stall_timeout=60,
        max_retries=3,
        max_tokens=2048,
        health_check=HealthCheckPolicy(
            enabled=True,
            interval=30,
            timeout=5,
            failure_threshold=2,
            recovery_threshold=3,
            recovery_interval=10,
        ),
    )


def test_api_key_from_environment_is_a_secret(tmp_path: Path) -> None:
    config = load(tmp_path, EXAMPLE, env={"LOCAL_API_KEY": "sk-local"})
    assert config.upstreams["local"].api_key == SecretStr("sk-local")
    assert "sk-local" not in repr(config)


def test_route_keys_override_defaults_and_health_check_merges_key_by_key(tmp_path: Path) -> None:
    text = EXAMPLE.replace(
        "    timeout: 30\n",
        "    timeout: 30\n    max_tokens: null\n    health_check: {interval: 5, endpoint: /health}\n",
    )
    local = load(tmp_path, text).routes[2]
    assert local.policy.timeout == 30
    assert local.policy.max_tokens is None
    assert local.policy.stall_timeout == 60  # from defaults
    assert local.policy.heartbeat_interval == 15  # from the model, nobody set it
    assert local.policy.health_check == HealthCheckPolicy(
        enabled=True,
        interval=5,
        timeout=5,
        failure_threshold=2,
        recovery_threshold=3,
        recovery_interval=10,
        endpoint="/health",
    )


def test_without_defaults_the_model_defaults_apply(tmp_path: Path) -> None:
    text = (
        "version: 1\nupstreams: {u: {type: ollama, base_url: http://h}}\n"
        "routes: [{path: /a/b, model: m, upstream: u}]\n"
    )
    [route] = load(tmp_path, text).routes
    assert route.policy == RoutePolicy()
    assert route.name == "b"
    assert load(tmp_path, text).server.port == 8080


def test_weighted_upstreams_fallbacks_and_description(tmp_path: Path) -> None:
    text = EXAMPLE.replace(
        "    model: qwen2:7b\n    upstream: ollama\n",
        "    model: qwen2:7b\n    upstreams: [{name: ollama, weight: 3}, {name: local}]\n"
        "    fallbacks: [/chat/local]\n    description: small and fast\n",
    )
    qwen2 = load(tmp_path, text).routes[1]
    assert qwen2.upstreams == (UpstreamRef(name="ollama", weight=3), UpstreamRef(name="local", weight=1))
    assert qwen2.fallbacks == ("/chat/local",)
    assert qwen2.description == "small and fast"


def test_upstream_settings(tmp_path: Path) -> None:
    text = EXAMPLE.replace(
        "    base_url: http://127.0.0.1:11434\n",
        "    base_url: http://127.0.0.1:11434\n    headers: {X-Team: ml}\n    max_concurrency: 2\n"
        "    max_queue: 8\n    circuit_breaker: {failure_threshold: 3}\n",
    )
    ollama = load(tmp_path, text).upstreams["ollama"]
    assert ollama.headers == {"X-Team": "ml"}
    assert (ollama.max_concurrency, ollama.max_queue) == (2, 8)
    assert ollama.circuit_breaker.failure_threshold == 3
    assert ollama.circuit_breaker.open_seconds == 30


def test_result_is_frozen(tmp_path: Path) -> None:
    config = load(tmp_path, EXAMPLE)
    with pytest.raises(ValidationError):
        config.routes[0].policy.timeout = 1  # type: ignore[misc]


def test_load_config_text_hashes_the_text() -> None:
    config = load_config_text(EXAMPLE, "inline", env={})
    assert config.source == "inline"
    assert config.sha256 == hashlib.sha256(EXAMPLE.encode()).hexdigest()


def test_model_refusals_are_located_where_the_value_was_written() -> None:
    """The schema normally catches these first; build reports what pydantic refuses just as precisely."""
    text = (
        "version: 1\n"
        "server: {port: 70000}\n"
        "upstreams:\n"
        "  u: {type: ollama, base_url: http://h, max_connections: 0}\n"
        "defaults:\n"
        "  timeout: -1\n"
        "  health_check: {interval: 0}\n"
        "routes:\n"
        "  - {path: /a, model: m, upstream: u}\n"
        "  - {path: /b, model: m, upstream: u, stall_timeout: 0, health_check: {timeout: -2}}\n"
    )
    with pytest.raises(ConfigError) as info:
        build_config(parse_yaml(text, "t.yaml"), "")
    assert [str(p) for p in info.value.problems] == [
        "t.yaml:2:16: Input should be less than or equal to 65535, got 70000 (at $.server.port)",
        "t.yaml:4:58: Input should be greater than or equal to 1, got 0 (at $.upstreams.u.max_connections)",
        # Both routes inherit the bad defaults: reported once, where they were written.
        "t.yaml:6:12: Input should be greater than 0, got -1 (at $.defaults.timeout)",
        "t.yaml:7:28: Input should be greater than 0, got 0 (at $.defaults.health_check.interval)",
        "t.yaml:10:54: Input should be greater than 0, got 0 (at $.routes[1].stall_timeout)",
        "t.yaml:10:81: Input should be greater than 0, got -2 (at $.routes[1].health_check.timeout)",
    ]


def test_single_upstream_refusal_points_at_the_upstream_key() -> None:
    text = (
        "version: 1\nupstreams: {u: {type: ollama, base_url: http://h}}\n"
        "routes:\n  - {path: /a, model: m, upstream: 5}\n"
    )
    with pytest.raises(ConfigError) as info:
        build_config(parse_yaml(text, "t.yaml"), "")
    assert [str(p) for p in info.value.problems] == [
        "t.yaml:4:36: Input should be a valid string, got 5 (at $.routes[0].upstream)"
    ]


def test_resume_merges_key_by_key_and_continuation_defaults_by_type(tmp_path: Path) -> None:
    text = EXAMPLE.replace("  max_tokens: 2048\n", "  max_tokens: 2048\n  resume: {enabled: true}\n").replace(
        "    timeout: 30\n", "    timeout: 30\n    resume: {max_resumes: 3}\n"
    )
    key = "    api_key: ${LOCAL_API_KEY:-}\n"
    text = text.replace(key, key + "    continuation: vllm\n")
    config = load(tmp_path, text)
    qwen3, _, local = config.routes
    assert qwen3.policy.resume == ResumePolicy(enabled=True, max_resumes=1)
    assert local.policy.resume == ResumePolicy(enabled=True, max_resumes=3)
    assert config.upstreams["ollama"].continues == "ollama"
    assert config.upstreams["local"].continues == "vllm"
    plain = load(tmp_path, EXAMPLE)
    assert plain.routes[0].policy.resume == ResumePolicy(enabled=False, max_resumes=1)
    assert plain.upstreams["local"].continues == "none"  # an OpenAI-compatible server must declare it


@pytest.mark.parametrize(
    ("resume", "where"),
    [
        ("    resume: {max_resumes: 6}\n", "$.routes[2].resume.max_resumes"),
        ("    resume: {max_resumes: 0}\n", "$.routes[2].resume.max_resumes"),
        ("    resume: {enabled: true, again: 1}\n", "$.routes[2].resume"),
    ],
)
def test_resume_is_bounded(tmp_path: Path, resume: str, where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, EXAMPLE.replace("    timeout: 30\n", "    timeout: 30\n" + resume))
    assert where in str(caught.value)
