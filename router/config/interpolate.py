"""`${VAR}` substitution in string values, so secrets and per-host addresses stay out of the file.

Runs on the parsed data (not on the raw text) so a value can never inject YAML structure, and before
schema validation so the schema sees what the router will use. Only string values are expanded, never
keys, and the result is always a string: `port: ${PORT}` yields "8080", which the schema then refuses;
write numbers literally.

Syntax, after the shell's: `${NAME}` is the variable (an error when unset), `${NAME:-default}` falls back
to `default` when NAME is unset or empty, `$$` is a literal `$`, and a `$` followed by anything else is
kept as is. Defaults cannot contain `}` or another `${...}`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from router.config.problems import ConfigError, JsonPath, Problem
from router.config.source import Document

_REFERENCE = re.compile(r"\$\$|\$\{(?P<body>[^}]*)(?P<close>\})?")
_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)


def expand(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """Expand the references in one string; returns the result and a message per bad reference."""
    errors: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        body = match.group("body")
        if match.group("close") is None:
            errors.append(f"unterminated '${{{body}'; close it with '}}', or write $$ for a literal $")
            return match.group(0)
        parsed = _BODY.fullmatch(body)
        if parsed is None or "${" in body:
            errors.append(
                f"invalid reference '${{{body}}}'; write ${{NAME}} or ${{NAME:-default}} (NAME is letters, "
                "digits and _; defaults cannot nest references), or $$ for a literal $"
            )
            return match.group(0)
        name, default = parsed.group("name"), parsed.group("default")
        value = env.get(name)
        if default is not None and not value:
            return default
        if value is None:
            errors.append(f"environment variable {name} is not set; export it or write ${{{name}:-default}}")
            return match.group(0)
        return value

    return _REFERENCE.sub(substitute, text), errors


def interpolate(doc: Document, env: Mapping[str, str]) -> Document:
    """Expand every string value of the document; raise ConfigError locating each bad reference."""
    problems: list[Problem] = []
    data = _walk(doc.data, (), env, doc, problems)
    if problems:
        raise ConfigError(problems)
    return doc.with_data(data)


def _walk(value: Any, path: JsonPath, env: Mapping[str, str], doc: Document, problems: list[Problem]) -> Any:
    # A function of the module, not a closure: a recursive closure is a reference cycle, and it kept the
    # document (hundreds of thousands of positions for a large table) alive until the next collection.
    if isinstance(value, str):
        if "$" not in value:
            return value
        expanded, errors = expand(value, env)
        problems.extend(doc.problem(path, message) for message in errors)
        return expanded
    if isinstance(value, dict):
        return {key: _walk(item, (*path, key), env, doc, problems) for key, item in value.items()}
    if isinstance(value, list):
        return [_walk(item, (*path, index), env, doc, problems) for index, item in enumerate(value)]
    return value
