"""Parse and check an OpenAI Chat Completions request once, at the door.

msgspec (which Litestar itself is built on) decodes and type-checks the body in one fast pass and names
the offending field, which becomes the OpenAI error's `param`. The body is also kept as a plain dict so
OpenAI-compatible upstreams receive fields the router does not know about.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from router.errors import InvalidRequest


class StreamOptions(msgspec.Struct):
    include_usage: bool = False


class Message(msgspec.Struct):
    role: Annotated[str, msgspec.Meta(min_length=1)]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(msgspec.Struct):
    """The fields the router acts upon; every other field is passed through untouched."""

    messages: Annotated[list[Message], msgspec.Meta(min_length=1)]
    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    max_completion_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=1)] | None = None
    session_id: str | None = None


_PATH_IN_ERROR = re.compile(r" - at `\$\.?(.*)`$")


def parse_chat_request(raw: bytes) -> tuple[ChatRequest, dict[str, Any]]:
    """The typed request and the body as sent; InvalidRequest (400) naming the field otherwise."""
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object with a `messages` list")
    try:
        request = msgspec.convert(body, ChatRequest)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _PATH_IN_ERROR.search(text)
        param = match.group(1) if match else None
        message = text[: match.start()] if match else text
        where = f" (at `{param}`)" if param else ""
        raise InvalidRequest(f"invalid request: {message}{where}", param=param or None) from None
    return request, body
