"""Small helpers every loader stage and the runtime share: how paths and keys are compared, and a pause
of the garbage collector while a table is built.

A leaf on purpose (it imports nothing of the router): the builder, the semantic checks and the access
policy all compare paths and keys the same way, and none of them may import another just for that.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import threading
from collections.abc import Iterator


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


_collector_lock = threading.Lock()
_collector_pauses = 0
_collector_was_enabled = False


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a table is loaded or built (nestable, thread-safe).

    A table makes its objects in one burst and keeps most of them, and each burst of allocations starts a
    collection that walks every object alive, the table's own included: with 10,000 routes that was a third
    of the loading time, for no garbage (what a load throws away goes with its last reference). The
    collector runs again as usual, at its next threshold, as soon as the last pause ends.
    """
    global _collector_pauses, _collector_was_enabled
    with _collector_lock:
        if _collector_pauses == 0:
            _collector_was_enabled = gc.isenabled()
            gc.disable()
        _collector_pauses += 1
    try:
        yield
    finally:
        with _collector_lock:
            _collector_pauses -= 1
            if _collector_pauses == 0 and _collector_was_enabled:
                gc.enable()
