"""Located configuration problems, and the one exception that carries them.

Every stage of loading (YAML syntax, environment interpolation, schema, semantics, model building) reports
in the same shape, so a user fixing a file reads one list of `FILE:LINE:COL: message (at json.path)` lines,
the form editors and CI logs already know how to jump to.

JSON path notation: `$` is the document root, `.key` selects a mapping key made of letters, digits, `_`
and `-` (not starting with a digit or `-`), `["key"]` selects any other key (JSON-quoted), and `[i]`
selects the 0-based i-th item of a list: `$.routes[1].upstream`, `$.upstreams["gpu.box"].base_url`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

JsonPath = tuple[str | int, ...]
"""A location in the parsed data: the keys and list indices leading from the root to a value."""

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def format_json_path(path: JsonPath) -> str:
    """Render a path in the notation described in this module's docstring."""
    parts = ["$"]
    for step in path:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif _PLAIN_KEY.fullmatch(step):
            parts.append(f".{step}")
        else:
            parts.append(f"[{json.dumps(step)}]")
    return "".join(parts)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config file, pinned to a 1-based line and column so a user can jump to it."""

    file: str
    line: int
    col: int
    message: str
    json_path: str = "$"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message} (at {self.json_path})"


def in_file_order(problems: Iterable[Problem]) -> list[Problem]:
    """Problems read top to bottom like the file; duplicates dropped, ties kept in the order found."""
    unique = dict.fromkeys(problems)
    return sorted(unique, key=lambda problem: (problem.file, problem.line, problem.col))


class ConfigError(Exception):
    """A config that must not be used: carries every problem found (in file order), so one run shows all."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = in_file_order(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))
