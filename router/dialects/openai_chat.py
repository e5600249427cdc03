"""OpenAI Chat Completions, the internal model itself: the identity dialect.

This is the router's hot path, so it does nothing it does not have to: the body is parsed and checked
once (as it always was), a whole answer leaves as the upstream adapter produced it, and stream chunks are
framed as Server-Sent Events without being decoded. The encoder keeps no state, so every stream shares
one instance.
"""

from __future__ import annotations

from router.dialects.base import ClientDialect, Headers, Inbound, StreamEncoder
from router.dialects.sse import DONE, KEEPALIVE, frame
from router.errors import OPENAI, ErrorReply
from router.protocol.openai_chat import parse_chat_request


class OpenAIChatEncoder:
    """SSE `data:` events, `data: [DONE]` at the end, a comment as the heartbeat."""

    __slots__ = ()

    media_type = "text/event-stream"
    heartbeat = KEEPALIVE

    def start(self) -> bytes:
        """Nothing: the first chunk is the first event."""
        return b""

    chunks = staticmethod(frame)
    """The payloads framed, untouched: `frame` itself, so the relay makes the very call it always made."""

    def end(self) -> bytes:
        """`data: [DONE]`, which OpenAI's SDKs wait for."""
        return DONE

    def error(self, reply: ErrorReply) -> bytes:
        """The error body as a last `data:` event (what OpenAI's SDKs raise mid-stream)."""
        return OPENAI.stream_event(reply.body)


_ENCODER = OpenAIChatEncoder()


class OpenAIChat(ClientDialect):
    """`POST /v1/chat/completions` and every route's own path."""

    name = "openai_chat"
    errors = OPENAI

    def parse(self, raw: bytes, headers: Headers) -> Inbound:
        """The body, type-checked; it is sent on as it came (unknown fields reach the upstream)."""
        request, body = parse_chat_request(raw)
        return Inbound(request, body)

    def answer(self, whole: bytes, inbound: Inbound) -> bytes:
        """The upstream's answer as it is."""
        return whole

    def stream(self, inbound: Inbound) -> StreamEncoder:
        """The shared, stateless SSE encoder."""
        return _ENCODER


OPENAI_CHAT = OpenAIChat()
"""The one instance: dialects hold no per-request state."""
