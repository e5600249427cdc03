"""Anthropic Messages (`POST /v1/messages`) <-> the internal model (OpenAI chat), both ways.

Clients built for Anthropic's API (its SDKs, Claude Code, tools written against it) reach the router's
models unchanged: the request becomes an OpenAI chat body (system prompt, text and image blocks, tool use
and tool results, tools and tool choice, stop sequences, sampling, thinking), the answer becomes a
`message`, and a stream becomes Anthropic's event sequence (`message_start`, `content_block_start` /
`_delta` / `_stop`, `message_delta`, `message_stop`, `ping` as the heartbeat, `error` when it fails).
What is implemented, what is left out and the sources are in docs/dialects/anthropic_messages.md.

Parsing is typed (msgspec) like the chat door: a malformed field is a 400 naming it. Fields real clients
send that change nothing here (`metadata`, `cache_control`, `context_management`, `service_tier`, newer
`thinking` types...) are accepted and ignored.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec

from router.dialects.base import ClientDialect, Headers, Inbound, StreamEncoder
from router.dialects.sse import event
from router.errors import ErrorDialect, ErrorReply, InvalidRequest, RouterError
from router.protocol.openai_chat import ChatRequest, convert_body, decode_json_object, parse_chat_body

__all__ = [
    "ANTHROPIC_ERRORS",
    "ANTHROPIC_MESSAGES",
    "AnthropicMessages",
    "MessagesEncoder",
    "count_tokens",
    "error_type",
]

# ---- errors ------------------------------------------------------------------------------------------

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    """Anthropic's error type for an HTTP status (docs: "HTTP errors"); other 4xx are invalid requests."""
    found = _ERROR_TYPES.get(status)
    if found is not None:
        return found
    return "api_error" if status >= 500 else "invalid_request_error"


def _error_body(error: RouterError, message: str) -> bytes:
    return msgspec.json.encode(
        {"type": "error", "error": {"type": error_type(error.status), "message": message}}
    )


def _error_event(body: bytes) -> bytes:
    return event(b"error", body)


ANTHROPIC_ERRORS = ErrorDialect("anthropic", "application/json", _error_body, _error_event)
"""`{"type": "error", "error": {"type", "message"}}`; mid-stream, an `event: error` with that body."""

# ---- the request -------------------------------------------------------------------------------------


class Source(msgspec.Struct):
    """An image's `source`: `base64` (`media_type`, `data`) or `url` (`url`)."""

    type: str
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class Block(msgspec.Struct):
    """One content block; which fields matter depends on `type` (unknown keys such as `cache_control`
    are ignored)."""

    type: str
    text: str | None = None
    source: Source | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None
    tool_use_id: str | None = None
    content: str | list[Block] | None = None
    is_error: bool | None = None


class InputMessage(msgspec.Struct):
    """One turn of the conversation. `role: "system"` is the beta API's mid-conversation system message
    (Claude Code sends its environment notes that way); `clear_at` only applies to those."""

    role: Literal["user", "assistant", "system"]
    content: str | list[Block]
    clear_at: str | None = None


class Tool(msgspec.Struct):
    """A client tool (`input_schema` is its JSON Schema). Server tools (a `type` of their own) are not
    run by the router's models."""

    name: Annotated[str, msgspec.Meta(min_length=1)]
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    type: str | None = None


class ToolChoice(msgspec.Struct):
    """`auto`, `any`, `tool` (with `name`) or `none`."""

    type: str
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Thinking(msgspec.Struct):
    """`enabled` (with `budget_tokens`), `disabled`, or a newer type (treated as enabled)."""

    type: str
    budget_tokens: int | None = None


class OutputFormat(msgspec.Struct):
    """`output_config.format`: `json_schema` with its `schema` (structured outputs)."""

    type: str
    schema: dict[str, Any] | None = None


class OutputConfig(msgspec.Struct):
    """`output_config`: the answer's `format`, and the `effort` the model should spend."""

    effort: str | None = None
    format: OutputFormat | None = None


class MessagesRequest(msgspec.Struct):
    """The fields of a Messages request the router translates; the others are ignored."""

    model: Annotated[str, msgspec.Meta(min_length=1)]
    messages: Annotated[list[InputMessage], msgspec.Meta(min_length=1)]
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    system: str | list[Block] | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    top_k: Annotated[int, msgspec.Meta(ge=0)] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None
    session_id: str | None = None


def _typed(raw: bytes) -> MessagesRequest:
    body = decode_json_object(raw, "with `model`, `messages` and `max_tokens`")
    return convert_body(body, MessagesRequest)


def _text_of(content: str | list[Block] | None, where: str) -> str:
    """The text of a `system` prompt or a tool result (text blocks joined; other blocks refused)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for i, block in enumerate(content):
        if block.type != "text":
            raise InvalidRequest(
                f"only text blocks are supported in `{where}`, not {block.type!r}", param=f"{where}[{i}]"
            )
        texts.append(block.text or "")
    return "\n".join(texts)


def _image_part(block: Block, where: str) -> dict[str, Any]:
    source = block.source
    if source is not None and source.type == "base64" and source.data and source.media_type:
        return {"type": "image_url", "image_url": {"url": f"data:{source.media_type};base64,{source.data}"}}
    if source is not None and source.type == "url" and source.url:
        return {"type": "image_url", "image_url": {"url": source.url}}
    raise InvalidRequest(
        "an image block needs a `source` of type `base64` (with `media_type` and `data`) or `url`",
        param=f"{where}.source",
    )


def _unsupported(kind: str, at: str) -> InvalidRequest:
    return InvalidRequest(
        f"content blocks of type {kind!r} are not supported by this router; send text, image, "
        "tool_use and tool_result blocks",
        param=f"{at}.type",
    )


_DROPPED_BLOCKS = frozenset({"thinking", "redacted_thinking"})
"""Blocks a client sends back from earlier answers that the model does not need to see again."""


def _tool_result(block: Block, where: str) -> dict[str, Any]:
    if not block.tool_use_id:
        raise InvalidRequest("a `tool_result` block needs its `tool_use_id`", param=f"{where}.tool_use_id")
    text = _text_of(block.content, f"{where}.content")
    if block.is_error:
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": block.tool_use_id, "content": text}


def _user_messages(blocks: list[Block], where: str) -> list[dict[str, Any]]:
    """A user turn: its tool results first (OpenAI wants them right after the calls), then the rest."""
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(blocks):
        at = f"{where}[{i}]"
        kind = block.type
        if kind == "text":
            parts.append({"type": "text", "text": block.text or ""})
        elif kind == "image":
            parts.append(_image_part(block, at))
        elif kind == "tool_result":
            results.append(_tool_result(block, at))
        elif kind not in _DROPPED_BLOCKS:
            raise _unsupported(kind, at)
    if parts:
        if all(p["type"] == "text" for p in parts):
            results.append({"role": "user", "content": "\n".join(p["text"] for p in parts)})
        else:
            results.append({"role": "user", "content": parts})
    return results


def _assistant_message(blocks: list[Block], where: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(blocks):
        at = f"{where}[{i}]"
        kind = block.type
        if kind == "text":
            texts.append(block.text or "")
        elif kind == "tool_use":
            if not block.id or not block.name:
                raise InvalidRequest("a `tool_use` block needs its `id` and `name`", param=at)
            arguments = msgspec.json.encode(block.input if block.input is not None else {}).decode()
            calls.append(
                {"id": block.id, "type": "function", "function": {"name": block.name, "arguments": arguments}}
            )
        elif kind not in _DROPPED_BLOCKS:
            raise _unsupported(kind, at)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tools(tools: list[Tool]) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(tools):
        if tool.type not in (None, "custom"):
            raise InvalidRequest(
                f"server tool {tool.type!r} is not available through this router; define a client tool "
                "with `name` and `input_schema`",
                param=f"tools[{i}].type",
            )
        function: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema or {"type": "object"}}
        if tool.description:
            function["description"] = tool.description
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: ToolChoice) -> Any:
    if choice.type == "auto":
        return "auto"
    if choice.type == "any":
        return "required"
    if choice.type == "none":
        return "none"
    if choice.type == "tool":
        if not choice.name:
            raise InvalidRequest(
                "`tool_choice` of type `tool` needs the tool's `name`", param="tool_choice.name"
            )
        return {"type": "function", "function": {"name": choice.name}}
    raise InvalidRequest(
        f"unknown `tool_choice` type {choice.type!r}; use auto, any, tool or none", param="tool_choice.type"
    )


def _reasoning_effort(thinking: Thinking) -> str | None:
    """Anthropic's thinking budget as OpenAI's `reasoning_effort` (None: no thinking asked)."""
    if thinking.type == "disabled":
        return None
    budget = thinking.budget_tokens
    if budget is None:
        return "medium"
    if budget < 4_096:
        return "low"
    return "medium" if budget < 16_384 else "high"


_EFFORTS = {"low": "low", "medium": "medium", "high": "high"}
"""`output_config.effort` as `reasoning_effort` (`xhigh` and `max`, which OpenAI lacks, are `high`)."""


class Context(msgspec.Struct):
    """What translating the answer back needs: the name the client used, its stop sequences, and
    whether it asked for thinking (reasoning is only shown as thinking blocks then)."""

    model: str
    stop_sequences: tuple[str, ...]
    thinking: bool


def to_chat(request: MessagesRequest) -> dict[str, Any]:
    """The internal OpenAI chat body for a Messages request."""
    messages: list[dict[str, Any]] = []
    system = _text_of(request.system, "system")
    if system:
        messages.append({"role": "system", "content": system})
    last_user = max((i for i, m in enumerate(request.messages) if m.role == "user"), default=-1)
    for i, message in enumerate(request.messages):
        where = f"messages[{i}].content"
        content = message.content
        if message.role == "system":
            # "next_user_message": shown only for the user turn it follows, so dropped once a later one exists
            if message.clear_at != "next_user_message" or i > last_user:
                messages.append({"role": "system", "content": _text_of(content, where)})
        elif isinstance(content, str):
            messages.append({"role": message.role, "content": content})
        elif message.role == "user":
            messages.extend(_user_messages(content, where))
        else:
            messages.append(_assistant_message(content, where))
    body: dict[str, Any] = {"model": request.model, "messages": messages, "stream": request.stream}
    if request.stream:
        body["stream_options"] = {"include_usage": True}  # usage goes into message_delta
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.stop_sequences:
        body["stop"] = request.stop_sequences
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.top_k is not None:
        body["top_k"] = request.top_k
    if request.tools:
        body["tools"] = _tools(request.tools)
    choice = request.tool_choice
    if choice is not None:
        if request.tools or choice.type == "none":
            body["tool_choice"] = _tool_choice(choice)
        if choice.disable_parallel_tool_use:
            body["parallel_tool_calls"] = False
    if request.thinking is not None:
        effort = _reasoning_effort(request.thinking)
        if effort is not None:
            body["reasoning_effort"] = effort
    output = request.output_config
    if output is not None:
        if output.effort:
            body["reasoning_effort"] = _EFFORTS.get(output.effort, "high")
        if output.format is not None:
            if output.format.type != "json_schema" or output.format.schema is None:
                raise InvalidRequest(
                    "`output_config.format` must be of type `json_schema` with a `schema`",
                    param="output_config.format",
                )
            schema = {"name": "output", "schema": output.format.schema}
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
    if request.session_id:
        body["session_id"] = request.session_id
    return body


# ---- the answer --------------------------------------------------------------------------------------

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(
    finish: str | None, matched: Any, context: Context, used_tools: bool
) -> tuple[str, str | None]:
    """Anthropic's `stop_reason` and `stop_sequence` for an OpenAI finish reason.

    Which stop sequence ended the answer is only known when the upstream says so (vLLM's `stop_reason`
    on the choice); otherwise a stop is an `end_turn`. A model that called tools and stopped (Ollama says
    `stop` then) is waiting for their results: `tool_use`.
    """
    if finish in (None, "stop"):
        if isinstance(matched, str) and matched in context.stop_sequences:
            return "stop_sequence", matched
        if used_tools:
            return "tool_use", None
        return "end_turn", None
    return _STOP_REASONS.get(finish, "end_turn"), None


def _input_of(arguments: Any) -> Any:
    """A tool call's arguments (JSON text, or an object already) as the `input` object."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        value = msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        return {"_raw": arguments}  # the model wrote invalid JSON: hand it over rather than lose it
    return value if isinstance(value, dict) else {"_value": value}


def _usage(usage: Any) -> dict[str, int]:
    usage = usage if isinstance(usage, dict) else {}
    return {
        "input_tokens": int(usage.get("prompt_tokens") or 0),
        "output_tokens": int(usage.get("completion_tokens") or 0),
    }


def _message_id() -> str:
    return "msg_" + uuid.uuid4().hex


def to_message(completion: dict[str, Any], context: Context) -> dict[str, Any]:
    """A whole `chat.completion` as an Anthropic `message`."""
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if reasoning and context.thinking:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "toolu_" + uuid.uuid4().hex,
                "name": function.get("name") or "",
                "input": _input_of(function.get("arguments")),
            }
        )
    used_tools = bool(message.get("tool_calls"))
    reason, sequence = stop_reason(
        choice.get("finish_reason"), choice.get("stop_reason"), context, used_tools
    )
    return {
        "id": _message_id(),
        "type": "message",
        "role": "assistant",
        "model": context.model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": _usage(completion.get("usage")),
    }


# ---- the stream --------------------------------------------------------------------------------------

_PING = event(b"ping", b'{"type":"ping"}')
_STOP = event(b"message_stop", b'{"type":"message_stop"}')


class MessagesEncoder:
    """Internal chunks -> Anthropic's stream events, one block at a time.

    Blocks are opened as content arrives and closed when another kind starts (text, then each tool
    call; thinking first when asked for), so their indexes grow from 0 as the SDKs expect. A tool call
    opens a `tool_use` block with its id and name; its arguments follow as `input_json_delta`s.
    """

    __slots__ = (
        "_block",
        "_calls",
        "_context",
        "_finish",
        "_id",
        "_matched",
        "_next",
        "_router",
        "_usage",
        "_used_tools",
    )

    media_type = "text/event-stream"
    heartbeat = _PING

    def __init__(self, context: Context) -> None:
        self._context = context
        self._id = _message_id()
        self._block: tuple[str, int] | None = None  # the open block: its kind and index
        self._next = 0
        self._calls: dict[int, int] = {}  # OpenAI tool call index -> block index
        self._finish: str | None = None
        self._matched: Any = None
        self._usage: Any = None
        self._used_tools = False
        self._router: Any = None  # a resumed answer's `router` field (router.resume), for message_delta

    def start(self) -> bytes:
        """`message_start` with an empty message (usage is known at the end: `message_delta` has it)."""
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._context.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return event(b"message_start", msgspec.json.encode({"type": "message_start", "message": message}))

    def _close(self, out: list[bytes]) -> None:
        if self._block is not None:
            index = self._block[1]
            out.append(event(b"content_block_stop", b'{"type":"content_block_stop","index":%d}' % index))
            self._block = None

    def _open(self, out: list[bytes], kind: str, block: dict[str, Any]) -> int:
        self._close(out)
        index = self._next
        self._next += 1
        self._block = (kind, index)
        payload = {"type": "content_block_start", "index": index, "content_block": block}
        out.append(event(b"content_block_start", msgspec.json.encode(payload)))
        return index

    def _delta(self, out: list[bytes], index: int, delta: dict[str, Any]) -> None:
        payload = {"type": "content_block_delta", "index": index, "delta": delta}
        out.append(event(b"content_block_delta", msgspec.json.encode(payload)))

    def chunks(self, payloads: list[bytes]) -> bytes:
        """The events for a batch of chunks (b"" when they only carried the role)."""
        out: list[bytes] = []
        for payload in payloads:
            chunk = msgspec.json.decode(payload)
            usage = chunk.get("usage")
            if usage:
                self._usage = usage
            for choice in chunk.get("choices") or ():
                self._choice(out, choice)
            if "router" in chunk:
                self._router = chunk["router"]
        return b"".join(out)

    def _choice(self, out: list[bytes], choice: dict[str, Any]) -> None:
        delta = choice.get("delta") or {}
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and self._context.thinking:
            block = self._block
            if block is None or block[0] != "thinking":
                self._open(out, "thinking", {"type": "thinking", "thinking": "", "signature": ""})
            assert self._block is not None
            self._delta(out, self._block[1], {"type": "thinking_delta", "thinking": reasoning})
        text = delta.get("content")
        if text:
            block = self._block
            if block is None or block[0] != "text":
                self._open(out, "text", {"type": "text", "text": ""})
            assert self._block is not None
            self._delta(out, self._block[1], {"type": "text_delta", "text": text})
        for call in delta.get("tool_calls") or ():
            self._tool_call(out, call)
        finish = choice.get("finish_reason")
        if finish:
            self._finish = finish
            self._matched = choice.get("stop_reason")

    def _tool_call(self, out: list[bytes], call: dict[str, Any]) -> None:
        position = call.get("index", len(self._calls))
        function = call.get("function") or {}
        index = self._calls.get(position)
        if index is None:
            self._used_tools = True
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or "toolu_" + uuid.uuid4().hex,
                "name": function.get("name") or "",
                "input": {},
            }
            index = self._calls[position] = self._open(out, "tool_use", block)
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # an upstream that sends the object itself
            arguments = msgspec.json.encode(arguments).decode()
        if arguments:
            self._delta(out, index, {"type": "input_json_delta", "partial_json": arguments})

    def end(self) -> bytes:
        """The open block's stop, `message_delta` (stop reason, usage) and `message_stop`."""
        out: list[bytes] = []
        self._close(out)
        reason, sequence = stop_reason(self._finish, self._matched, self._context, self._used_tools)
        payload = {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": sequence},
            "usage": _usage(self._usage),
        }
        if self._router is not None:  # a resumed answer: which upstreams served it (an extra field)
            payload["router"] = self._router
        out.append(event(b"message_delta", msgspec.json.encode(payload)))
        out.append(_STOP)
        return b"".join(out)

    def error(self, reply: ErrorReply) -> bytes:
        """`event: error` with the error body, as Anthropic ends a stream that failed."""
        return _error_event(reply.body)


# ---- the dialect -------------------------------------------------------------------------------------


class AnthropicMessages(ClientDialect):
    """`POST /v1/messages` (and `?beta=true`, which Anthropic's SDKs add for beta features)."""

    name = "anthropic_messages"
    errors = ANTHROPIC_ERRORS

    def parse(self, raw: bytes, headers: Headers) -> Inbound:
        """The Messages request as an internal chat body; `anthropic-version` and beta headers are
        accepted whatever they say (the translation is the same)."""
        request = _typed(raw)
        body = to_chat(request)
        parsed: ChatRequest = parse_chat_body(body)
        thinking = request.thinking is not None and request.thinking.type != "disabled"
        context = Context(request.model, tuple(request.stop_sequences or ()), thinking)
        return Inbound(parsed, body, context)

    def answer(self, whole: bytes, inbound: Inbound) -> bytes:
        """The `chat.completion` as a `message`."""
        return msgspec.json.encode(to_message(msgspec.json.decode(whole), inbound.context))

    def stream(self, inbound: Inbound) -> StreamEncoder:
        """A fresh encoder: it keeps the state of the blocks."""
        return MessagesEncoder(inbound.context)


ANTHROPIC_MESSAGES = AnthropicMessages()
"""The one instance."""

# ---- count_tokens ------------------------------------------------------------------------------------

IMAGE_TOKENS = 1_600
"""What an image is counted as: about what Anthropic charges for a ~1.15 megapixel image (images are not
decoded here, so their size is not known)."""


def count_tokens(raw: bytes) -> tuple[str, int]:
    """The model named and an estimate of the request's input tokens: a character count / 4 over every
    text the model would read (system, messages, tool results, tool calls, tool definitions), plus
    `IMAGE_TOKENS` per image. No tokenizer: the models behind the router each have their own."""
    request = _typed(raw)
    body = to_chat(request)
    chars = 0
    images = 0
    for message in body["messages"]:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if part["type"] == "text":
                    chars += len(part["text"])
                else:
                    images += 1
        for call in message.get("tool_calls") or ():
            chars += len(call["function"]["name"]) + len(call["function"]["arguments"])
    if body.get("tools"):
        chars += len(msgspec.json.encode(body["tools"]))
    return request.model, -(-chars // 4) + images * IMAGE_TOKENS
