"""`router validate [FILE...]`: check routing tables without starting anything.

Meant for editors, pre-commit hooks and CI, so the output is one line per problem in the
`FILE:LINE:COL: message (at json.path)` form those tools link to, and the exit code says which kind of
failure it was: 0 all valid, 1 some file is invalid, 2 some file could not be read (that wins over 1,
because a file we could not read was not checked at all).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

from router.config import ConfigError, load_config

DEFAULT_FILE = "routes.yaml"
"""What `router validate` checks when given no file: the table `router serve` would load by default."""


def validate_files(
    paths: Sequence[str], out: TextIO | None = None, env: Mapping[str, str] | None = None
) -> int:
    """Validate each file, print a verdict per file (or a line per problem), and return the exit code."""
    stream = sys.stdout if out is None else out
    code = 0
    for path in paths or [DEFAULT_FILE]:
        try:
            config = load_config(path, env=env)
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror or exc}", file=stream)
            code = 2
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem, file=stream)
            code = max(code, 1)
        else:
            # Always plural: scripts match this line, and a fixed shape beats grammar there.
            print(f"{path}: ok ({len(config.routes)} routes, {len(config.upstreams)} upstreams)", file=stream)
    return code
