"""Rules between entries: unique paths and names, known upstreams and fallbacks, the router's own paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.config import ConfigError, load_config
from router.config.semantics import semantic_problems
from router.config.source import parse_yaml

HEAD = """\
version: 1
upstreams:
  ollama: {type: ollama, base_url: http://127.0.0.1:11434}
  local: {type: openai, base_url: http://127.0.0.1:18080/v1}
routes:
"""


def problems(tmp_path: Path, routes: str) -> list[tuple[int, int, str, str]]:
    """(line, col, json path, message) of every problem of HEAD + `routes`, loaded from a real file."""
    file = tmp_path / "routes.yaml"
    file.write_text(HEAD + routes)
    with pytest.raises(ConfigError) as info:
        load_config(file, env={})
    return [(p.line, p.col, p.json_path, p.message) for p in info.value.problems]


def test_prefix_overlap_is_allowed(tmp_path: Path) -> None:
    file = tmp_path / "routes.yaml"
    file.write_text(
        HEAD
        + "  - {path: /chat, model: m, upstream: ollama, name: chat-any}\n"
        + "  - {path: /chat/qwen3, model: qwen3:32b, upstream: ollama}\n"
    )
    assert [route.path for route in load_config(file, env={}).routes] == ["/chat", "/chat/qwen3"]


@pytest.mark.parametrize(
    ("path", "owner"),
    [
        ("/v1", "/v1"),
        ("/v1/chat/completions", "/v1"),
        ("/V1/models", "/v1"),
        ("/admin", "/admin"),
        ("/admin/reload", "/admin"),
        ("/sessions/abc", "/sessions"),
    ],
)
def test_paths_inside_router_trees_are_reserved(tmp_path: Path, path: str, owner: str) -> None:
    assert problems(tmp_path, f"  - {{path: {path}, model: m, upstream: ollama}}\n") == [
        (
            6,
            12,
            "$.routes[0].path",
            f"path {path} is inside {owner}/, which the router serves itself; choose another path, "
            "e.g. /chat/<model>",
        )
    ]


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/status", "/events", "/metrics", "/debug", "/Metrics"]
)
def test_router_endpoints_are_reserved(tmp_path: Path, path: str) -> None:
    assert problems(tmp_path, f"  - {{path: {path}, model: m, upstream: ollama}}\n") == [
        (
            6,
            12,
            "$.routes[0].path",
            f"path {path} is one of the router's own endpoints; choose another path, e.g. /chat/<model>",
        )
    ]


def test_near_reserved_paths_are_fine(tmp_path: Path) -> None:
    file = tmp_path / "routes.yaml"
    file.write_text(
        HEAD
        + "  - {path: /v1x, model: m, upstream: ollama}\n  - {path: /status/x, model: m, upstream: ollama}\n"
    )
    assert len(load_config(file, env={}).routes) == 2


def test_root_path_is_reserved() -> None:
    doc = parse_yaml(HEAD + "  - {path: /, model: m, upstream: ollama}\n", "t.yaml")
    [problem] = semantic_problems(doc)
    assert (problem.line, problem.col) == (6, 12)
    assert (
        problem.message
        == "path / is one of the router's own endpoints; choose another path, e.g. /chat/<model>"
    )


def test_duplicate_paths_ignore_case(tmp_path: Path) -> None:
    routes = (
        "  - path: /chat/qwen3\n    model: a\n    upstream: ollama\n"
        "  - path: /Chat/Qwen3\n    name: other\n    model: b\n    upstream: ollama\n"
    )
    assert problems(tmp_path, routes) == [
        (
            9,
            11,
            "$.routes[1].path",
            "path /Chat/Qwen3 is already used by the route at line 6 (/chat/qwen3); paths are compared "
            "ignoring case "
            "and a trailing '/'",
        )
    ]


def test_duplicate_explicit_names(tmp_path: Path) -> None:
    routes = (
        "  - {path: /a, name: same, model: m, upstream: ollama}\n"
        "  - {path: /b, name: same, model: m, upstream: ollama}\n"
    )
    assert problems(tmp_path, routes) == [
        (
            7,
            22,
            "$.routes[1].name",
            "route name 'same' is already used by route /a at line 6; give one of them a unique `name:`",
        )
    ]


def test_duplicate_derived_names_point_at_the_path(tmp_path: Path) -> None:
    routes = (
        "  - {path: /gpu/chat, model: m, upstream: ollama}\n"
        "  - {path: /cpu/chat, model: m, upstream: local}\n"
    )
    assert problems(tmp_path, routes) == [
        (
            7,
            12,
            "$.routes[1].path",
            "route name 'chat' (taken from the last segment of its path) is already used by route "
            "/gpu/chat at line 6; "
            "give one of them a unique `name:`",
        )
    ]


def test_unknown_upstream_lists_the_declared_ones(tmp_path: Path) -> None:
    assert problems(tmp_path, "  - path: /a\n    model: m\n    upstream: olama\n") == [
        (8, 15, "$.routes[0].upstream", "unknown upstream 'olama'; declared upstreams: local, ollama")
    ]


def test_unknown_and_repeated_weighted_upstreams(tmp_path: Path) -> None:
    routes = (
        "  - path: /a\n    model: m\n    upstreams:\n"
        "      - {name: ollama}\n      - {name: gpu}\n      - {name: ollama, weight: 2}\n"
    )
    assert problems(tmp_path, routes) == [
        (
            10,
            16,
            "$.routes[0].upstreams[1].name",
            "unknown upstream 'gpu'; declared upstreams: local, ollama",
        ),
        (
            11,
            16,
            "$.routes[0].upstreams[2].name",
            "upstream 'ollama' is listed twice; give it one entry with a larger weight instead",
        ),
    ]


def test_fallbacks(tmp_path: Path) -> None:
    routes = (
        "  - path: /chat/a\n    model: m\n    upstream: ollama\n"
        "    fallbacks: [/chat/b, /chat/nope, /chat/A, /chat/b]\n"
        "  - path: /chat/b\n    model: m\n    upstream: local\n"
    )
    assert problems(tmp_path, routes) == [
        (
            9,
            26,
            "$.routes[0].fallbacks[1]",
            "fallback /chat/nope is not a route path in this file; known paths: /chat/b",
        ),
        (9, 38, "$.routes[0].fallbacks[2]", "route /chat/a lists itself as a fallback; remove it"),
        (9, 47, "$.routes[0].fallbacks[3]", "fallback /chat/b is listed twice; remove one"),
    ]


def test_fallback_to_a_later_route_is_fine(tmp_path: Path) -> None:
    file = tmp_path / "routes.yaml"
    file.write_text(
        HEAD
        + "  - {path: /chat/a, model: m, upstream: ollama, fallbacks: [/chat/b]}\n"
        + "  - {path: /chat/b, model: m, upstream: local, fallbacks: [/chat/a]}\n"
    )
    assert load_config(file, env={}).routes[0].fallbacks == ("/chat/b",)


def test_upstream_xor_upstreams_without_the_schema() -> None:
    """The schema already refuses these; the semantic check keeps the rule true for any caller."""
    both = parse_yaml(HEAD + "  - path: /a\n    upstream: ollama\n    upstreams: [{name: local}]\n", "t.yaml")
    assert [(p.line, p.col, p.json_path, p.message) for p in semantic_problems(both)] == [
        (8, 5, "$.routes[0].upstreams", "give either 'upstream' or 'upstreams', not both")
    ]
    neither = parse_yaml(HEAD + "  - path: /a\n    model: m\n", "t.yaml")
    assert [(p.line, p.col, p.json_path, p.message) for p in semantic_problems(neither)] == [
        (
            6,
            5,
            "$.routes[0]",
            "missing 'upstream' or 'upstreams': a route needs the upstream(s) serving its model",
        )
    ]


def test_all_semantic_problems_are_reported_together(tmp_path: Path) -> None:
    routes = (
        "  - {path: /metrics, model: m, upstream: nope}\n"
        "  - {path: /a, model: m, upstream: ollama, fallbacks: [/b]}\n"
    )
    assert [(line, col) for line, col, _, _ in problems(tmp_path, routes)] == [(6, 12), (6, 42), (7, 56)]


def test_a_route_that_resumes_needs_somewhere_to_go_on(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "  - {path: /chat/a, model: m, upstream: ollama, resume: {enabled: true}}\n"
        "  - {path: /chat/b, model: m, upstream: ollama, fallbacks: [/chat/c], resume: {enabled: true}}\n"
        "  - {path: /chat/c, model: m, upstream: local}\n",
    )
    assert [(line, path) for line, _, path, _ in found] == [
        (6, "$.routes[0].resume.enabled"),
        (7, "$.routes[1].resume.enabled"),
    ]
    assert "continuation" in found[1][3] and "/chat/b" in found[1][3]


def test_a_route_that_resumes_on_a_replica_or_a_declared_fallback_is_fine(tmp_path: Path) -> None:
    file = tmp_path / "routes.yaml"
    file.write_text(
        HEAD.replace("/v1}", "/v1, continuation: llama_cpp}")
        + "  - {path: /chat/a, model: m, upstreams: [{name: ollama}, {name: local}],\n"
        + "     resume: {enabled: true}}\n"
        + "  - {path: /chat/b, model: m, upstream: ollama, fallbacks: [/chat/c], resume: {enabled: true}}\n"
        + "  - {path: /chat/c, model: m, upstream: local}\n"
    )
    assert [route.policy.resume.enabled for route in load_config(file, env={}).routes] == [True, True, False]
