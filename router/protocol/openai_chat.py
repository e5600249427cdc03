"""The OpenAI Chat Completions request: parsed and checked once, at the door.

msgspec (which Litestar itself is built on) decodes and type-checks the body in one fast pass and names
the offending field, which becomes the OpenAI error's `param`. The body is also kept as a plain dict so
OpenAI-compatible upstreams receive fields the router does not know about.

Every field the router reads or translates is typed here, optional ones included (content parts, tool
calls, `tools`, `response_format`): the translation to Ollama then only ever sees the shapes it expects,
and a malformed field is a 400 naming it, never a failure half-way through translating. The types are
those of OpenAI's API, loose where it is (unknown keys inside these objects are allowed and passed on).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

import msgspec

from router.echo import shown
from router.errors import InvalidRequest


class StreamOptions(msgspec.Struct):
    """`stream_options`: only `include_usage` changes what the router sends back."""

    include_usage: bool = False


class ImageURL(msgspec.Struct):
    """`image_url` of an image part: a URL or a `data:` URL (Ollama receives the base64 after the comma)."""

    url: str


class ContentPart(msgspec.Struct):
    """One part of a message's `content` list: `text` parts are joined, `image_url` parts become images."""

    type: str | None = None
    text: str | None = None
    image_url: ImageURL | None = None


class ToolFunction(msgspec.Struct):
    """The function of an assistant's tool call; `arguments` is JSON text (OpenAI) or an object (Ollama)."""

    name: str | None = None
    arguments: str | dict[str, Any] | None = None


class ToolCall(msgspec.Struct):
    """One tool call of an assistant message sent back in the history."""

    function: ToolFunction | None = None
    id: str | None = None
    type: str | None = None


class Message(msgspec.Struct):
    """One chat message as far as the router checks it; other fields pass through in the raw body."""

    role: Annotated[str, msgspec.Meta(min_length=1)]
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCall] | None = None


class JSONSchemaFormat(msgspec.Struct):
    """`response_format.json_schema`: its `schema` is what Ollama's `format` receives."""

    schema: dict[str, Any] | None = None
    name: str | None = None


class ResponseFormat(msgspec.Struct):
    """`response_format`: `json_object` or `json_schema` (Ollama's `format`), or `text`."""

    type: str
    json_schema: JSONSchemaFormat | None = None


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
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    tools: list[dict[str, Any]] | None = None
    response_format: ResponseFormat | None = None


_PATH_IN_ERROR = re.compile(r" - at `\$\.?(.*)`$")
_MISSING_FIELD = re.compile(r"missing required field `([^`]+)`")


def parse_chat_request(raw: bytes) -> tuple[ChatRequest, dict[str, Any]]:
    """The typed request and the body as sent; InvalidRequest (400) naming the field otherwise."""
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    except UnicodeDecodeError:  # msgspec raises this, not DecodeError, for bad bytes inside a string
        raise InvalidRequest("the request body is not valid UTF-8", code="invalid_json") from None
    except RecursionError:  # msgspec's answer to JSON nested deeper than the interpreter's stack allows
        raise InvalidRequest("the request body is nested too deeply", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object with a `messages` list")
    try:  # convert_body inlined: this is every chat request's path
        request = msgspec.convert(body, ChatRequest)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None
    return request, body


def decode_json_object(raw: bytes, what: str) -> dict[str, Any]:
    """The body as a JSON object; InvalidRequest (400) otherwise (`what` says what the object must hold).

    For the other dialects' parsers: the same checks and words as the chat door's.
    """
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    except UnicodeDecodeError:
        raise InvalidRequest("the request body is not valid UTF-8", code="invalid_json") from None
    except RecursionError:
        raise InvalidRequest("the request body is nested too deeply", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"the request body must be a JSON object {what}")
    return body


def parse_chat_body(body: dict[str, Any]) -> ChatRequest:
    """The typed view of an internal chat body (one a dialect built); InvalidRequest naming the field.

    A dialect that translates its request into a chat body calls this on the result, so the router acts
    on the same checked fields whatever the client spoke (the `param` then names the internal field).
    """
    return convert_body(body, ChatRequest)


T = TypeVar("T")


def convert_body(body: dict[str, Any], into: type[T]) -> T:
    """`body` as the typed request `into` (a msgspec Struct); InvalidRequest (400) naming the field.

    Every dialect's parser uses it, so a bad field reads the same at every door.
    """
    try:
        return msgspec.convert(body, into)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: msgspec.ValidationError) -> InvalidRequest:
    """msgspec's refusal as a 400 naming the field (`param`)."""
    message, param = _describe(str(exc))
    where = f" (at `{param}`)" if param else ""
    return InvalidRequest(f"invalid request: {message}{where}", param=param)


def _describe(text: str) -> tuple[str, str | None]:
    """msgspec's message without its location, and the location as an OpenAI `param` (`messages[0].role`)."""
    match = _PATH_IN_ERROR.search(text)
    path = match.group(1) if match else ""
    message = text[: match.start()] if match else text
    missing = _MISSING_FIELD.search(message)
    if missing:
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
    # Bounded: msgspec may quote the value it refused, and the path names keys the client chose.
    return shown(message, 300), shown(path) if path else None
