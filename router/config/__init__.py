"""The routing table: YAML in, a validated, immutable RouterConfig out.

Loading is parse -> interpolate -> schema -> semantics -> build, each stage in its own module, and an
invalid file never gets past `load_config`: callers either hold a complete RouterConfig or a ConfigError
listing every problem as `FILE:LINE:COL: message (at json.path)`. Nothing here touches the network or
knows about HTTP, so a reload can validate a candidate file in milliseconds before swapping it in.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from router.config.build import build_config
from router.config.interpolate import interpolate
from router.config.models import RouterConfig
from router.config.problems import ConfigError, Problem
from router.config.schema import validate_schema
from router.config.semantics import check_semantics
from router.config.source import parse_yaml

__all__ = ["ConfigError", "Problem", "RouterConfig", "load_config", "load_config_text"]


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> RouterConfig:
    """Load and validate the routing table at `path`.

    Raises ConfigError for anything wrong with its content (including bytes that are not UTF-8), and lets
    OSError through when the file cannot be read at all: "fix this line" and "fix this path or its
    permissions" are different answers, and `router validate` gives them different exit codes.
    """
    raw = Path(path).read_bytes()
    return _load(raw, os.fspath(path), env)


def load_config_text(text: str, source: str, env: Mapping[str, str] | None = None) -> RouterConfig:
    """Validate a routing table given as text; `source` names it in problems and in RouterConfig.source."""
    return _load(text.encode("utf-8"), source, env)


def _load(raw: bytes, source: str, env: Mapping[str, str] | None) -> RouterConfig:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            [Problem(source, line, col, "the file is not valid UTF-8; save it as UTF-8")]
        ) from None
    doc = parse_yaml(text, source)
    doc = interpolate(doc, os.environ if env is None else env)
    validate_schema(doc)
    check_semantics(doc)
    return build_config(doc, hashlib.sha256(raw).hexdigest())
