"""Server-Sent Events framing shared by the dialects that stream SSE (OpenAI's, Anthropic's, ...).

Here rather than in `router.streaming` so the dialects need nothing from the relay that drives them.
"""

from __future__ import annotations

KEEPALIVE = b": keepalive\n\n"
"""An SSE comment: clients ignore it, proxies see traffic."""

DONE = b"data: [DONE]\n\n"
"""OpenAI's end of stream."""


def frame(payloads: list[bytes]) -> bytes:
    """SSE events for chunk payloads that arrived together (one write to the socket, not many)."""
    if len(payloads) == 1:
        return b"data: " + payloads[0] + b"\n\n"
    return b"".join([b"data: " + p + b"\n\n" for p in payloads])


def event(name: bytes, data: bytes) -> bytes:
    """One named event (`event: name` then its `data:` line), as Anthropic's streams are written."""
    return b"event: " + name + b"\ndata: " + data + b"\n\n"
