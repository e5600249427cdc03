"""`router validate`: a line per verdict or problem; exit codes 0 (valid), 1 (invalid), 2 (unreadable)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from router.config.validate_cli import validate_files

VALID = """\
version: 1
upstreams:
  ollama: {type: ollama, base_url: http://127.0.0.1:11434}
  local: {type: openai, base_url: http://127.0.0.1:18080/v1, api_key: "${KEY}"}
routes:
  - {path: /chat/qwen3, model: qwen3:32b, upstream: ollama}
"""


def run(paths: list[str], env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = validate_files(paths, out=out, env={"KEY": "k"} if env is None else env)
    return code, out.getvalue().splitlines()


def test_valid_files(tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(VALID)
    second.write_text(VALID + "  - {path: /chat/local, model: smollm2, upstream: local}\n")
    assert run([str(first), str(second)]) == (
        0,
        [f"{first}: ok (1 routes, 2 upstreams)", f"{second}: ok (2 routes, 2 upstreams)"],
    )


def test_invalid_file_prints_one_line_per_problem(tmp_path: Path) -> None:
    file = tmp_path / "routes.yaml"
    file.write_text(
        VALID.replace("version: 1", "version: 2") + "  - {path: /healthz, model: m, upstream: ollama}\n"
    )
    assert run([str(file)]) == (1, [f"{file}:1:10: must be 1, got 2 (at $.version)"])
    file.write_text(VALID + "  - {path: /healthz, model: m, upstream: gpu}\n")
    assert run([str(file)]) == (
        1,
        [
            f"{file}:7:12: path /healthz is one of the router's own endpoints; choose another path, e.g. "
            "/chat/<model> (at $.routes[1].path)",
            f"{file}:7:42: unknown upstream 'gpu'; declared upstreams: local, ollama "
            "(at $.routes[1].upstream)",
        ],
    )


def test_environment_is_used(tmp_path: Path) -> None:
    file = tmp_path / "routes.yaml"
    file.write_text(VALID)
    assert run([str(file)], env={}) == (
        1,
        [
            f"{file}:4:71: environment variable KEY is not set; export it or write ${{KEY:-default}} "
            "(at $.upstreams.local.api_key)"
        ],
    )


def test_unreadable_files_exit_2_and_others_are_still_checked(tmp_path: Path) -> None:
    good, bad, missing = tmp_path / "good.yaml", tmp_path / "bad.yaml", tmp_path / "missing.yaml"
    good.write_text(VALID)
    bad.write_text("version: [\n")
    code, lines = run([str(missing), str(bad), str(tmp_path), str(good)])
    assert code == 2
    assert lines[0] == f"{missing}: cannot read: No such file or directory"
    assert lines[1].startswith(f"{bad}:2:1: YAML syntax error: ")
    assert lines[2] == f"{tmp_path}: cannot read: Is a directory"
    assert lines[3] == f"{good}: ok (1 routes, 2 upstreams)"


def test_no_argument_checks_routes_yaml_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run([]) == (2, ["routes.yaml: cannot read: No such file or directory"])
    (tmp_path / "routes.yaml").write_text(VALID)
    assert run([]) == (0, ["routes.yaml: ok (1 routes, 2 upstreams)"])


def test_prints_to_stdout_by_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "routes.yaml"
    file.write_text(VALID)
    assert validate_files([str(file)], env={"KEY": "k"}) == 0
    assert capsys.readouterr().out == f"{file}: ok (1 routes, 2 upstreams)\n"
