"""The shipped routing tables stay valid: the root routes.yaml and every table that declares the schema."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from router.config import load_config

REPO = Path(__file__).resolve().parents[2]


class AnyEnvironment(Mapping[str, str]):
    """Every variable is set: example tables may reference secrets that only deployments have."""

    def __getitem__(self, name: str) -> str:
        return f"placeholder-{name.lower()}"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def schema_tables() -> list[Path]:
    """routes.yaml plus each *.yaml under deploy/ and tests/ whose first line names routes.schema.json."""
    found = [REPO / "routes.yaml"]
    for folder in ("deploy", "tests"):
        for file in sorted((REPO / folder).rglob("*.yaml")):
            with file.open(encoding="utf-8", errors="replace") as stream:
                if "routes.schema.json" in stream.readline():
                    found.append(file)
    return found


@pytest.mark.parametrize("file", schema_tables(), ids=lambda file: str(file.relative_to(REPO)))
def test_table_is_valid(file: Path) -> None:
    if not file.exists():
        pytest.skip(f"{file} is absent")
    config = load_config(file, env=AnyEnvironment())
    assert config.routes


def test_root_table_declares_the_schema_and_serves_the_embedded_model() -> None:
    file = REPO / "routes.yaml"
    assert file.read_text().splitlines()[0] == "# yaml-language-server: $schema=./schemas/routes.schema.json"
    config = load_config(file, env={})
    assert [route.path for route in config.routes] == ["/chat/qwen3", "/chat/qwen2", "/chat/local"]
    local = config.upstreams["local"]
    assert (local.type, local.base_url, local.api_key) == ("openai", "http://127.0.0.1:18080/v1", None)
    assert config.routes[2].model == "smollm2"


def test_reload_takes_milliseconds() -> None:
    file = REPO / "routes.yaml"
    load_config(file, env={})  # the schema is compiled once per process; do not time that
    start = time.perf_counter()
    for _ in range(20):
        load_config(file, env={})
    assert (time.perf_counter() - start) / 20 < 0.05
