"""JSON Schema validation with messages a person can act on, each pinned to a line and column.

The schema file (`schemas/routes.schema.json`) is the one description of the file format: editors use it
for completion and hover help, and the loader uses it here, so the two can never disagree. It is read
and compiled once per process; a reload only pays for the validation itself.

jsonschema's own messages are written for programmers ("Additional properties are not allowed ('timout'
was unexpected)"); this module rewrites the common ones into what to do next, and uses the schema's
`patternErrorMessage` annotations (which VS Code's YAML and JSON support also show) for patterns.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

try:
    import jsonschema_rs
except ImportError:  # a declared dependency; without it (no wheel for the platform) jsonschema alone judges
    jsonschema_rs = None  # type: ignore[assignment]

from router.config.problems import ConfigError, JsonPath, Problem, in_file_order
from router.config.source import Document

SCHEMA_PATH = Path(__file__).with_name("routes.schema.json")
"""The schema inside the package: in the repository a link to `schemas/routes.schema.json` (the one editors
find through routes.yaml), in a built wheel a copy of it, so `pip install .` deployments validate too."""

_JSON_TYPES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


@functools.cache
def load_schema() -> dict[str, Any]:
    """The parsed routing-table schema, read once per process."""
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


@functools.cache
def _validator() -> Draft202012Validator:
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


# What Python's `\s` matches in a str (str.isspace), written out for the Rust validator, whose `\s` lacks
# \x1c-\x1f: with it, `^\S+$` would accept an alias that jsonschema refuses.
_PY_SPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _python_classes(pattern: str) -> str:
    r"""`pattern` with `\s` and `\S` spelt as the classes Python's `re` gives them."""
    pattern = pattern.replace("[^\\s", "[^" + _PY_SPACE)
    return pattern.replace("\\S", "[^" + _PY_SPACE + "]").replace("\\s", "[" + _PY_SPACE + "]")


def _for_rust(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: _python_classes(value) if key == "pattern" and isinstance(value, str) else _for_rust(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_for_rust(item) for item in node]
    return node


@functools.cache
def _fast_validator() -> Any:
    r"""jsonschema-rs on the same schema: a 10,000-route table in tens of milliseconds, not seconds.

    It only says whether a table is valid; jsonschema still finds and words the problems of one that is
    not, so a table it refuses gets exactly the messages it got before. Where the two could disagree
    (regular expression dialects: `$` before a final newline, what `\s` matches), the patterns it is
    given are no more lenient than Python's, so it never passes a table jsonschema would refuse.
    """
    if jsonschema_rs is None:
        return None
    return jsonschema_rs.Draft202012Validator(_for_rust(load_schema()), validate_formats=False)


def _valid_at_once(data: Any) -> bool:
    """Whether the fast validator passes `data` (False when it cannot tell: then jsonschema decides)."""
    fast = _fast_validator()
    if fast is None:
        return False
    try:
        return bool(fast.is_valid(data))
    except Exception:  # a value it cannot read (an integer beyond 64 bits, NaN): not its call
        return False


def schema_problems(doc: Document) -> list[Problem]:
    """Every schema violation of the document, as located problems in file order."""
    if _valid_at_once(doc.data):
        return []
    problems: list[Problem] = []
    seen: set[tuple[JsonPath, str]] = set()
    for error in _validator().iter_errors(doc.data):
        path = tuple(error.absolute_path)
        # `required` yields one error per missing key; we describe them all at the first one.
        if error.validator == "required":
            if (path, "required") in seen:
                continue
            seen.add((path, "required"))
        problems.extend(_describe(error, path, doc))
    return in_file_order(problems)


def validate_schema(doc: Document) -> None:
    """Raise ConfigError if the document does not match the schema."""
    problems = schema_problems(doc)
    if problems:
        raise ConfigError(problems)


def _describe(error: ValidationError, path: JsonPath, doc: Document) -> list[Problem]:
    """Turn one jsonschema error into problems with plain messages (several for several unknown keys)."""
    # jsonschema types these as "maybe unset"; errors from iter_errors always have them.
    kind: Any = error.validator
    expected: Any = error.validator_value
    instance: Any = error.instance
    schema: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}

    if "propertyNames" in error.absolute_schema_path:
        # jsonschema reports a bad key at its mapping, with the key as the instance: point at the key.
        hint = schema.get("patternErrorMessage", f"it must match {schema.get('pattern')}")
        return [doc.problem((*path, instance), f"invalid name '{instance}': {hint}", at_key=True)]

    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = sorted(schema.get("properties", {}))
        patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
        extras = [key for key in instance if key not in allowed and not any(p.search(key) for p in patterns)]
        problems = []
        for key in extras:
            close = difflib.get_close_matches(key, allowed, n=1)
            guess = f" (did you mean '{close[0]}'?)" if close else ""
            message = f"unknown key '{key}'{guess}; allowed keys: {', '.join(allowed)}"
            problems.append(doc.problem((*path, key), message, at_key=True))
        if problems:
            return problems

    if kind == "required" and isinstance(instance, dict):
        missing = [key for key in expected if key not in instance]
        return [doc.problem(path, f"missing required key '{key}'") for key in missing]

    if kind in ("oneOf", "anyOf") and isinstance(instance, dict) and _only_required(expected):
        return [_choose_one(expected, instance, path, doc)]

    return [doc.problem(path, _message(kind, expected, instance, schema, error))]


def _only_required(branches: Any) -> bool:
    return isinstance(branches, list) and all(
        isinstance(branch, dict) and set(branch) == {"required"} for branch in branches
    )


def _choose_one(
    branches: list[dict[str, list[str]]], instance: dict[str, Any], path: JsonPath, doc: Document
) -> Problem:
    """`oneOf` of `required` lists: exactly one of several keys must be given."""
    keys = [key for branch in branches for key in branch["required"]]
    given = [key for key in keys if key in instance]
    options = " or ".join(f"'{key}'" for key in keys)
    if given:
        return doc.problem((*path, given[-1]), f"give only one of {options}, not both", at_key=True)
    return doc.problem(path, f"missing {options}: a route needs the upstream(s) serving its model")


_BOUNDS = {
    "const": "",
    "minimum": "at least ",
    "maximum": "at most ",
    "exclusiveMinimum": "greater than ",
    "exclusiveMaximum": "less than ",
}
"""Keywords whose message is "must be <relation> <expected>, got <value>"."""


def _message(kind: Any, expected: Any, instance: Any, schema: dict[str, Any], error: ValidationError) -> str:
    shown = _show(instance)
    if kind == "type":
        wanted = [expected] if isinstance(expected, str) else list(expected)
        names = " or ".join(_JSON_TYPES.get(name, name) for name in wanted)
        return f"expected {names}, got {_type_of(instance)} {shown}"
    if kind == "enum":
        return f"{shown} is not one of: {', '.join(_show(option) for option in expected)}"
    bound = _BOUNDS.get(kind)
    if bound is not None:
        return f"must be {bound}{_show(expected)}, got {shown}"
    if kind == "minLength":
        return "must not be empty" if expected == 1 else f"must be at least {expected} characters long"
    if kind in ("minItems", "minProperties"):
        return f"needs at least {expected} entr{'y' if expected == 1 else 'ies'}"
    if kind == "uniqueItems":
        return "has duplicate entries; list each one once"
    if kind == "pattern":
        hint = schema.get("patternErrorMessage", f"it must match {expected}")
        return f"invalid value {shown}: {hint}"
    return error.message


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "mapping"


def _show(value: Any) -> str:
    """A short JSON rendering: what the user wrote, without dumping a whole subtree into one line."""
    if isinstance(value, dict):
        return "{...}"
    if isinstance(value, list):
        return "[...]"
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
