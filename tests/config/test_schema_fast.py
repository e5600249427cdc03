"""The fast schema check (jsonschema-rs) never passes what jsonschema refuses, and a table it passes loads
exactly as before; what it refuses is worded by jsonschema, as always."""

from __future__ import annotations

import re
from typing import Any

import jsonschema_rs
import pytest

from router.config import ConfigError, load_config_text
from router.config import schema as schema_module
from router.config.schema import _for_rust, load_schema
from router.config.source import parse_yaml
from tests.support.router_server import table


def patterns(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                found.add(value)
            else:
                found |= patterns(value)
    elif isinstance(node, list):
        for item in node:
            found |= patterns(item)
    return found


PROBES = [text for code in range(0x3100) for text in (f"a{chr(code)}b", chr(code), f"ab{chr(code)}")]
PROBES += ["http://h/p\n", "abc\n", "/chat/x\n", "sha256:" + "0" * 64 + "\n", "/a/../b", "/a/./b", "/./"]


@pytest.mark.parametrize("pattern", sorted(patterns(load_schema())))
def test_no_pattern_is_more_lenient_for_the_fast_validator(pattern: str) -> None:
    [rust] = patterns(_for_rust({"pattern": pattern}))
    fast = jsonschema_rs.validator_for({"type": "string", "pattern": rust})
    python = re.compile(pattern)
    lenient = [text for text in PROBES if fast.is_valid(text) and not python.search(text)]
    assert lenient == []


BAD_ALIASES = ["a\x1fb", "a b", "a\u3000b", "a\x85b"]


@pytest.mark.parametrize("alias", BAD_ALIASES)
def test_a_refused_value_is_refused_with_and_without_the_fast_check(
    alias: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstreams = {"u": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}}
    text = table(upstreams, [{"path": "/chat/a", "model": "m", "upstream": "u", "aliases": [alias]}])
    with pytest.raises(ConfigError) as fast:
        load_config_text(text, "t.yaml", env={})
    monkeypatch.setattr(schema_module, "_valid_at_once", lambda data: False)
    with pytest.raises(ConfigError) as slow:
        load_config_text(text, "t.yaml", env={})
    assert [str(p) for p in fast.value.problems] == [str(p) for p in slow.value.problems]
    assert "an alias has no spaces" in str(fast.value)


def test_the_fast_check_passes_a_valid_table_and_not_an_invalid_one() -> None:
    upstreams = {"u": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}}
    routes = [
        {"path": f"/chat/r{i}", "model": f"m{i}", "upstream": "u", "aliases": [f"a{i}"]} for i in range(20)
    ]
    valid = parse_yaml(table(upstreams, routes), "t.yaml")
    assert schema_module._valid_at_once(valid.data) is True
    routes[7]["timeout"] = "soon"
    assert schema_module._valid_at_once(parse_yaml(table(upstreams, routes), "t.yaml").data) is False
