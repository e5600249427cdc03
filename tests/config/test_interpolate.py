"""`${VAR}` / `${VAR:-default}` / `$$` in string values, and where an unset variable is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.config import ConfigError, load_config
from router.config.interpolate import expand

TABLE = """\
version: 1
upstreams:
  local:
    type: openai
    base_url: ${LOCAL_URL:-http://127.0.0.1:18080/v1}
    api_key: ${LOCAL_API_KEY}
    headers: {X-Team: "${TEAM}-${ENV:-dev}"}
routes:
  - path: /chat/local
    model: smollm2
    upstream: local
    description: costs $$5 per $1 of ${TEAM}
    options: {stop: ["${STOP:-END}"], num_ctx: 4096}
"""


def write(tmp_path: Path, text: str) -> Path:
    file = tmp_path / "routes.yaml"
    file.write_text(text)
    return file


@pytest.mark.parametrize(
    ("text", "result"),
    [
        ("plain", "plain"),
        ("${A}", "a"),
        ("x${A}y${B}z", "xaybz"),
        ("${MISSING:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),  # like the shell: empty counts as unset for `:-`
        ("${EMPTY}", ""),
        ("${MISSING:-}", ""),
        ("${A:-unused}", "a"),
        ("${MISSING:-a:b/c d}", "a:b/c d"),
        ("$$", "$"),
        ("$${A}", "${A}"),
        ("$$$${A}", "$${A}"),
        ("$$${A}", "$a"),
        ("cost: $5 $HOME", "cost: $5 $HOME"),  # a lone $ is text
        ("end$", "end$"),
    ],
)
def test_expand(text: str, result: str) -> None:
    assert expand(text, {"A": "a", "B": "b", "EMPTY": ""}) == (result, [])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${NOPE}", "environment variable NOPE is not set; export it or write ${NOPE:-default}"),
        ("${A", "unterminated '${A'; close it with '}', or write $$ for a literal $"),
        ("${}", "invalid reference '${}'"),
        ("${1A}", "invalid reference '${1A}'"),
        ("${A-x}", "invalid reference '${A-x}'"),
        ("${A:-${B}}", "invalid reference '${A:-${B}'"),
    ],
)
def test_expand_errors(text: str, message: str) -> None:
    _, errors = expand(text, {"A": "a", "B": "b"})
    assert len(errors) == 1
    assert errors[0].startswith(message)


def test_values_are_interpolated_everywhere(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, TABLE), env={"LOCAL_API_KEY": "sk-1", "TEAM": "ml"})
    upstream = config.upstreams["local"]
    assert upstream.base_url == "http://127.0.0.1:18080/v1"
    assert upstream.api_key is not None and upstream.api_key.get_secret_value() == "sk-1"
    assert upstream.headers == {"X-Team": "ml-dev"}
    route = config.routes[0]
    assert route.description == "costs $5 per $1 of ml"
    assert route.options == {"stop": ["END"], "num_ctx": 4096}


def test_unset_variable_is_located_at_its_scalar(tmp_path: Path) -> None:
    file = write(tmp_path, TABLE)
    with pytest.raises(ConfigError) as info:
        load_config(file, env={})
    assert [str(p) for p in info.value.problems] == [
        f"{file}:6:14: environment variable LOCAL_API_KEY is not set; export it or write "
        "${LOCAL_API_KEY:-default} (at $.upstreams.local.api_key)",
        f"{file}:7:23: environment variable TEAM is not set; export it or write ${{TEAM:-default}} "
        "(at $.upstreams.local.headers.X-Team)",
        f"{file}:12:18: environment variable TEAM is not set; export it or write ${{TEAM:-default}} "
        "(at $.routes[0].description)",
    ]


def test_malformed_reference_is_located(tmp_path: Path) -> None:
    file = write(tmp_path, "version: 1\nupstreams:\n  u: {type: openai, base_url: 'http://h/${HOST'}\n")
    with pytest.raises(ConfigError) as info:
        load_config(file, env={})
    [problem] = info.value.problems
    assert (problem.line, problem.col, problem.json_path) == (3, 31, "$.upstreams.u.base_url")
    assert problem.message.startswith("unterminated '${HOST'")


def test_keys_and_non_strings_are_left_alone(tmp_path: Path) -> None:
    text = TABLE.replace("num_ctx: 4096", '"${KEY}": 4096')
    config = load_config(write(tmp_path, text), env={"LOCAL_API_KEY": "k", "TEAM": "t", "KEY": "nope"})
    assert config.routes[0].options == {"stop": ["END"], "${KEY}": 4096}


def test_interpolation_results_are_strings(tmp_path: Path) -> None:
    text = "version: 1\nserver: {port: '${PORT}'}\nupstreams: {u: {type: ollama, base_url: http://h}}\n"
    text += "routes: [{path: /a, model: m, upstream: u}]\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={"PORT": "9000"})
    [problem] = info.value.problems
    assert (problem.line, problem.col, problem.message) == (2, 16, 'expected an integer, got string "9000"')


def test_environment_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_API_KEY", "from-os")
    monkeypatch.setenv("TEAM", "os-team")
    config = load_config(write(tmp_path, TABLE))
    key = config.upstreams["local"].api_key
    assert key is not None and key.get_secret_value() == "from-os"
