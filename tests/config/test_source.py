"""Reading YAML: positions of keys and values, and every way a file can fail before its content is judged."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.config import ConfigError, Problem, load_config
from router.config.problems import format_json_path
from router.config.source import parse_yaml


def located(text: str) -> list[tuple[int, int, str, str]]:
    """(line, col, json path, message) of each problem parse_yaml reports for `text`."""
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "t.yaml")
    return [(p.line, p.col, p.json_path, p.message) for p in info.value.problems]


def test_positions_of_values_and_keys() -> None:
    doc = parse_yaml(
        "version: 1\nroutes:\n  - path: /chat/a\n    options: {num_ctx: 8}\n  - path: /chat/b\n",
        "t.yaml",
    )
    assert doc.data == {
        "version": 1,
        "routes": [{"path": "/chat/a", "options": {"num_ctx": 8}}, {"path": "/chat/b"}],
    }
    assert doc.locate(()) == (1, 1)
    assert doc.locate(("version",)) == (1, 10)
    assert doc.locate(("routes",)) == (3, 3)
    assert doc.locate(("routes", 0)) == (3, 5)
    assert doc.locate(("routes", 0, "path")) == (3, 11)
    assert doc.locate(("routes", 0, "path"), at_key=True) == (3, 5)
    assert doc.locate(("routes", 0, "options", "num_ctx")) == (4, 24)
    assert doc.locate(("routes", 1, "path")) == (5, 11)


def test_missing_path_falls_back_to_nearest_ancestor() -> None:
    doc = parse_yaml("routes:\n  - path: /chat/a\n", "t.yaml")
    assert doc.locate(("routes", 0, "model")) == (2, 5)
    assert doc.locate(("nothing", "here")) == (1, 1)


def test_problem_line_format_and_json_path_notation() -> None:
    problem = Problem("routes.yaml", 3, 7, "something is wrong", "$.routes[1].upstream")
    assert str(problem) == "routes.yaml:3:7: something is wrong (at $.routes[1].upstream)"
    assert format_json_path(()) == "$"
    assert format_json_path(("routes", 1, "upstream")) == "$.routes[1].upstream"
    assert format_json_path(("upstreams", "gpu.box", "base_url")) == '$.upstreams["gpu.box"].base_url'
    assert format_json_path(("upstreams", "gpu-box")) == "$.upstreams.gpu-box"


def test_config_error_sorts_problems_and_joins_them_by_line() -> None:
    late = Problem("f", 9, 1, "late")
    early = Problem("f", 2, 4, "early")
    error = ConfigError([late, early])
    assert error.problems == [early, late]
    assert str(error) == "f:2:4: early (at $)\nf:9:1: late (at $)"


def test_syntax_error_is_located_at_its_mark() -> None:
    assert located("version: 1\nroutes: [1, 2\nupstreams: {}\n") == [
        (3, 10, "$", "YAML syntax error: while parsing a flow sequence; expected ',' or ']', but got ':'")
    ]


def test_tab_indentation_is_located() -> None:
    [(line, col, path, message)] = located("version: 1\n\tupstreams: {}\n")
    assert (line, col, path) == (2, 1, "$")
    assert "found character '\\t' that cannot start any token" in message


def test_duplicate_key_is_refused_at_the_second_key() -> None:
    text = "version: 1\nroutes:\n  - path: /a\n    model: m\n    model: n\n"
    assert located(text) == [
        (
            5,
            5,
            "$.routes[0].model",
            "duplicate key 'model' (first given at line 4); YAML would silently keep only the last one, "
            "so remove one of them",
        )
    ]


def test_duplicate_top_level_key() -> None:
    [(line, col, path, _)] = located("version: 1\nroutes: []\nversion: 1\n")
    assert (line, col, path) == (3, 1, "$.version")


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n"])
def test_empty_file(text: str) -> None:
    assert located(text) == [
        (1, 1, "$", "the file is empty; a routing table needs version, upstreams and routes")
    ]


def test_top_level_must_be_a_mapping() -> None:
    assert located("# comment\n- path: /a\n") == [
        (2, 1, "$", "the top level must be a mapping (key: value), not a list")
    ]
    assert located("\n  just text\n") == [
        (2, 3, "$", "the top level must be a mapping (key: value), not a scalar ('just text')")
    ]


def test_several_documents_are_refused() -> None:
    [(line, col, _, message)] = located("version: 1\n---\nversion: 1\n")
    assert (line, col) == (2, 1)
    assert "expected a single document" in message


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("!secret x", "!secret"),
        ("!!binary aGk=", "tag:yaml.org,2002:binary"),
        ("!!python/name:os.system x", "tag:yaml.org,2002:python/name:os.system"),
    ],
)
def test_unsupported_scalar_tags(value: str, tag: str) -> None:
    assert located(f"version: 1\nkey: {value}\n") == [
        (2, 6, "$.key", f"unsupported YAML tag {tag}; write a plain value")
    ]


def test_unsupported_collection_tag() -> None:
    assert located("version: 1\nkey: !!set {a: null}\n") == [
        (2, 6, "$.key", "unsupported YAML tag tag:yaml.org,2002:set; write a plain mapping or list")
    ]


def test_invalid_explicitly_tagged_scalar() -> None:
    [(line, col, path, message)] = located("version: 1\nport: !!int eighty\n")
    assert (line, col, path) == (2, 7, "$.port")
    assert message.startswith("invalid value for !!int: 'eighty'")


def test_non_scalar_key() -> None:
    assert located("version: 1\n? [a, b]\n: 1\n") == [(2, 3, "$", "a key must be a plain string, not a list")]


def test_recursive_alias() -> None:
    assert located("version: 1\nloop: &x [1, *x]\n") == [
        (
            2,
            7,
            "$.loop[1]",
            "an alias refers to a mapping or list that contains it; YAML cycles are not allowed",
        )
    ]


def test_scalars_keep_yaml_types_but_timestamps_stay_text() -> None:
    doc = parse_yaml("a: 1\nb: 1.5\nc: true\nd: null\ne: '1'\nf: 2024-01-02\n1: x\n", "t.yaml")
    assert doc.data == {"a": 1, "b": 1.5, "c": True, "d": None, "e": "1", "f": "2024-01-02", "1": "x"}


def test_merge_keys_are_resolved_explicit_keys_win() -> None:
    text = "routes:\n  - &base {path: /a, model: m, timeout: 5}\n  - <<: *base\n    path: /b\n"
    doc = parse_yaml(text, "t.yaml")
    assert doc.data["routes"][1] == {"path": "/b", "model": "m", "timeout": 5}
    assert doc.locate(("routes", 1, "path")) == (4, 11)
    assert doc.locate(("routes", 1, "timeout")) == (2, 41)  # where the merged value was written
    assert doc.locate(("routes", 1)) == (3, 5)


def test_merge_of_a_scalar_is_refused() -> None:
    assert located("a: &x 1\nb:\n  <<: *x\n") == [
        (1, 4, "$.b", "'<<' merges only mappings, e.g. <<: *defaults")
    ]


def test_unprintable_character_is_located(tmp_path: Path) -> None:
    file = tmp_path / "routes.yaml"
    file.write_text("version: 1\nkey: a\x01b\n")
    with pytest.raises(ConfigError) as info:
        load_config(file)
    [problem] = info.value.problems
    assert (problem.file, problem.line, problem.col) == (str(file), 2, 7)
    assert problem.message.startswith("cannot read YAML: special characters are not allowed")


def test_invalid_utf8_is_located(tmp_path: Path) -> None:
    file = tmp_path / "routes.yaml"
    file.write_bytes(b"version: 1\nname: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(file)
    assert [str(p) for p in info.value.problems] == [
        f"{file}:2:10: the file is not valid UTF-8; save it as UTF-8 (at $)"
    ]


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    file = tmp_path / "routes.yaml"
    file.write_bytes("\ufeffversion: 1\nkey: [\n".encode())
    with pytest.raises(ConfigError) as info:
        load_config(file)
    assert (info.value.problems[0].line, info.value.problems[0].col) == (3, 1)


def test_unreadable_file_raises_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")


SAME_EITHER_WAY = [
    'version: 1\nname: café\nroutes:\n  - {path: /a, model: "é中", timeout: 5}\n',
    "routes:\n  - &base {path: /a, model: m, health_check: {interval: 5, timeout: 2}}\n"
    "  - <<: *base\n    path: /b\n    health_check: {interval: 9}\n",
    "d: &d {x: {p: 1, q: 2}, y: 1}\ne: &e {x: {r: 1}, z: 2}\nm:\n  <<: [*d, *e]\n  x: {s: 1}\n",
    "t: &t {a: {b: {c: 1}}}\ns: &s\n  <<: *t\n  a: {z: 1}\nm:\n  <<: [*s, *t]\n  a: {y: 2}\n",
    "a: 2024-01-02\nb: 1.5\nc: ~\nd: !!int 7\ne: [1, {f: yes}]\n",
]


@pytest.mark.parametrize("text", SAME_EITHER_WAY)
def test_libyaml_and_pure_python_give_the_same_data_and_positions(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import router.config.source as source

    assert source._FAST_LOADER is not None  # PyYAML with libyaml, as installed
    fast = parse_yaml(text, "t.yaml")
    monkeypatch.setattr(source, "_FAST_LOADER", None)
    slow = parse_yaml(text, "t.yaml")
    assert (fast.data, dict(fast.values), dict(fast.keys)) == (slow.data, dict(slow.values), dict(slow.keys))


def test_an_override_of_a_merged_key_forgets_only_that_key_s_positions() -> None:
    text = "d: &d {h: {i: 1, t: 2}, m: 3}\nr:\n  <<: *d\n  h: {i: 4}\n"
    doc = parse_yaml(text, "t.yaml")
    assert doc.data["r"] == {"h": {"i": 4}, "m": 3}
    assert doc.locate(("r", "h", "i")) == (4, 10)  # the explicit value, not the merged one
    assert doc.locate(("r", "h", "t")) == (4, 6)  # gone with the merged mapping: its nearest ancestor
    assert doc.locate(("r", "m")) == (1, 28)  # merged, kept
