"""OpenAI Embeddings (`POST /v1/embeddings`): the internal model of the embeddings call kind.

The body goes on as it came (OpenAI-compatible upstreams receive fields the router does not know), after
checking the fields the router acts on; the adapters ask every upstream for float vectors (one internal
shape for every client dialect), and this dialect encodes them as base64 when its client asked for it:
the little-endian float32 bytes of each vector, base64-encoded, as OpenAI's API does (openai-python
decodes them with `array.array("f", base64.b64decode(data))` or numpy's `frombuffer(..., "float32")`, and
asks for base64 by default). docs/dialects/embeddings_and_completions.md has the sources.
"""

from __future__ import annotations

import base64
import sys
from array import array

import msgspec

from router.dialects.base import ClientDialect, Headers, Inbound, StreamEncoder
from router.errors import OPENAI, InvalidRequest
from router.protocol.openai_chat import ChatRequest
from router.protocol.openai_kinds import parse_embeddings_request


def as_base64(vector: list[float]) -> str:
    """A float vector as OpenAI sends it with `encoding_format: base64`: little-endian float32 bytes."""
    floats = array("f", vector)
    if sys.byteorder != "little":
        floats.byteswap()
    return base64.b64encode(floats.tobytes()).decode("ascii")


def encode_base64(whole: bytes) -> bytes:
    """An embeddings list with float vectors, with each vector base64-encoded instead."""
    answer = msgspec.json.decode(whole)
    for item in answer.get("data") or ():
        vector = item.get("embedding") if isinstance(item, dict) else None
        if isinstance(vector, list):
            item["embedding"] = as_base64(vector)
    return msgspec.json.encode(answer)


class OpenAIEmbeddings(ClientDialect):
    """`POST /v1/embeddings`, and the own path of every `kind: embeddings` route."""

    name = "openai_embeddings"
    errors = OPENAI
    kind = "embeddings"

    def parse(self, raw: bytes, headers: Headers) -> Inbound:
        """The body checked; `context` is the encoding the client wants back."""
        request, body = parse_embeddings_request(raw)
        typed = ChatRequest(messages=[], model=request.model, stream=False)
        return Inbound(typed, body, context=request.encoding_format)

    def answer(self, whole: bytes, inbound: Inbound) -> bytes:
        """The upstream's embeddings list, its vectors base64-encoded when the client asked."""
        if inbound.context == "base64":
            return encode_base64(whole)
        return whole

    def stream(self, inbound: Inbound) -> StreamEncoder:
        """Never called: embeddings are never streamed (`parse` sets `stream` false)."""
        raise InvalidRequest("embeddings are not streamed", param="stream")


OPENAI_EMBEDDINGS = OpenAIEmbeddings()
"""The one instance: dialects hold no per-request state."""
