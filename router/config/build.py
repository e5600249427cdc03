"""Turn validated data into the typed, frozen RouterConfig.

This is where the file's conveniences are resolved, so nothing downstream needs to know about them:
`defaults` merged into each route (route keys win; `health_check` and `resume` merge key by key), a
route's name defaulting to the last segment of its path, `upstream: x` becoming a one-replica `upstreams`
list, each upstream learning its own name, and an empty `api_key` (what `${KEY:-}` gives) meaning no key.

It expects data that passed the schema and the semantic checks; pydantic still validates, and anything it
refuses is reported as a located problem at the key the user wrote (the route's, or the default's).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from router.config.common import default_route_name, key_digest, normalise_path
from router.config.models import (
    AuthSettings,
    LoggingSettings,
    RouteConfig,
    RoutePolicy,
    RouterConfig,
    ServerSettings,
    SessionSettings,
    StateSettings,
    TelemetrySettings,
    UpstreamConfig,
)
from router.config.problems import ConfigError, JsonPath, Problem
from router.config.source import Document

__all__ = ["POLICY_KEYS", "auth_problems", "build_config", "default_route_name", "key_digest", "route_fields"]

POLICY_KEYS = tuple(RoutePolicy.model_fields)
"""Route keys that `defaults` may provide."""
_MERGED_KEYS = ("health_check", "resume")
"""Policy keys holding a mapping that a route merges key by key with the one in `defaults`."""

_Model = TypeVar("_Model", bound=BaseModel)


def build_config(doc: Document, sha256: str) -> RouterConfig:
    """Build the RouterConfig of a checked document; raise ConfigError if pydantic still refuses it."""
    problems: list[Problem] = []
    data = doc.data
    server = _make(ServerSettings, data.get("server", {}), lambda loc: ("server", *loc), doc, problems)
    sessions = _make(SessionSettings, data.get("sessions", {}), lambda loc: ("sessions", *loc), doc, problems)
    state = _make(StateSettings, data.get("state", {}), _under(("state",)), doc, problems)
    auth = _make(AuthSettings, data.get("auth", {}), _under(("auth",)), doc, problems)
    logging = _make(LoggingSettings, data.get("logging", {}), _under(("logging",)), doc, problems)
    telemetry = _make(TelemetrySettings, data.get("telemetry", {}), _under(("telemetry",)), doc, problems)
    problems += auth_problems(doc)
    upstreams: dict[str, UpstreamConfig] = {}
    for name, raw in data["upstreams"].items():
        fields = {**raw, "name": name}
        if not fields.get("api_key"):
            fields["api_key"] = None
        upstream = _make(UpstreamConfig, fields, _under(("upstreams", name)), doc, problems)
        if upstream is not None:
            upstreams[name] = upstream
    defaults: dict[str, Any] = data.get("defaults", {})
    routes = []
    for index, raw in enumerate(data["routes"]):
        route = _make(
            RouteConfig, route_fields(raw, defaults), _route_locator(index, raw, defaults), doc, problems
        )
        if route is not None:
            routes.append(route)
    if problems or server is None or sessions is None or auth is None or logging is None or state is None:
        raise ConfigError(problems)
    if telemetry is None:
        raise ConfigError(problems)
    try:
        return RouterConfig(
            version=data["version"],
            server=server,
            auth=auth,
            logging=logging,
            sessions=sessions,
            state=state,
            telemetry=telemetry,
            upstreams=upstreams,
            routes=tuple(routes),
            source=doc.file,
            sha256=sha256,
        )
    except ValidationError as exc:
        raise ConfigError(_problems(exc, lambda loc: tuple(loc), doc)) from None


def auth_problems(doc: Document) -> list[Problem]:
    """What the schema cannot see in `auth`: names and keys used twice, and routes that do not exist.

    A key listed twice (under two names, or as its value and as its digest) would make "who is calling"
    ambiguous, so it is refused; problems never quote a key, only where it is.
    """
    auth: Mapping[str, Any] = doc.data.get("auth", {})
    paths = {normalise_path(str(route["path"])) for route in doc.data.get("routes", [])}
    known = ", ".join(str(route["path"]) for route in doc.data.get("routes", [])) or "(none)"
    problems: list[Problem] = []
    names: dict[str, str] = {}
    digests: dict[bytes, JsonPath] = {}
    for section in ("api_keys", "admin_keys"):
        for index, entry in enumerate(auth.get(section, [])):
            here: JsonPath = ("auth", section, index)
            name = str(entry["name"])
            if name in names:
                problems.append(
                    doc.problem((*here, "name"), f"key name '{name}' is already used in auth.{names[name]}")
                )
            names.setdefault(name, section)
            digest = key_digest(str(entry["key"]))
            if digest in digests:
                first = doc.locate(digests[digest])[0]
                problems.append(
                    doc.problem((*here, "key"), f"this key is already listed at line {first}; list it once")
                )
            digests.setdefault(digest, (*here, "key"))
            for j, path in enumerate(entry.get("routes", [])):
                if normalise_path(str(path)) not in paths:
                    problems.append(
                        doc.problem(
                            (*here, "routes", j), f"{path} is not a route path in this file; known: {known}"
                        )
                    )
    return problems


def route_fields(raw: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The RouteConfig fields of one route entry, with defaults merged in."""
    policy = {key: value for key, value in defaults.items() if key not in _MERGED_KEYS}
    policy.update({key: raw[key] for key in POLICY_KEYS if key in raw and key not in _MERGED_KEYS})
    for merged in _MERGED_KEYS:
        value = {**defaults.get(merged, {}), **raw.get(merged, {})}
        if value:
            policy[merged] = value
    if "upstream" in raw:
        upstreams = [{"name": raw["upstream"]}]
    else:
        upstreams = list(raw.get("upstreams", []))
    fields = {key: raw[key] for key in ("path", "model", "fallbacks", "options", "description") if key in raw}
    if "aliases" in raw:
        fields["aliases"] = raw["aliases"]
    fields["name"] = raw.get("name") or default_route_name(str(raw.get("path", "")))
    if "kind" in raw:
        fields["kind"] = raw["kind"]
    fields["upstreams"] = upstreams
    fields["policy"] = policy
    return fields


def _route_locator(
    index: int, raw: Mapping[str, Any], defaults: Mapping[str, Any]
) -> Callable[[tuple[Any, ...]], JsonPath]:
    """Map a pydantic error location in RouteConfig back to the key the user wrote."""
    route: JsonPath = ("routes", index)

    def locate(loc: tuple[Any, ...]) -> JsonPath:
        if loc[:1] == ("policy",) and len(loc) >= 2:
            key, rest = loc[1], loc[2:]
            if key in _MERGED_KEYS and rest:
                if rest[0] in raw.get(key, {}) or rest[0] not in defaults.get(key, {}):
                    return (*route, key, *rest)
                return ("defaults", key, *rest)
            if key in raw or key not in defaults:
                return (*route, key, *rest)
            return ("defaults", key, *rest)
        if loc[:1] == ("upstreams",) and "upstream" in raw:
            return (*route, "upstream")
        return (*route, *loc)

    return locate


def _under(base: JsonPath) -> Callable[[tuple[Any, ...]], JsonPath]:
    return lambda loc: (*base, *loc)


def _make(
    model: type[_Model],
    fields: Mapping[str, Any],
    locate: Callable[[tuple[Any, ...]], JsonPath],
    doc: Document,
    problems: list[Problem],
) -> _Model | None:
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        problems.extend(_problems(exc, locate, doc))
        return None


def _problems(
    exc: ValidationError, locate: Callable[[tuple[Any, ...]], JsonPath], doc: Document
) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        message = error["msg"]
        if error["type"] != "missing":
            message += f", got {error['input']!r}"
        problems.append(doc.problem(locate(tuple(error["loc"])), message))
    return problems
