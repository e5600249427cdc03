"""Schema violations: each kind of error gets a plain message at the exact line and column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from router.config import ConfigError, load_config
from router.config.schema import SCHEMA_PATH, load_schema
from tests.support.tables import MINIMAL_TABLE

BASE = MINIMAL_TABLE


def problems(tmp_path: Path, text: str) -> list[tuple[int, int, str, str]]:
    """(line, col, json path, message) of every problem in `text`, loaded from a real file."""
    file = tmp_path / "routes.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(file, env={})
    assert all(p.file == str(file) for p in info.value.problems)
    return [(p.line, p.col, p.json_path, p.message) for p in info.value.problems]


def test_base_table_is_valid(tmp_path: Path) -> None:
    file = tmp_path / "routes.yaml"
    file.write_text(BASE)
    assert load_config(file, env={}).routes[0].path == "/chat/qwen3"


def test_unknown_key_names_the_key_suggests_and_lists_allowed(tmp_path: Path) -> None:
    text = BASE + "    timout: 30\n"
    [(line, col, path, message)] = problems(tmp_path, text)
    assert (line, col, path) == (10, 5, "$.routes[0].timout")
    assert message.startswith(
        "unknown key 'timout' (did you mean 'timeout'?); allowed keys: aliases, connect_timeout, "
    )
    assert "upstreams" in message and "health_check" in message


def test_several_unknown_keys_each_get_a_problem(tmp_path: Path) -> None:
    text = BASE.replace("version: 1\n", "version: 1\ncolour: {}\nzzz: 1\n")
    allowed = ", ".join(sorted(load_schema()["properties"]))
    assert "routes, server" in allowed
    assert problems(tmp_path, text) == [
        (2, 1, "$.colour", f"unknown key 'colour'; allowed keys: {allowed}"),
        (3, 1, "$.zzz", f"unknown key 'zzz'; allowed keys: {allowed}"),
    ]


def test_missing_required_keys_are_reported_at_the_mapping(tmp_path: Path) -> None:
    text = BASE.replace("    model: qwen3:32b\n", "")
    assert problems(tmp_path, text) == [(7, 5, "$.routes[0]", "missing required key 'model'")]
    assert problems(tmp_path, "server: {}\n") == [
        (1, 1, "$", "missing required key 'version'"),
        (1, 1, "$", "missing required key 'upstreams'"),
        (1, 1, "$", "missing required key 'routes'"),
    ]


def test_upstream_needs_type_and_base_url(tmp_path: Path) -> None:
    text = BASE.replace("    type: ollama\n", "")
    assert problems(tmp_path, text) == [(4, 5, "$.upstreams.ollama", "missing required key 'type'")]


def test_wrong_type(tmp_path: Path) -> None:
    assert problems(tmp_path, BASE + "    timeout: 30s\n") == [
        (10, 14, "$.routes[0].timeout", 'expected a number, got string "30s"')
    ]
    assert problems(tmp_path, BASE + "    max_tokens: lots\n") == [
        (10, 17, "$.routes[0].max_tokens", 'expected an integer or null, got string "lots"')
    ]
    assert problems(tmp_path, BASE + "    options: [1]\n") == [
        (10, 14, "$.routes[0].options", "expected a mapping, got list [...]")
    ]


def test_enum(tmp_path: Path) -> None:
    assert problems(tmp_path, BASE.replace("type: ollama", "type: olama")) == [
        (4, 11, "$.upstreams.ollama.type", '"olama" is not one of: "ollama", "openai"')
    ]


def test_version_const(tmp_path: Path) -> None:
    assert problems(tmp_path, BASE.replace("version: 1", "version: 2")) == [
        (1, 10, "$.version", "must be 1, got 2")
    ]


@pytest.mark.parametrize(
    ("line", "col", "path", "message"),
    [
        ("server: {port: 70000}", 16, "$.server.port", "must be at most 65535, got 70000"),
        ("server: {port: -1}", 16, "$.server.port", "must be at least 0, got -1"),
        ("server: {max_body_bytes: 10}", 26, "$.server.max_body_bytes", "must be at least 1024, got 10"),
        ("defaults: {timeout: 0}", 21, "$.defaults.timeout", "must be greater than 0, got 0"),
        ("defaults: {max_retries: -1}", 25, "$.defaults.max_retries", "must be at least 0, got -1"),
        (
            "defaults: {health_check: {jitter: 2}}",
            35,
            "$.defaults.health_check.jitter",
            "must be at most 1, got 2",
        ),
    ],
)
def test_numeric_bounds(tmp_path: Path, line: str, col: int, path: str, message: str) -> None:
    assert problems(tmp_path, BASE + line + "\n") == [(10, col, path, message)]


def test_empty_collections(tmp_path: Path) -> None:
    text = "version: 1\nupstreams: {}\nroutes: []\n"
    assert problems(tmp_path, text) == [
        (2, 12, "$.upstreams", "needs at least 1 entry"),
        (3, 9, "$.routes", "needs at least 1 entry"),
    ]


def test_empty_model(tmp_path: Path) -> None:
    assert problems(tmp_path, BASE.replace("model: qwen3:32b", "model: ''")) == [
        (8, 12, "$.routes[0].model", "must not be empty")
    ]


@pytest.mark.parametrize("path", ["/chat/qwen3/", "chat", "/chat//x", "/chat/../x", "/chat/a b", "/"])
def test_route_path_pattern(tmp_path: Path, path: str) -> None:
    [(line, col, json_path, message)] = problems(tmp_path, BASE.replace("/chat/qwen3", f"'{path}'"))
    assert (line, col, json_path) == (7, 11, "$.routes[0].path")
    assert message.startswith(
        f"invalid value \"{path}\": a route path starts with '/', has no trailing slash"
    )


def test_base_url_pattern(tmp_path: Path) -> None:
    assert problems(tmp_path, BASE.replace("http://127.0.0.1:11434", "127.0.0.1:11434")) == [
        (
            5,
            15,
            "$.upstreams.ollama.base_url",
            'invalid value "127.0.0.1:11434": base_url is an http:// or https:// URL without query or '
            "fragment, "
            "e.g. http://127.0.0.1:11434",
        )
    ]


def test_invalid_names_are_reported_at_the_key(tmp_path: Path) -> None:
    text = BASE.replace("  ollama:\n", "  ollama:\n    headers: {'bad header': x}\n")
    text = text.replace("upstreams:\n", "upstreams:\n  -gpu: {type: openai, base_url: 'http://gpu/v1'}\n")
    assert problems(tmp_path, text) == [
        (
            3,
            3,
            '$.upstreams["-gpu"]',
            "invalid name '-gpu': an upstream name starts with a letter or digit and uses only letters, "
            "digits and . _ -",
        ),
        (
            5,
            15,
            '$.upstreams.ollama.headers["bad header"]',
            "invalid name 'bad header': not a valid HTTP header name",
        ),
    ]


def test_upstream_and_upstreams_are_exclusive(tmp_path: Path) -> None:
    both = BASE + "    upstreams: [{name: ollama}]\n"
    assert problems(tmp_path, both) == [
        (10, 5, "$.routes[0].upstreams", "give only one of 'upstream' or 'upstreams', not both")
    ]
    neither = BASE.replace("    upstream: ollama\n", "")
    assert problems(tmp_path, neither) == [
        (
            7,
            5,
            "$.routes[0]",
            "missing 'upstream' or 'upstreams': a route needs the upstream(s) serving its model",
        )
    ]


def test_weighted_upstreams(tmp_path: Path) -> None:
    text = BASE.replace("upstream: ollama", "upstreams: [{name: ollama, weight: 0}, {weight: 2}]")
    assert problems(tmp_path, text) == [
        (9, 40, "$.routes[0].upstreams[0].weight", "must be at least 1, got 0"),
        (9, 44, "$.routes[0].upstreams[1]", "missing required key 'name'"),
    ]


def test_unique_cors_origins(tmp_path: Path) -> None:
    text = BASE + "server: {cors_allowed_origins: [http://a, http://a]}\n"
    assert problems(tmp_path, text) == [
        (10, 32, "$.server.cors_allowed_origins", "has duplicate entries; list each one once")
    ]


def test_problems_come_in_file_order(tmp_path: Path) -> None:
    text = BASE.replace("version: 1", "version: 3").replace("type: ollama", "type: x") + "    timeout: -1\n"
    assert [(line, col) for line, col, _, _ in problems(tmp_path, text)] == [(1, 10), (4, 11), (10, 14)]


def test_schema_is_a_valid_2020_12_schema_and_cached() -> None:
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    assert schema is load_schema()
    assert schema == json.loads(SCHEMA_PATH.read_text())


def _objects(node: Any, where: str = "#") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        if "properties" in node:
            found.append((where, node))
        for key, value in node.items():
            found += _objects(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _objects(value, f"{where}/{index}")
    return found


def test_every_object_is_closed_and_every_property_described() -> None:
    schema = load_schema()
    for where, node in _objects(schema):
        assert node.get("additionalProperties") is False, where
        for name, prop in node["properties"].items():
            assert prop.get("description"), f"{where}/properties/{name}"


def test_policy_keys_match_the_models() -> None:
    from router.config.models import (
        CircuitBreakerPolicy,
        HealthCheckPolicy,
        ResumePolicy,
        RoutePolicy,
        ServerSettings,
        UpstreamConfig,
    )

    defs = load_schema()["$defs"]
    assert set(defs["defaults"]["properties"]) == set(RoutePolicy.model_fields)
    assert set(RoutePolicy.model_fields) <= set(defs["route"]["properties"])
    assert set(defs["health_check"]["properties"]) == set(HealthCheckPolicy.model_fields)
    assert set(defs["resume"]["properties"]) == set(ResumePolicy.model_fields)
    assert set(defs["circuit_breaker"]["properties"]) == set(CircuitBreakerPolicy.model_fields)
    assert set(defs["server"]["properties"]) == set(ServerSettings.model_fields)
    assert set(defs["upstream"]["properties"]) | {"name"} == set(UpstreamConfig.model_fields)
