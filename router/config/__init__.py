"""The routing table: YAML in, a validated, immutable RouterConfig out.

Loading is parse -> interpolate -> schema -> semantics -> build, each stage in its own module, and an
invalid file never gets past `load_config`: callers either hold a complete RouterConfig or a ConfigError
listing every problem as `FILE:LINE:COL: message (at json.path)`. Nothing here touches the network or
knows about HTTP, so a reload can validate a candidate file before swapping it in.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Mapping

from router.config.build import build_config
from router.config.common import collector_paused
from router.config.interpolate import interpolate
from router.config.models import RouterConfig
from router.config.problems import ConfigError, Problem
from router.config.schema import validate_schema
from router.config.semantics import check_semantics
from router.config.source import parse_yaml

__all__ = [
    "MAX_TABLE_BYTES",
    "ConfigError",
    "Problem",
    "RouterConfig",
    "load_config",
    "load_config_bytes",
    "load_config_text",
    "read_table",
]

MAX_TABLE_BYTES = 8 * 1024 * 1024
"""The largest routing table read, far beyond any real one; reading and parsing stay bounded."""


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> RouterConfig:
    """Load and validate the routing table at `path`.

    Raises ConfigError for anything wrong with its content (including bytes that are not UTF-8), and lets
    OSError through when the file cannot be read at all: "fix this line" and "fix this path or its
    permissions" are different answers, and `router validate` gives them different exit codes.
    """
    return _load(read_table(path), os.fspath(path), env)


def read_table(path: str | os.PathLike[str], max_bytes: int = MAX_TABLE_BYTES) -> bytes:
    """The bytes of the table at `path`: a regular file of at most `max_bytes`, else an error.

    Opened without blocking, so a FIFO (or a device) given as the table is refused at once instead of
    waiting forever for a writer; a file beyond `max_bytes` is refused before it is read. Raises OSError
    when the path cannot be read as a table, ConfigError when it is too large.
    """
    name = os.fspath(path)
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), name)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file; give the path of a routing table file", name)
        if info.st_size > max_bytes:
            raise ConfigError([_too_large(name, info.st_size, max_bytes)])
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as file:
            raw = file.read(max_bytes + 1)  # the file may have grown since fstat
    finally:
        os.close(fd)
    if len(raw) > max_bytes:
        raise ConfigError([_too_large(name, len(raw), max_bytes)])
    return raw


def _too_large(name: str, size: int, max_bytes: int) -> Problem:
    return Problem(
        name, 1, 1, f"the file is {size:,} bytes; a routing table may be at most {max_bytes:,} bytes"
    )


def load_config_bytes(raw: bytes, source: str, env: Mapping[str, str] | None = None) -> RouterConfig:
    """Validate a routing table already read (e.g. by the reloader, which hashes what it read)."""
    return _load(raw, source, env)


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
    with collector_paused():
        doc = parse_yaml(text, source)
        doc = interpolate(doc, os.environ if env is None else env)
        validate_schema(doc)
        check_semantics(doc)
        return build_config(doc, hashlib.sha256(raw).hexdigest())
