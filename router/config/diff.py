"""What a reload would change, in words: routes added, removed and changed, upstreams and policies.

Used by `router diff OLD NEW` (review a change before committing it) and by the reloader's log line (see
what a reload did). Works on typed configs only, so it compares what the router will actually use, after
defaults and interpolation, not the YAML text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from router.config.models import RouterConfig


def _flat(model: BaseModel | Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"policy.health_check.interval": 30, ...}`: nested fields as dotted keys, secrets kept hidden."""
    items = (
        model.items()
        if isinstance(model, Mapping)
        else ((k, getattr(model, k)) for k in type(model).model_fields)
    )
    out: dict[str, Any] = {}
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, BaseModel | Mapping) and value:
            out.update(_flat(value, name + "."))
        else:
            out[name] = value
    return out


def _changes(kind: str, name: str, old: BaseModel, new: BaseModel) -> list[str]:
    before, after = _flat(old), _flat(new)
    lines = []
    for key in sorted(before.keys() | after.keys()):
        if before.get(key) != after.get(key):
            lines.append(f"~ {kind} {name}: {key}: {before.get(key)!s} -> {after.get(key)!s}")
    return lines


def diff_configs(old: RouterConfig, new: RouterConfig) -> list[str]:
    """One line per difference: `+` added, `-` removed, `~` changed (empty when nothing changes)."""
    lines: list[str] = []
    for name in sorted(old.upstreams.keys() - new.upstreams.keys()):
        lines.append(f"- upstream {name} ({old.upstreams[name].base_url})")
    for name in sorted(new.upstreams.keys() - old.upstreams.keys()):
        lines.append(f"+ upstream {name} ({new.upstreams[name].base_url})")
    for name in sorted(old.upstreams.keys() & new.upstreams.keys()):
        lines += _changes("upstream", name, old.upstreams[name], new.upstreams[name])
    old_routes = {r.path: r for r in old.routes}
    new_routes = {r.path: r for r in new.routes}
    for path in sorted(old_routes.keys() - new_routes.keys()):
        lines.append(f"- route {path} ({old_routes[path].model})")
    for path in sorted(new_routes.keys() - old_routes.keys()):
        lines.append(f"+ route {path} ({new_routes[path].model})")
    for path in sorted(old_routes.keys() & new_routes.keys()):
        lines += _changes("route", path, old_routes[path], new_routes[path])
    if old.server != new.server:
        lines += [
            line + " (needs a restart)" for line in _changes("server", "settings", old.server, new.server)
        ]
    return lines
