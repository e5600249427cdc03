"""Small helpers every loader stage and the runtime share: how paths and keys are compared.

A leaf on purpose (it imports nothing of the router): the builder, the semantic checks and the access
policy all compare paths and keys the same way, and none of them may import another just for that.
"""

from __future__ import annotations

import hashlib


def normalise_path(path: str) -> str:
    """The form two route paths are compared in: case and a trailing slash do not make them different."""
    return path.rstrip("/").lower() or "/"


def default_route_name(path: str) -> str:
    """A route's name when the file gives none: the last segment of its path (`/chat/qwen3` -> `qwen3`)."""
    return path.rstrip("/").rsplit("/", 1)[-1]


def key_digest(key: str) -> bytes:
    """The SHA-256 digest a key is compared by: given as `sha256:<hex>`, or computed from the key itself."""
    if key.startswith("sha256:"):
        return bytes.fromhex(key.removeprefix("sha256:"))
    return hashlib.sha256(key.encode()).digest()
