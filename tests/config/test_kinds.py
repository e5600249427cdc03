"""Route `kind`: chat (the default) or embeddings, in the schema, the typed model and the fallback rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.config import ConfigError, load_config

HEAD = """\
version: 1
upstreams:
  ollama: {type: ollama, base_url: http://127.0.0.1:11434}
routes:
"""


def load(tmp_path: Path, routes: str) -> list[tuple[str, str]]:
    file = tmp_path / "routes.yaml"
    file.write_text(HEAD + routes)
    return [(route.path, route.kind) for route in load_config(file, env={}).routes]


def problems(tmp_path: Path, routes: str) -> list[tuple[int, str, str]]:
    file = tmp_path / "routes.yaml"
    file.write_text(HEAD + routes)
    with pytest.raises(ConfigError) as info:
        load_config(file, env={})
    return [(p.line, p.json_path, p.message) for p in info.value.problems]


def test_kind_defaults_to_chat_and_takes_embeddings(tmp_path: Path) -> None:
    routes = (
        "  - {path: /chat/q, model: qwen3:32b, upstream: ollama}\n"
        "  - {path: /embed/nomic, model: nomic-embed-text, upstream: ollama, kind: embeddings}\n"
        "  - {path: /chat/r, model: qwen3:32b, upstream: ollama, kind: chat}\n"
    )
    assert load(tmp_path, routes) == [
        ("/chat/q", "chat"),
        ("/embed/nomic", "embeddings"),
        ("/chat/r", "chat"),
    ]


def test_an_unknown_kind_is_refused_where_it_is_written(tmp_path: Path) -> None:
    found = problems(tmp_path, "  - {path: /x, model: m, upstream: ollama, kind: rerank}\n")
    assert len(found) == 1 and found[0][0] == 5 and found[0][1] == "$.routes[0].kind", found
    assert "chat" in found[0][2] and "embeddings" in found[0][2]


def test_a_fallback_must_be_of_the_same_kind(tmp_path: Path) -> None:
    routes = (
        "  - {path: /embed/a, model: e, upstream: ollama, kind: embeddings, fallbacks: [/chat/b, /embed/c]}\n"
        "  - {path: /chat/b, model: m, upstream: ollama}\n"
        "  - {path: /embed/c, model: e2, upstream: ollama, kind: embeddings}\n"
    )
    assert problems(tmp_path, routes) == [
        (
            5,
            "$.routes[0].fallbacks[0]",
            "fallback /chat/b serves chat, route /embed/a serves embeddings: a fallback must be a route "
            "of the same kind",
        )
    ]
