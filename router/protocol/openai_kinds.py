"""The OpenAI Embeddings and (legacy) Completions requests: parsed and checked once, at the door.

As for chat (router/protocol/openai_chat.py), msgspec decodes and type-checks the body in one pass and
names the offending field (the OpenAI error's `param`); the body is also kept as a plain dict so
OpenAI-compatible upstreams receive fields the router does not know about. Only the fields the router
reads or translates are typed; the types are OpenAI's (openai-python's `embedding_create_params` and
`completion_create_params`), loose where the API is.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from router.errors import InvalidRequest
from router.protocol.openai_chat import StreamOptions, convert_body, decode_json_object


class EmbeddingsRequest(msgspec.Struct):
    """`POST /v1/embeddings`: `input` is checked further by `check_input` (msgspec unions take one list)."""

    input: str | list[Any]
    model: str | None = None
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, msgspec.Meta(ge=1)] | None = None
    user: str | None = None


class CompletionRequest(msgspec.Struct):
    """`POST /v1/completions`: a prompt (and a `suffix` for fill-in-the-middle) completed as text."""

    prompt: str | list[Any]
    model: str | None = None
    suffix: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=128)] | None = None
    best_of: Annotated[int, msgspec.Meta(ge=1, le=20)] | None = None
    echo: bool | None = None
    logprobs: Annotated[int, msgspec.Meta(ge=0, le=5)] | None = None
    frequency_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    presence_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    user: str | None = None


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_texts(value: str | list[Any], field: str, allow_empty_string: bool) -> None:
    """A string, or a non-empty list of strings, of token ids, or of non-empty token-id lists."""
    if isinstance(value, str):
        if value or allow_empty_string:
            return
    elif value and (
        all(isinstance(item, str) for item in value)
        or all(_is_token(item) for item in value)
        or all(isinstance(item, list) and item and all(_is_token(t) for t in item) for item in value)
    ):
        return
    raise InvalidRequest(
        f"`{field}` must be a{' non-empty' if not allow_empty_string else ''} string, a list of strings, "
        "a list of token ids or a list of token-id lists",
        param=field,
    )


def parse_embeddings_request(raw: bytes) -> tuple[EmbeddingsRequest, dict[str, Any]]:
    """The typed request and the body as sent; InvalidRequest (400) naming the field otherwise."""
    body = decode_json_object(raw, "with an `input`")
    if "input" not in body and "messages" in body:
        raise InvalidRequest(
            "this door serves embeddings: send an `input` to embed; chat requests go to a chat route's "
            "path or to /v1/chat/completions",
            param="input",
        )
    request = convert_body(body, EmbeddingsRequest)
    check_texts(request.input, "input", allow_empty_string=False)
    return request, body


def parse_completion_request(raw: bytes) -> tuple[CompletionRequest, dict[str, Any]]:
    """The typed request and the body as sent; InvalidRequest (400) naming the field otherwise."""
    body = decode_json_object(raw, "with a `prompt`")
    request = convert_body(body, CompletionRequest)
    check_texts(request.prompt, "prompt", allow_empty_string=True)
    return request, body
