"""OpenAI (legacy) Completions (`POST /v1/completions`): the internal model of the text-completion kind.

Like the chat dialect it is an identity: the body goes on as it came (after checking the fields the router
acts on; the route's model and token cap are applied by the adapters), a whole answer is the adapter's
`text_completion` JSON as it is, and stream chunks are only framed as SSE, never decoded.

`echo`, `logprobs`, `n`/`best_of` above 1 and several prompts (or token-array prompts) are passed through
to OpenAI-compatible upstreams, which implement them; an Ollama upstream cannot, and refuses them with a
400 naming the field (router/upstreams/ollama_kinds.py), before anything is sent to it.
"""

from __future__ import annotations

from router.dialects.base import ClientDialect, Headers, Inbound, StreamEncoder
from router.dialects.openai_chat import OpenAIChatEncoder
from router.errors import OPENAI
from router.protocol.openai_chat import ChatRequest
from router.protocol.openai_kinds import parse_completion_request

_ENCODER = OpenAIChatEncoder()  # SSE `data:` events and `data: [DONE]`: the same framing as chat


class OpenAICompletions(ClientDialect):
    """`POST /v1/completions`, on chat routes chosen by `model`."""

    name = "openai_completions"
    errors = OPENAI
    kind = "completions"

    def parse(self, raw: bytes, headers: Headers) -> Inbound:
        """The body checked; the typed fields the router acts on (stream, max tokens, model) extracted."""
        request, body = parse_completion_request(raw)
        typed = ChatRequest(
            messages=[],
            model=request.model,
            stream=request.stream,
            stream_options=request.stream_options,
            max_tokens=request.max_tokens,
        )
        return Inbound(typed, body)

    def answer(self, whole: bytes, inbound: Inbound) -> bytes:
        """The adapter's `text_completion` as it is."""
        return whole

    def stream(self, inbound: Inbound) -> StreamEncoder:
        """The shared, stateless SSE encoder."""
        return _ENCODER


OPENAI_COMPLETIONS = OpenAICompletions()
"""The one instance: dialects hold no per-request state."""
