"""Hypothesis against the config loader: any text gives a RouterConfig or a ConfigError whose problems
each carry a line and column, never another exception.

Three sources of input: arbitrary text (mostly not YAML at all), arbitrary YAML structures, and valid
tables with one value somewhere replaced by something else, which exercise the schema, the semantic
checks and the model builder the most.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.config import ConfigError, RouterConfig, load_config_text

FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
ENV = {"KEY": "k" * 20, "EMPTY": "", "HOST": "127.0.0.1"}

VALID: dict[str, Any] = {
    "version": 1,
    "server": {"host": "127.0.0.1", "port": 8080, "cors_allowed_origins": ["http://localhost:3000"]},
    "auth": {
        "api_keys": [
            {"name": "alice", "key": "${KEY}", "routes": ["/chat/qwen3"], "rate_limit_per_minute": 60},
            {"name": "bob", "key": "sha256:" + "ab" * 32},
        ],
        "admin_keys": [{"name": "ops", "key": "admin-0123456789abcdef"}],
        "public_status": False,
    },
    "logging": {"level": "info", "format": "json", "file": None},
    "upstreams": {
        "ollama": {
            "type": "ollama",
            "base_url": "http://${HOST}:11434",
            "circuit_breaker": {"open_seconds": 5},
        },
        "local": {"type": "openai", "base_url": "http://127.0.0.1:18080/v1", "api_key": "${EMPTY:-}"},
    },
    "defaults": {"timeout": 30, "max_retries": 2, "health_check": {"enabled": True, "interval": 10}},
    "routes": [
        {"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama", "fallbacks": ["/chat/local"]},
        {"path": "/chat/local", "model": "smollm2", "upstreams": [{"name": "local", "weight": 2}]},
    ],
}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["${KEY}", "${UNSET}", "${", "$$", "/chat/x", "sha256:zz", "http://h", "0", "yes"])
)
structures = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12) | scalars, inner, max_size=4)
    ),
    max_leaves=25,
)


def load(text: str) -> None:
    try:
        config = load_config_text(text, "fuzz.yaml", env=ENV)
    except ConfigError as error:
        assert error.problems, "a ConfigError names at least one problem"
        for problem in error.problems:
            assert problem.file == "fuzz.yaml"
            assert problem.line >= 1 and problem.col >= 1, problem
            assert problem.message, problem
    else:
        assert isinstance(config, RouterConfig)


def test_the_valid_table_loads() -> None:
    config = load_config_text(yaml.safe_dump(VALID), "fuzz.yaml", env=ENV)
    assert [r.path for r in config.routes] == ["/chat/qwen3", "/chat/local"]


@FUZZ
@given(text=st.text(max_size=300))
def test_arbitrary_text(text: str) -> None:
    load(text)


@FUZZ
@given(data=structures)
def test_arbitrary_yaml_structures(data: Any) -> None:
    load(yaml.safe_dump(data, allow_unicode=True))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside the table (mapping keys and list indices)."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


PATHS = _paths(VALID)


@FUZZ
@given(where=st.sampled_from(PATHS), value=structures, drop=st.booleans())
def test_valid_tables_with_one_value_changed(where: tuple[Any, ...], value: Any, drop: bool) -> None:
    data = copy.deepcopy(VALID)
    parent = data
    for step in where[:-1]:
        parent = parent[step]
    if drop:
        del parent[where[-1]]
    else:
        parent[where[-1]] = value
    load(yaml.safe_dump(data, allow_unicode=True))


@FUZZ
@given(cut=st.integers(min_value=0, max_value=2000), junk=st.text(max_size=5))
def test_truncated_and_corrupted_text(cut: int, junk: str) -> None:
    text = yaml.safe_dump(VALID)
    cut %= len(text)
    load(text[:cut] + junk + text[cut:])
    load(text[:cut])
