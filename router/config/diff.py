"""What a reload would change, in words: every section of the table, entry by entry, key by key.

Used by `router diff OLD NEW` (review a change before committing it) and by the reloader's event (see
what a reload did). Works on typed configs only, so it compares what the router will actually use, after
defaults and interpolation, not the YAML text. It walks the pydantic models generically, so a section or
key added to `RouterConfig` is reported without touching this module. Secret values (`SecretStr`) are
never shown, only that they changed; other credentials (headers, URL passwords) are masked by the
redactor of whoever prints the lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, SecretStr

from router.config.models import RouterConfig

_NOT_COMPARED = frozenset({"source", "sha256"})  # where a table came from, not what it says
_NEEDS_RESTART = frozenset({"server"})  # sections a running process cannot apply
_SINGULAR = {"upstreams": "upstream", "routes": "route"}
_ENTRY_KEYS = ("path", "name")  # how the entries of a list of models are told apart
_SUMMARY_KEYS = ("base_url", "model")  # what an added or removed entry is shown with


def diff_configs(old: RouterConfig, new: RouterConfig) -> list[str]:
    """One line per difference: `+` added, `-` removed, `~` changed (empty when nothing changes)."""
    lines: list[str] = []
    for section in type(new).model_fields:
        before, after = getattr(old, section), getattr(new, section)
        if section in _NOT_COMPARED or before == after:
            continue
        suffix = " (needs a restart)" if section in _NEEDS_RESTART else ""
        old_entries, new_entries = _entries(before), _entries(after)
        if old_entries is not None and new_entries is not None and _of_models(old_entries, new_entries):
            kind = _SINGULAR.get(section, section)
            for key in sorted(old_entries.keys() - new_entries.keys()):
                lines.append(f"- {kind} {key}{_summary(old_entries[key])}{suffix}")
            for key in sorted(new_entries.keys() - old_entries.keys()):
                lines.append(f"+ {kind} {key}{_summary(new_entries[key])}{suffix}")
            for key in sorted(old_entries.keys() & new_entries.keys()):
                changes = _changes(old_entries[key], new_entries[key], "")
                lines += [f"~ {kind} {key}: {change}{suffix}" for change in changes]
        else:
            lines += [f"~ {section}: {change}{suffix}" for change in _changes(before, after, "")]
    return lines


def _changes(old: Any, new: Any, path: str) -> list[str]:
    """`dotted.path: old -> new` for each differing leaf under `path`."""
    if old == new:
        return []
    if isinstance(old, BaseModel) and type(old) is type(new):
        found: list[str] = []
        for name in type(old).model_fields:
            found += _changes(getattr(old, name), getattr(new, name), f"{path}.{name}" if path else name)
        return found
    old_entries, new_entries = _entries(old), _entries(new)
    if old_entries is not None and new_entries is not None:
        found = [f"{path}[{key}]: removed" for key in sorted(old_entries.keys() - new_entries.keys())]
        found += [f"{path}[{key}]: added" for key in sorted(new_entries.keys() - old_entries.keys())]
        for key in sorted(old_entries.keys() & new_entries.keys()):
            found += _changes(old_entries[key], new_entries[key], f"{path}[{key}]")
        return found
    where = f"{path}: " if path else ""
    if isinstance(old, SecretStr) or isinstance(new, SecretStr):
        return [f"{where}changed (secret, not shown)"]
    return [f"{where}{_show(old)} -> {_show(new)}"]


def _entries(value: Any) -> dict[str, Any] | None:
    """A mapping, or a list of models that each have a `path` or `name`, as entries by key; else None."""
    if isinstance(value, Mapping):
        return {str(key): item for key, item in value.items()}
    if isinstance(value, tuple | list) and all(isinstance(item, BaseModel) for item in value):
        entries: dict[str, Any] = {}
        for item in value:
            key = next((getattr(item, k) for k in _ENTRY_KEYS if k in type(item).model_fields), None)
            if key is None or str(key) in entries:
                return None
            entries[str(key)] = item
        return entries
    return None


def _of_models(*collections: dict[str, Any]) -> bool:
    return all(isinstance(item, BaseModel) for entries in collections for item in entries.values())


def _summary(entry: Any) -> str:
    for key in _SUMMARY_KEYS:
        value = getattr(entry, key, None)
        if isinstance(value, str):
            return f" ({value})"
    return ""


def _show(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_show(item) for item in value) + "]"
    if isinstance(value, BaseModel):
        return "{" + ", ".join(f"{k}: {_show(getattr(value, k))}" for k in type(value).model_fields) + "}"
    return str(value)
