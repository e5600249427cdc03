"""The `sessions:` section of the routing table: defaults, values, and refusals located in the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.config import ConfigError, load_config
from router.config.models import SessionSettings
from router.config.schema import load_schema
from tests.support.tables import MINIMAL_TABLE

BASE = MINIMAL_TABLE


def load(tmp_path: Path, text: str) -> SessionSettings:
    file = tmp_path / "routes.yaml"
    file.write_text(text)
    return load_config(file, env={}).sessions


def problems(tmp_path: Path, text: str) -> list[tuple[int, int, str, str]]:
    file = tmp_path / "routes.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(file, env={})
    return [(p.line, p.col, p.json_path, p.message) for p in info.value.problems]


def test_defaults_without_a_sessions_section(tmp_path: Path) -> None:
    sessions = load(tmp_path, BASE)
    assert sessions == SessionSettings()
    assert (sessions.enabled, sessions.max_sessions, sessions.max_messages) == (True, 1000, 200)
    assert (sessions.max_chars, sessions.idle_ttl) == (200_000, 1800.0)


def test_values_from_the_file(tmp_path: Path) -> None:
    text = BASE + "sessions:\n  max_sessions: 50\n  max_messages: 20\n  max_chars: 5000\n  idle_ttl: 90\n"
    sessions = load(tmp_path, text)
    assert (sessions.max_sessions, sessions.max_messages, sessions.max_chars, sessions.idle_ttl) == (
        50,
        20,
        5000,
        90.0,
    )
    assert load(tmp_path, BASE + "sessions: {enabled: false}\n").enabled is False


@pytest.mark.parametrize(
    ("line", "path", "message"),
    [
        ("sessions: {max_sessions: 0}", "$.sessions.max_sessions", "must be at least 1, got 0"),
        ("sessions: {max_messages: 1}", "$.sessions.max_messages", "must be at least 2, got 1"),
        ("sessions: {idle_ttl: 0}", "$.sessions.idle_ttl", "must be greater than 0, got 0"),
    ],
)
def test_bounds_are_reported_where_written(tmp_path: Path, line: str, path: str, message: str) -> None:
    [(row, _, where, text)] = problems(tmp_path, BASE + line + "\n")
    assert (row, where, text) == (10, path, message)


def test_unknown_key_is_named(tmp_path: Path) -> None:
    [(row, col, where, text)] = problems(tmp_path, BASE + "sessions:\n  max_session: 5\n")
    assert (row, col, where) == (11, 3, "$.sessions.max_session")
    assert "did you mean 'max_sessions'" in text


def test_schema_and_model_agree() -> None:
    definition = load_schema()["$defs"]["sessions"]
    assert set(definition["properties"]) == set(SessionSettings.model_fields)
    for name, field in SessionSettings.model_fields.items():
        assert definition["properties"][name]["default"] == field.default, name
