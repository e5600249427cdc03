"""Deployment files that cannot run here (no Docker engine, no systemd as PID 1) checked statically, and
the two commands of the README checked for what CI relies on."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
UNIT = ROOT / "deploy" / "systemd" / "router.service"
SCRIPTS = [
    ROOT / "deploy" / "local" / "setup.sh",
    ROOT / "deploy" / "local" / "run.sh",
    ROOT / "tests" / "run.sh",
    ROOT / ".ci" / "run",
    ROOT / "tests" / "perf" / "run.sh",
    ROOT / "tests" / "perf" / "workers.sh",
]
QUICK_START = ["bash deploy/local/run.sh", "bash tests/run.sh"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, arguments = line.partition(" ")
            pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def test_dockerfile_runs_as_a_non_root_user() -> None:
    stage = final_stage()
    assert stage[0][1].startswith("python:3.11-slim")
    users = [args for name, args in stage if name == "USER"]
    assert users, "the final stage must switch to a non-root USER"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_dockerfile_starts_the_server_on_the_mounted_table() -> None:
    stage = dict(final_stage())
    assert json.loads(stage["ENTRYPOINT"]) == ["router"]
    assert json.loads(stage["CMD"]) == ["serve", "--config", "/etc/router/routes.yaml", "--host", "0.0.0.0"]
    assert "/healthz" in stage["HEALTHCHECK"] and "urllib" in stage["HEALTHCHECK"]


def test_dockerfile_copies_only_what_exists_and_is_not_ignored() -> None:
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for name, args in dockerfile_instructions():
        if name == "COPY" and not args.startswith("--from"):
            *sources, _ = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert source.rstrip("/") in allowed, f"COPY {source}: excluded by Dockerfile.dockerignore"


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_systemd_unit_reloads_with_sighup_and_is_hardened() -> None:
    unit = unit_settings()
    assert unit["Type"] == ["simple"]
    assert unit["ExecStart"][0].endswith("router serve --config /etc/router/routes.yaml")
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["Restart"] == ["on-failure"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "DynamicUser": "yes",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
    }.items():
        assert unit[key] == [value], key
    assert "/etc/router" in unit["ReadOnlyPaths"][0].split()


def test_systemd_unit_passes_systemd_analyze() -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    done = subprocess.run(
        [analyze, "verify", str(UNIT)], capture_output=True, text=True, timeout=60, check=False
    )
    # The router is not installed under /opt/router on a development machine; anything else is a finding.
    findings = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if line.strip() and "/opt/router/bin/router is not executable" not in line
    ]
    assert not findings, "\n".join(findings)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_scripts_parse_and_are_executable(script: Path) -> None:
    assert os.access(script, os.X_OK), f"chmod +x {script.relative_to(ROOT)}"
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed: deploy/local/setup.sh installs it")
    done = subprocess.run(
        [shellcheck, *map(str, SCRIPTS)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_ci_entry_runs_the_readme_test_command() -> None:
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "set -euo pipefail" in lines
    assert lines[-1] == "exec bash tests/run.sh"


def test_test_command_lints_type_checks_and_refuses_an_empty_run() -> None:
    script = (ROOT / "tests" / "run.sh").read_text()
    for step in (
        "deploy/local/setup.sh",
        "ruff check router tests",
        "ruff format --check router tests",
        "mypy",
    ):
        assert step in script
    assert re.search(r"pytest \"\$@\"", script)
    # pytest exits 5 when it collected nothing; CI must not pass on that.
    assert "status == 5" in script


def readme_quick_start() -> list[str]:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^## Quick start\n(.*?)(?=^## )", text, flags=re.M | re.S)
    assert match, "README.md needs a '## Quick start' section followed by another section"
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", match.group(1), flags=re.M | re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_readme_quick_start_is_exactly_the_two_commands() -> None:
    assert readme_quick_start() == QUICK_START
    for command in QUICK_START:
        assert (ROOT / command.split()[-1]).is_file()


def test_apt_packages_include_what_the_browser_tests_need() -> None:
    listed = (ROOT / "deploy" / "local" / "apt-packages.txt").read_text().splitlines()
    packages = {line.split("#")[0].strip() for line in listed} - {""}
    assert {"chromium", "shellcheck"} <= packages


def test_model_path_names_the_shipped_gguf_file() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "local" / "model_path.py")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000


def test_setup_is_quick_and_quiet_when_already_done() -> None:
    stamp = ROOT / ".venv" / ".setup-stamp"
    if not stamp.exists():
        pytest.skip("set-up is not done for this checkout: run deploy/local/setup.sh (tests/run.sh does)")
    subprocess.run(["bash", str(ROOT / "deploy" / "local" / "setup.sh")], capture_output=True, timeout=900)
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(ROOT / "deploy" / "local" / "setup.sh")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""
    assert time.monotonic() - started < 10
