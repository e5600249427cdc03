"""Checks that need the whole table, which a JSON Schema cannot express.

A schema sees one value at a time; these rules relate entries to each other (unique paths and names,
references to upstreams and to other routes) or to the router itself (paths it serves on its own). They
run on data that already matches the schema, so they can trust its shape.
"""

from __future__ import annotations

from typing import Any

from router.config.common import default_route_name, normalise_path
from router.config.models import default_continuation
from router.config.problems import ConfigError, JsonPath, Problem, in_file_order
from router.config.reserved import RESERVED_PATHS, RESERVED_ROUTE_NAMES, reserved_owner
from router.config.source import Document

__all__ = ["check_semantics", "normalise_path", "semantic_problems"]  # normalise_path: older importers


def check_semantics(doc: Document) -> None:
    """Raise ConfigError if the table is inconsistent."""
    problems = semantic_problems(doc)
    if problems:
        raise ConfigError(problems)


def semantic_problems(doc: Document) -> list[Problem]:
    """Every cross-entry problem of a schema-valid document, in file order."""
    routes: list[dict[str, Any]] = doc.data.get("routes", [])
    upstreams = sorted(doc.data.get("upstreams", {}))
    problems: list[Problem] = []
    paths: dict[str, int] = {}
    names: dict[str, int] = {}
    for index, route in enumerate(routes):
        problems += _path_problems(doc, index, route, paths)
        problems += _name_problems(doc, index, route, names, routes)
        problems += _upstream_problems(doc, index, route, upstreams)
    for index, route in enumerate(routes):
        problems += _fallback_problems(doc, index, route, paths, routes)
    problems += _alias_problems(doc, routes)
    problems += _resume_problems(doc, routes, paths)
    return in_file_order(problems)


def _continues(doc: Document, upstream: str) -> bool:
    """Whether an upstream (by name) can continue an answer: its `continuation`, else its type's default."""
    entry = doc.data.get("upstreams", {}).get(upstream)
    if not isinstance(entry, dict):
        return False
    return entry.get("continuation", default_continuation(entry.get("type"))) != "none"


def _replicas(route: dict[str, Any]) -> list[str]:
    if "upstream" in route:
        return [str(route["upstream"])]
    return [str(ref.get("name")) for ref in route.get("upstreams", []) if isinstance(ref, dict)]


def _resume_problems(doc: Document, routes: list[dict[str, Any]], paths: dict[str, int]) -> list[Problem]:
    """A route that turns `resume` on itself needs somewhere a broken stream can go on: another replica
    or a fallback whose upstream can continue an answer (`continuation` not `none`). Turned on through
    `defaults:` it is not checked: routes without such a place then simply never resume."""
    problems = []
    for index, route in enumerate(routes):
        resume = route.get("resume")
        if not isinstance(resume, dict) or resume.get("enabled") is not True:
            continue
        own = _replicas(route)
        places = [name for name in own if _continues(doc, name)] if len(own) > 1 else []
        for target in route.get("fallbacks", []):
            fallback = paths.get(normalise_path(str(target)))
            if fallback is not None:
                places += [name for name in _replicas(routes[fallback]) if _continues(doc, name)]
        if not places:
            problems.append(
                doc.problem(
                    ("routes", index, "resume", "enabled"),
                    f"route {route['path']} resumes broken streams, but has no other replica nor fallback "
                    "on an upstream that can continue an answer: add one, or declare the `continuation` of "
                    "an OpenAI-compatible upstream (vllm, llama_cpp); `none` is the default of type openai",
                )
            )
    return problems


def _alias_problems(doc: Document, routes: list[dict[str, Any]]) -> list[Problem]:
    """An alias selects one route: it may not be claimed twice, nor be another route's name or model
    (then a model name would select two routes, and which one answers would depend on the file's order)."""
    owners: dict[str, tuple[int, str]] = {}  # a name or model -> (its route, "name" or "model")
    for index, route in enumerate(routes):
        if "model" in route:
            owners.setdefault(str(route["model"]), (index, "model"))
    for index, route in enumerate(routes):
        owners[str(route.get("name") or default_route_name(str(route.get("path", ""))))] = (index, "name")
    problems: list[Problem] = []
    claimed: dict[str, int] = {}
    for index, route in enumerate(routes):
        for j, alias in enumerate(route.get("aliases", ())):
            where = ("routes", index, "aliases", j)
            owner = owners.get(alias)
            if owner is not None and owner[0] != index:
                other = routes[owner[0]]["path"]
                problems.append(
                    doc.problem(
                        where,
                        f"alias '{alias}' is the {owner[1]} of route {other} at line {_line(doc, owner[0])}; "
                        "an alias must name no other route: remove it or rename one of them",
                    )
                )
            elif alias in claimed and claimed[alias] != index:
                first = claimed[alias]
                problems.append(
                    doc.problem(
                        where,
                        f"alias '{alias}' is already claimed by route {routes[first]['path']} at line "
                        f"{_line(doc, first)}; an alias selects one route: keep it on one of them",
                    )
                )
            else:
                claimed.setdefault(alias, index)
    return problems


def _line(doc: Document, index: int) -> int:
    return doc.locate(("routes", index))[0]


def _path_problems(doc: Document, index: int, route: dict[str, Any], paths: dict[str, int]) -> list[Problem]:
    path = str(route["path"])
    where = ("routes", index, "path")
    normal = normalise_path(path)
    owner = reserved_owner(path)
    if owner is not None and owner not in RESERVED_PATHS:
        return [
            doc.problem(
                where,
                f"path {path} is inside {owner}, which the router serves itself; "
                "choose another path, e.g. /chat/<model>",
            )
        ]
    if owner is not None:
        return [
            doc.problem(
                where,
                f"path {path} is one of the router's own endpoints; choose another path, e.g. /chat/<model>",
            )
        ]
    if normal in paths:
        first = paths[normal]
        other = doc.data["routes"][first]["path"]
        return [
            doc.problem(
                where,
                f"path {path} is already used by the route at line {_line(doc, first)} "
                f"({other}); paths are compared ignoring case and a trailing '/'",
            )
        ]
    paths[normal] = index
    return []


def _name_problems(
    doc: Document, index: int, route: dict[str, Any], names: dict[str, int], routes: list[dict[str, Any]]
) -> list[Problem]:
    explicit = "name" in route
    name = str(route["name"]) if explicit else default_route_name(str(route["path"]))
    # A derived name on a reserved path is already reported with the path.
    if name in RESERVED_ROUTE_NAMES and (explicit or reserved_owner(str(route["path"])) is None):
        where = ("routes", index, "name" if explicit else "path")
        return [
            doc.problem(
                where,
                f"route name '{name}' is taken by the router's own /v1/chat/completions operation; "
                "give the route another `name:`",
            )
        ]
    if name not in names:
        names[name] = index
        return []
    first = names[name]
    where = ("routes", index, "name" if explicit else "path")
    derived = "" if explicit else " (taken from the last segment of its path)"
    return [
        doc.problem(
            where,
            f"route name '{name}'{derived} is already used by route {routes[first]['path']} "
            f"at line {_line(doc, first)}; give one of them a unique `name:`",
        )
    ]


def _upstream_problems(doc: Document, index: int, route: dict[str, Any], known: list[str]) -> list[Problem]:
    here = ("routes", index)
    known_list = ", ".join(known) if known else "(none declared)"
    if "upstream" in route and "upstreams" in route:
        return [
            doc.problem((*here, "upstreams"), "give either 'upstream' or 'upstreams', not both", at_key=True)
        ]
    refs: list[tuple[JsonPath, Any]]
    if "upstream" in route:
        refs = [((*here, "upstream"), route["upstream"])]
    elif "upstreams" in route:
        refs = [((*here, "upstreams", j, "name"), ref["name"]) for j, ref in enumerate(route["upstreams"])]
    else:
        return [
            doc.problem(
                here, "missing 'upstream' or 'upstreams': a route needs the upstream(s) serving its model"
            )
        ]
    problems = []
    seen: set[str] = set()
    for where, name in refs:
        if name not in known:
            problems.append(
                doc.problem(where, f"unknown upstream '{name}'; declared upstreams: {known_list}")
            )
        elif name in seen:
            problems.append(
                doc.problem(
                    where,
                    f"upstream '{name}' is listed twice; give it one entry with a larger weight instead",
                )
            )
        seen.add(name)
    return problems


def _fallback_problems(
    doc: Document, index: int, route: dict[str, Any], paths: dict[str, int], routes: list[dict[str, Any]]
) -> list[Problem]:
    problems = []
    own = normalise_path(str(route["path"]))
    seen: set[str] = set()
    for j, target in enumerate(route.get("fallbacks", [])):
        where = ("routes", index, "fallbacks", j)
        normal = normalise_path(str(target))
        if normal == own:
            problems.append(
                doc.problem(where, f"route {route['path']} lists itself as a fallback; remove it")
            )
        elif normal not in paths:
            known = ", ".join(str(r["path"]) for r in routes if normalise_path(str(r["path"])) != own)
            problems.append(
                doc.problem(
                    where,
                    f"fallback {target} is not a route path in this file; "
                    f"known paths: {known or '(no other routes)'}",
                )
            )
        elif normal in seen:
            problems.append(doc.problem(where, f"fallback {target} is listed twice; remove one"))
        elif _kind(routes[paths[normal]]) != _kind(route):
            problems.append(
                doc.problem(
                    where,
                    f"fallback {target} serves {_kind(routes[paths[normal]])}, route {route['path']} serves "
                    f"{_kind(route)}: a fallback must be a route of the same kind",
                )
            )
        seen.add(normal)
    return problems


def _kind(route: dict[str, Any]) -> str:
    """A route's `kind` as written (chat when absent)."""
    return str(route.get("kind", "chat"))
