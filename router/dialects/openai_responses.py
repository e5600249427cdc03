"""OpenAI Responses (`POST /v1/responses`) <-> the internal OpenAI Chat Completions model.

Three pure translations, no I/O (docs/dialects/openai_responses.md is the specification, with sources):
- a Responses request -> an internal chat body (`parse_request`, `chat_body`): `input` items become chat
  messages, `instructions` the system message, function `tools` chat tools;
- a whole `chat.completion` -> a Response object (`ResponsesContext.answer`);
- a stream of `chat.completion.chunk` payloads -> the Responses semantic events (`ResponsesStream`), a
  small state machine that opens and closes output items (a message with one `output_text` part, one
  `function_call` item per tool call) and numbers every event.

`previous_response_id` is served from the server-side session store: the conversation of a stored response
is kept under its id (`ResponsesContext.conversation` once answered); a new request naming it gets it back
(`prior_messages`) before its own input. What the store keeps is plain chat messages, so another store
(a shared one) needs nothing Responses-specific.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from router.dialects.base import ClientDialect, Headers, Inbound, Sessions, StreamEncoder
from router.echo import quoted, shown
from router.errors import OPENAI, ErrorDialect, ErrorReply, InvalidRequest, RouterError
from router.protocol.openai_chat import ChatRequest, decode_json_object
from router.sessions import SessionNotFound

log = logging.getLogger("router.dialects")

__all__ = [
    "ERRORS",
    "OPENAI_RESPONSES",
    "OpenAIResponses",
    "ResponseNotFound",
    "ResponsesContext",
    "ResponsesRequest",
    "ResponsesStream",
    "chat_body",
    "input_messages",
    "load_conversation",
    "new_id",
    "parse_request",
    "prior_messages",
    "with_instructions",
]

# Input item types that carry nothing a chat model can be sent (hosted tools' traces, encrypted
# reasoning, client-side snapshots): accepted and left out, as clients replay them on every turn.
_SKIPPED_ITEMS = frozenset(
    {
        "reasoning",
        "web_search_call",
        "file_search_call",
        "computer_call",
        "computer_call_output",
        "image_generation_call",
        "code_interpreter_call",
        "local_shell_call",
        "local_shell_call_output",
        "mcp_list_tools",
        "mcp_approval_request",
        "mcp_approval_response",
        "mcp_call",
        "item_reference",
        "ghost_snapshot",
        "compaction",
        "compaction_summary",
    }
)
_TEXT_PARTS = frozenset({"input_text", "output_text", "text", "summary_text", "reasoning_text"})
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


class ResponseNotFound(RouterError):
    """`previous_response_id` names no response this caller stored (unknown, expired, `store: false`)."""

    status = 404
    type = "invalid_request_error"
    code = "previous_response_not_found"


class ResponsesRequest(msgspec.Struct):
    """The fields of a Responses request the router acts upon; other fields real clients send are ignored.

    `reasoning`, `text.verbosity`, `include`, `truncation`, `metadata`, `user`, `prompt_cache_key`,
    `service_tier`, `background`... have no meaning in front of a private model server; refusing them
    would shut out clients (Codex CLI sends several on every request), so they are accepted.
    """

    input: str | list[Any] | None = None
    model: str | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    text: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


def parse_request(raw: bytes) -> ResponsesRequest:
    """The typed request; InvalidRequest (400) naming the offending field otherwise."""
    body = decode_json_object(raw, "with an `input`")
    try:
        return msgspec.convert(body, ResponsesRequest)
    except msgspec.ValidationError as exc:
        text = str(exc)
        message, _, where = text.partition(" - at `$.")
        param = where.rstrip("`") or None
        suffix = f" (at `{param}`)" if param else ""
        raise InvalidRequest(
            f"invalid request: {shown(message, 300)}{suffix}", param=shown(param) if param else None
        ) from None


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param)


def _text_of(value: Any, param: str) -> str:
    """A tool output or message content that must come out as text: a string, or text/image parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for i, part in enumerate(value):
            if not isinstance(part, dict):
                raise _bad("each part must be an object with a `type`", f"{param}[{i}]")
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
        return "\n".join(texts)
    if value is None:
        return ""
    raise _bad("must be a string or a list of content parts", param)


def _content(content: Any, param: str) -> str | list[dict[str, Any]]:
    """A message's content in chat form: text parts joined into a string, or chat parts when images come."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad("`content` must be a string or a list of content parts", param)
    parts: list[dict[str, Any]] = []
    has_image = False
    for i, part in enumerate(content):
        where = f"{param}[{i}]"
        if not isinstance(part, dict):
            raise _bad("each content part must be an object with a `type`", where)
        kind = part.get("type")
        if kind in _TEXT_PARTS or kind == "refusal":
            text = part.get("refusal") if kind == "refusal" else part.get("text")
            if not isinstance(text, str):
                raise _bad(f"a `{kind}` part needs a string `text`", f"{where}.text")
            parts.append({"type": "text", "text": text})
        elif kind == "input_image":
            url = part.get("image_url")
            if isinstance(url, dict):  # the chat form, which some clients send here too
                url = url.get("url")
            if not isinstance(url, str) or not url:
                raise _bad(
                    "an `input_image` part needs an `image_url` (a URL or a data: URL); "
                    "uploaded `file_id`s do not exist here",
                    f"{where}.image_url",
                )
            parts.append({"type": "image_url", "image_url": {"url": url}})
            has_image = True
        else:
            raise _bad(
                f"content parts of type {shown(str(kind))} are not supported here; "
                "send `input_text` or `input_image`",
                f"{where}.type",
            )
    if has_image:
        return parts
    return "\n".join(part["text"] for part in parts)


def _arguments(value: Any, param: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return msgspec.json.encode(value).decode()
    raise _bad("`arguments` must be a JSON string", param)


def input_messages(request: ResponsesRequest) -> list[dict[str, Any]]:
    """`input` as chat messages (without `instructions`: they are not carried to the next response).

    Consecutive `function_call` items, and those right after an assistant message, join one assistant
    message's `tool_calls`, as the chat API wants the tool results to follow the message that asked.
    """
    items = request.input
    if items is None:
        return []
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if isinstance(item, str):  # some clients send bare strings in the list
            messages.append({"role": "user", "content": item})
            continue
        if not isinstance(item, dict):
            raise _bad("each input item must be an object (a message, function_call...)", where)
        kind = item.get("type")
        if kind is None or kind == "message":
            role = item.get("role")
            role = _ROLES.get(role) if isinstance(role, str) else None
            if role is None:
                raise _bad("a message's `role` must be user, assistant, system or developer", f"{where}.role")
            messages.append({"role": role, "content": _content(item.get("content"), f"{where}.content")})
        elif kind in ("function_call", "custom_tool_call"):
            call_id, name = item.get("call_id"), item.get("name")
            if not isinstance(call_id, str) or not call_id:
                raise _bad(f"a `{kind}` item needs a `call_id`", f"{where}.call_id")
            if not isinstance(name, str) or not name:
                raise _bad(f"a `{kind}` item needs a `name`", f"{where}.name")
            raw_args = item.get("arguments") if kind == "function_call" else item.get("input")
            arguments = _arguments(raw_args if raw_args is not None else "", f"{where}.arguments")
            call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            last = messages[-1] if messages else None
            if (
                last is not None
                and last["role"] == "assistant"
                and isinstance(last.get("content"), str | None)
            ):
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind in ("function_call_output", "custom_tool_call_output"):
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise _bad(f"a `{kind}` item needs the `call_id` of its call", f"{where}.call_id")
            output = _text_of(item.get("output"), f"{where}.output")
            messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
        elif kind in _SKIPPED_ITEMS:
            continue
        else:
            raise _bad(
                f"input items of type {shown(str(kind))} are not supported here; send messages, "
                "`function_call` and `function_call_output` items",
                f"{where}.type",
            )
    return messages


def _tools(request: ResponsesRequest) -> list[dict[str, Any]]:
    """Function tools in chat form; hosted tools (web search, file search...) do not exist here: left out."""
    out = []
    for i, tool in enumerate(request.tools or ()):
        if tool.get("type") != "function":
            continue
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise _bad("a function tool needs a `name`", f"tools[{i}].name")
        function: dict[str, Any] = {"name": name}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if choice is None or isinstance(choice, str):
        return choice
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    return None  # hosted-tool and allowed_tools choices: the model chooses among the functions it has


def _response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    form = (text or {}).get("format")
    if not isinstance(form, dict):
        return None
    if form.get("type") == "json_object":
        return {"type": "json_object"}
    if form.get("type") == "json_schema":
        schema = {k: form[k] for k in ("name", "schema", "strict", "description") if k in form}
        return {"type": "json_schema", "json_schema": schema}
    return None


def with_instructions(request: ResponsesRequest, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages sent upstream: this request's `instructions` (a system message) first."""
    if request.instructions:
        return [{"role": "system", "content": request.instructions}, *messages]
    return messages


def chat_body(
    request: ResponsesRequest, messages: list[dict[str, Any]]
) -> tuple[ChatRequest, dict[str, Any]]:
    """The internal chat request for `messages` (the whole conversation, instructions excluded)."""
    messages = with_instructions(request, messages)
    if not messages:
        raise _bad("`input` is empty: send a string or at least one message", "input")
    body: dict[str, Any] = {"messages": messages, "stream": request.stream}
    if request.model is not None:
        body["model"] = request.model
    if request.stream:
        body["stream_options"] = {"include_usage": True}
    if request.max_output_tokens is not None:
        body["max_tokens"] = request.max_output_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    tools = _tools(request)
    if tools:
        body["tools"] = tools
        choice = _tool_choice(request.tool_choice)
        if choice is not None:
            body["tool_choice"] = choice
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    response_format = _response_format(request.text)
    if response_format is not None:
        body["response_format"] = response_format
    try:
        typed = msgspec.convert(body, ChatRequest)
    except msgspec.ValidationError as exc:  # a shape the checks above let through: still the client's
        raise InvalidRequest(f"invalid request: {shown(str(exc), 300)}") from None
    return typed, body


def prior_messages(stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A stored conversation as it is sent again, cleaned of what the store's own rules leave behind.

    The store appends the turn's text answer as an assistant message even when the turn ended in tool
    calls (kept in the message before it): that empty message is dropped. Trimming keeps the newest
    messages, so the oldest kept may be tool results whose call was trimmed away: dropped too, as a chat
    API refuses a tool message that follows no call.
    """
    out: list[dict[str, Any]] = []
    for message in stored:
        if (
            message.get("role") == "assistant"
            and not message.get("content")
            and not message.get("tool_calls")
            and out
            and out[-1].get("tool_calls")
        ):
            continue
        if message.get("role") == "tool" and not out:
            continue
        out.append(message)
    return out


def new_id(prefix: str) -> str:
    """An id in OpenAI's style (`resp_`, `msg_`, `fc_` and 48 hex digits); also a valid session id."""
    return prefix + secrets.token_hex(24)


# ---- answers -------------------------------------------------------------------------------------------


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: str | dict[str, Any] | None = None


class _ToolCall(msgspec.Struct):
    index: int = 0
    id: str | None = None
    function: _Function | None = None


class _Message(msgspec.Struct):
    content: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Choice(msgspec.Struct):
    message: _Message | None = None
    delta: _Message | None = None
    finish_reason: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Completion(msgspec.Struct):
    """A `chat.completion` or a `chat.completion.chunk`, as far as the translation reads it."""

    choices: list[_Choice] = []
    usage: _Usage | None = None
    model: str | None = None
    router: Any = None  # a resumed answer's extra field (router.resume): which upstreams served it


_completion = msgspec.json.Decoder(_Completion)


def _args_text(value: str | dict[str, Any] | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def _usage_object(usage: _Usage | None) -> dict[str, Any]:
    prompt = usage.prompt_tokens if usage else 0
    completion = usage.completion_tokens if usage else 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def _message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


Record = Callable[[list[dict[str, Any]], str], None]
"""Stores a finished response's conversation: (every message up to its answer, the answer's text)."""


@dataclass(slots=True)
class ResponsesContext:
    """One request's Responses side: what its Response object echoes and how its turn is stored.

    `history` is the stored conversation `previous_response_id` named and `sent` this request's own input
    messages: the conversation of the new response is `history + sent + its answer`, stored under its id
    through `record` (set by the handler once the caller is known; None when `store` is false).
    """

    request: ResponsesRequest
    sent: list[dict[str, Any]]
    response_id: str = field(default_factory=lambda: new_id("resp_"))
    created_at: int = field(default_factory=lambda: int(time.time()))
    history: list[dict[str, Any]] = field(default_factory=list)
    record: Record | None = None
    saving: asyncio.Task[None] | None = None  # the store `record` started, awaited by `settle`

    def response(
        self,
        status: str,
        output: list[dict[str, Any]],
        usage: dict[str, Any] | None,
        model: str | None,
        incomplete: bool = False,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The Response object, with the request's settings echoed as the API does."""
        request = self.request
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": error,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "instructions": request.instructions,
            "max_output_tokens": request.max_output_tokens,
            "model": model or request.model or "",
            "output": output,
            "parallel_tool_calls": request.parallel_tool_calls is not False,
            "previous_response_id": request.previous_response_id,
            "reasoning": {"effort": None, "summary": None},
            "store": request.store,
            "temperature": request.temperature,
            "text": request.text or {"format": {"type": "text"}},
            "tool_choice": request.tool_choice or "auto",
            "tools": [tool for tool in request.tools or () if tool.get("type") == "function"],
            "top_p": request.top_p,
            "truncation": "disabled",
            "usage": usage,
            "user": None,
            "metadata": request.metadata or {},
        }

    def finished(self, text: str, calls: list[dict[str, Any]]) -> None:
        """Store the conversation of this response (nothing when `store` is false or nobody set `record`)."""
        if self.record is None:
            return
        messages = [*self.history, *self.sent]
        if calls:
            tool_calls = [
                {
                    "id": call["call_id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
                for call in calls
            ]
            messages.append({"role": "assistant", "content": text or None, "tool_calls": tool_calls})
            text = ""
        self.record(messages, text)

    def answer(self, whole: bytes) -> bytes:
        """A `chat.completion` as a Response object."""
        completion = _completion.decode(whole)
        choice = completion.choices[0] if completion.choices else _Choice()
        message = choice.message or _Message()
        output: list[dict[str, Any]] = []
        text = message.content or ""
        if text:
            output.append(_message_item(new_id("msg_"), text, "completed"))
        calls = []
        for call in message.tool_calls or ():
            function = call.function or _Function()
            item = _call_item(
                new_id("fc_"),
                call.id or new_id("call_"),
                function.name or "",
                _args_text(function.arguments),
                "completed",
            )
            calls.append(item)
        output.extend(calls)
        if not output:  # an empty answer is still a message, as the API sends it
            output.append(_message_item(new_id("msg_"), "", "completed"))
        incomplete = choice.finish_reason == "length"
        self.finished(text, calls)
        response = self.response(
            "incomplete" if incomplete else "completed",
            output,
            _usage_object(completion.usage),
            completion.model,
            incomplete,
        )
        return msgspec.json.encode(response)


# ---- streams -------------------------------------------------------------------------------------------


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + msgspec.json.encode(data) + b"\n\n"


class ResponsesStream:
    """One streamed answer: chat chunks in, Responses events out, every event numbered from 0.

    Output items open when their first delta arrives and close when another item starts or the answer
    ends: a message item (its one `output_text` part) for content, a `function_call` item per tool call
    index. `end` closes what is open and sends `response.completed` (`response.incomplete` when the
    token limit cut the answer) with the whole output and usage; `error` sends `error` then
    `response.failed`, with the items that had finished.
    """

    media_type = "text/event-stream"
    heartbeat = b": keepalive\n\n"

    __slots__ = (
        "_calls",
        "_closed",
        "_context",
        "_done",
        "_finish",
        "_message",
        "_model",
        "_router",
        "_seq",
        "_text",
        "_usage",
    )

    def __init__(self, context: ResponsesContext) -> None:
        self._context = context
        self._seq = 0
        self._done: list[dict[str, Any]] = []  # finished output items, in output order
        self._message: tuple[int, str] | None = None  # (output_index, item id) of the open message
        self._text: list[str] = []
        self._calls: dict[int, list[Any]] = {}  # tool call index -> [output_index, item, argument pieces]
        self._closed = False
        self._finish: str | None = None
        self._usage: _Usage | None = None
        self._model: str | None = None
        self._router: Any = None

    def _emit(self, out: list[bytes], kind: str, data: dict[str, Any]) -> None:
        data = {"type": kind, "sequence_number": self._seq, **data}
        self._seq += 1
        out.append(_event(kind, data))

    def _next_index(self) -> int:
        return len(self._done) + (self._message is not None) + len(self._calls)

    def start(self) -> bytes:
        """`response.created` and `response.in_progress`, before the first chunk."""
        out: list[bytes] = []
        snapshot = self._context.response("in_progress", [], None, None)
        self._emit(out, "response.created", {"response": snapshot})
        self._emit(out, "response.in_progress", {"response": snapshot})
        return b"".join(out)

    def chunks(self, payloads: list[bytes]) -> bytes:
        """The events for chunk payloads that arrived together."""
        out: list[bytes] = []
        for payload in payloads:
            chunk = _completion.decode(payload)
            if chunk.model and self._model is None:
                self._model = chunk.model
            if chunk.usage is not None:
                self._usage = chunk.usage
            if chunk.router is not None:
                self._router = chunk.router
            for choice in chunk.choices[:1]:
                delta = choice.delta or choice.message or _Message()
                if delta.content:
                    self._content(out, delta.content)
                for call in delta.tool_calls or ():
                    self._tool_call(out, call)
                if choice.finish_reason:
                    self._finish = choice.finish_reason
        return b"".join(out)

    def _content(self, out: list[bytes], text: str) -> None:
        if self._message is None:
            self._close_calls(out)
            index, item_id = self._next_index(), new_id("msg_")
            self._message = (index, item_id)
            self._text = []
            item = _message_item(item_id, "", "in_progress")
            item["content"] = []
            self._emit(out, "response.output_item.added", {"output_index": index, "item": item})
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            self._emit(
                out,
                "response.content_part.added",
                {"item_id": item_id, "output_index": index, "content_index": 0, "part": part},
            )
        index, item_id = self._message
        self._text.append(text)
        self._emit(
            out,
            "response.output_text.delta",
            {"item_id": item_id, "output_index": index, "content_index": 0, "delta": text, "logprobs": []},
        )

    def _close_message(self, out: list[bytes]) -> None:
        if self._message is None:
            return
        index, item_id = self._message
        self._message = None
        text = "".join(self._text)
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        self._emit(out, "response.output_text.done", {**where, "text": text, "logprobs": []})
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        self._emit(out, "response.content_part.done", {**where, "part": part})
        item = _message_item(item_id, text, "completed")
        self._emit(out, "response.output_item.done", {"output_index": index, "item": item})
        self._done.append(item)

    def _tool_call(self, out: list[bytes], call: _ToolCall) -> None:
        function = call.function or _Function()
        state = self._calls.get(call.index)
        if state is None:
            self._close_message(out)
            self._close_calls(out)
            index = self._next_index()
            item = _call_item(
                new_id("fc_"), call.id or new_id("call_"), function.name or "", "", "in_progress"
            )
            state = self._calls[call.index] = [index, item, []]
            self._emit(out, "response.output_item.added", {"output_index": index, "item": dict(item)})
        elif function.name and not state[1]["name"]:
            state[1]["name"] = function.name
        arguments = _args_text(function.arguments)
        if arguments:
            state[2].append(arguments)
            self._emit(
                out,
                "response.function_call_arguments.delta",
                {"item_id": state[1]["id"], "output_index": state[0], "delta": arguments},
            )

    def _close_calls(self, out: list[bytes]) -> None:
        for index, item, pieces in self._calls.values():
            arguments = "".join(pieces)
            where = {"item_id": item["id"], "output_index": index}
            self._emit(out, "response.function_call_arguments.done", {**where, "arguments": arguments})
            done = {**item, "arguments": arguments, "status": "completed"}
            self._emit(out, "response.output_item.done", {"output_index": index, "item": done})
            self._done.append(done)
        self._calls.clear()

    def end(self) -> bytes:
        """Close the open items and send `response.completed` (or `response.incomplete`)."""
        out: list[bytes] = []
        self._close_message(out)
        self._close_calls(out)
        self._closed = True
        incomplete = self._finish == "length"
        status = "incomplete" if incomplete else "completed"
        response = self._context.response(
            status, self._done, _usage_object(self._usage), self._model, incomplete
        )
        closing: dict[str, Any] = {"response": response}
        if self._router is not None:  # a resumed answer: which upstreams served it (an extra field)
            closing["router"] = self._router
        self._emit(out, f"response.{status}", closing)
        text = "".join(item["content"][0]["text"] for item in self._done if item["type"] == "message")
        self._context.finished(text, [item for item in self._done if item["type"] == "function_call"])
        return b"".join(out)

    def error(self, reply: ErrorReply) -> bytes:
        """The failure of a stream that started: an `error` event, then `response.failed`."""
        out: list[bytes] = []
        try:
            body = msgspec.json.decode(reply.body).get("error") or {}
        except (msgspec.DecodeError, AttributeError):
            body = {}
        message = body.get("message") or "the answer failed after it started"
        code = body.get("code")
        self._emit(out, "error", {"code": code, "message": message, "param": body.get("param")})
        failure = {"code": "server_error" if reply.status >= 500 else code, "message": message}
        response = self._context.response("failed", self._done, None, self._model, error=failure)
        self._emit(out, "response.failed", {"response": response})
        return b"".join(out)


def _error_event(body: bytes) -> bytes:
    return b"event: error\ndata: " + body + b"\n\n"


ERRORS = ErrorDialect("openai_responses", OPENAI.media_type, OPENAI.body, _error_event)
"""Responses errors have OpenAI's body; a stream that started ends with `error` and `response.failed`."""


# ---- the front door ------------------------------------------------------------------------------------


async def load_conversation(
    sessions: Sessions | None, response_id: str, owner: str | None
) -> list[dict[str, Any]]:
    """The stored conversation of `response_id` for `owner`; ResponseNotFound (404) when there is none.

    The store answers an unknown id with an empty history (a chat session may start under any id); a
    stored response always holds at least its input, so empty means not there for this caller.
    """
    stored: list[dict[str, Any]] = []
    if sessions is not None:
        try:
            stored = await sessions.history(response_id, owner)
        except (
            SessionNotFound,
            InvalidRequest,
        ):  # another key's, or an id no response can have: the same "not found"
            stored = []
    if not stored:
        off = "" if sessions is not None else " (server-side conversations are off: sessions.enabled)"
        raise ResponseNotFound(
            f"no stored response {quoted(response_id)}{off}; it may have expired, been created with "
            "`store: false` or by another key: send the whole conversation in `input` instead",
            param="previous_response_id",
        )
    return prior_messages(stored)


class OpenAIResponses(ClientDialect):
    """`POST /v1/responses`: OpenAI's Responses API, on any route its `model` names."""

    name = "openai_responses"
    errors = ERRORS

    def parse(self, raw: bytes, headers: Headers) -> Inbound:
        """The request as a chat request; its own input is what a stored conversation gains."""
        request = parse_request(raw)
        sent = input_messages(request)
        typed, body = chat_body(request, sent)
        return Inbound(typed, body, ResponsesContext(request, sent))

    async def join_conversation(self, inbound: Inbound, sessions: Sessions | None, owner: str | None) -> None:
        """Put the conversation `previous_response_id` names before the input; store this one if asked."""
        context: ResponsesContext = inbound.context
        request = context.request
        if request.previous_response_id is not None:
            context.history = await load_conversation(sessions, request.previous_response_id, owner)
            inbound.body["messages"] = with_instructions(request, [*context.history, *context.sent])
        if request.store and sessions is not None:
            response_id = context.response_id

            def record(messages: list[dict[str, Any]], text: str) -> None:
                # Called while the answer is written (synchronously); the store is awaited by `settle`
                # for a whole answer, and finishes on its own for a stream that just ended.
                saving = sessions.record_turn(response_id, owner, messages, text, False)
                context.saving = asyncio.get_running_loop().create_task(_stored(saving, response_id))

            context.record = record

    async def settle(self, inbound: Inbound) -> None:
        """Wait for this response's conversation to be stored (a shared store's failure is a 503)."""
        saving = inbound.context.saving
        if saving is not None:
            inbound.context.saving = None
            await saving

    def answer(self, whole: bytes, inbound: Inbound) -> bytes:
        """The Response object (the conversation is stored on the way)."""
        return inbound.context.answer(whole)  # type: ignore[no-any-return]

    def stream(self, inbound: Inbound) -> StreamEncoder:
        """A fresh state machine per answer."""
        return ResponsesStream(inbound.context)


async def _stored(saving: Any, response_id: str) -> None:
    """Await one store of a conversation; a failure is logged (a stream's end has already gone)."""
    try:
        await saving
    except Exception as error:
        log.warning("response %s: conversation not stored: %s", quoted(response_id), error)
        raise


OPENAI_RESPONSES = OpenAIResponses()
"""The one instance: per-request state lives in `Inbound.context`."""
