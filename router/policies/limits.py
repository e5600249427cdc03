"""Per-route caps applied to a request before it is translated for the upstream."""

from __future__ import annotations

__all__ = ["clamp_max_tokens"]


def clamp_max_tokens(requested: int | None, cap: int | None) -> int | None:
    """The max_tokens to send: the client's value clamped to the route cap, the cap when the client gave
    none, the client's value (possibly None) when the route has no cap."""
    if cap is None:
        return requested
    if requested is None:
        return cap
    return min(requested, cap)
