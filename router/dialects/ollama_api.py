"""Ollama's own API as a front door: its requests to the internal OpenAI model and the answers back.

Clients written for Ollama (the `ollama` Python and JavaScript libraries, Open WebUI, editor plugins)
speak `/api/chat` and `/api/generate`: NDJSON streams by default, options in `options`, tool-call
arguments as objects, durations in nanoseconds. This module is the pure translation between that dialect
and the router's internal one (OpenAI Chat Completions, what every upstream adapter speaks); it does no
I/O. docs/dialects/ollama_api.md is the specification, with the sources each detail was checked against.

Three parts: the request mapping (`chat_inbound`; `generate_inbound` to the text-completion call kind,
`embed_inbound` to the embeddings kind), the whole-answer mapping (`answer`, `embed_answer`) and the
stream state machine (`NDJSONEncoder`) that turns internal chunk payloads into Ollama lines, collecting
streamed tool-call fragments into the whole calls Ollama clients expect. The `ClientDialect`s at the end
bind them to the seam (router/dialects/base.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from router.dialects.base import ClientDialect, Headers, Inbound, StreamEncoder
from router.echo import shown
from router.errors import ErrorDialect, ErrorReply, InvalidRequest, RouterError
from router.protocol.openai_chat import ChatRequest, StreamOptions
from router.upstreams.ollama_mapping import OLLAMA_EXTRAS

# OLLAMA_EXTRAS, a router-only body key: the Ollama settings OpenAI has no words for (`options` such as
# `top_k` or `num_ctx`, `keep_alive`, `think`). An ollama upstream passes them on; an OpenAI one drops them.

NDJSON = "application/x-ndjson"

# Ollama options that OpenAI's request has a field for: they travel as those fields (both upstream kinds
# understand them); every other option travels in the extras, for ollama upstreams only.
_SAMPLING = ("temperature", "top_p", "seed", "frequency_penalty", "presence_penalty")
_MAPPED_OPTIONS = frozenset((*_SAMPLING, "stop", "num_predict"))
_DONE_REASONS = {"stop": "stop", "length": "length", "tool_calls": "stop", "content_filter": "stop"}
_THINK_LEVELS = ("low", "medium", "high")


# ==== the error shape =============================================================================


def _error_body(error: RouterError, message: str) -> bytes:
    return msgspec.json.encode({"error": message})


def _error_line(body: bytes) -> bytes:
    return body + b"\n"


OLLAMA_ERRORS = ErrorDialect("ollama", "application/json", _error_body, _error_line)
"""Ollama's `{"error": "..."}` with the status; mid-stream, a final line carrying the same object."""


# ==== requests ====================================================================================


class ToolFunction(msgspec.Struct):
    """A tool call's function in a message sent back: Ollama gives `arguments` as an object."""

    name: str
    arguments: dict[str, Any] | str | None = None


class ToolCall(msgspec.Struct):
    """One tool call of an assistant message in the history."""

    function: ToolFunction


class Message(msgspec.Struct):
    """One `/api/chat` message: `images` are base64 strings, `tool_name` names the tool a result is from."""

    role: Annotated[str, msgspec.Meta(min_length=1)]
    content: str | None = None
    images: list[str] | None = None
    thinking: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None


class Options(msgspec.Struct):
    """The `options` the router reads itself; every key (these included) is checked here, others pass."""

    num_predict: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    stop: str | list[str] | None = None


Format = str | dict[str, Any] | None
Think = bool | str | None
KeepAlive = str | float | None


class ChatBody(msgspec.Struct):
    """`POST /api/chat`."""

    model: Annotated[str, msgspec.Meta(min_length=1)]
    messages: list[Message] | None = None
    stream: bool = True  # Ollama streams unless told not to
    format: Format = None
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None
    think: Think = None
    tools: list[dict[str, Any]] | None = None


class GenerateBody(msgspec.Struct):
    """`POST /api/generate`; `template` and `context` are accepted and ignored (see the docs)."""

    model: Annotated[str, msgspec.Meta(min_length=1)]
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool | None = None
    images: list[str] | None = None
    stream: bool = True
    format: Format = None
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None
    think: Think = None


class EmbedBody(msgspec.Struct):
    """`POST /api/embed`: one text or a list of texts."""

    model: Annotated[str, msgspec.Meta(min_length=1)]
    input: str | list[str]
    truncate: bool | None = None
    dimensions: Annotated[int, msgspec.Meta(ge=1)] | None = None
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None


class EmbeddingsBody(msgspec.Struct):
    """`POST /api/embeddings`, the older endpoint: one `prompt`, one vector back."""

    model: Annotated[str, msgspec.Meta(min_length=1)]
    prompt: str = ""
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None


@dataclass(slots=True)
class Answering:
    """What translating the answer back needs: the name the client asked for, the kind, the clock."""

    model: str  # echoed in every line, as Ollama does
    generate: bool  # /api/generate lines carry `response`, /api/chat lines a `message`
    started_ns: int = field(default_factory=time.perf_counter_ns)


def decode(raw: bytes, kind: type[msgspec.Struct]) -> Any:
    """The body as `kind`; InvalidRequest naming the field otherwise (Ollama's `{"error"}` carries it)."""
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc), "") from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    except (UnicodeDecodeError, RecursionError):
        raise InvalidRequest("the request body is not valid UTF-8 JSON", code="invalid_json") from None


_AT = re.compile(r" - at `\$\.?(.*)`$")
_MISSING = re.compile(r"missing required field `([^`]+)`")


def _invalid(text: str, prefix: str) -> InvalidRequest:
    """msgspec's complaint as a 400 whose `param` is the field's path (`messages[0].role`)."""
    match = _AT.search(text)
    path = match.group(1) if match else ""
    message = text[: match.start()] if match else text
    missing = _MISSING.search(message)
    if missing:
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
    path = ".".join(p for p in (prefix, path) if p)
    where = f" (at `{shown(path)}`)" if path else ""
    return InvalidRequest(
        f"invalid request: {shown(message, 300)}{where}", param=shown(path) if path else None
    )


def chat_inbound(raw: bytes) -> Inbound:
    """`/api/chat` -> the internal request. An empty `messages` list is refused: there is nothing to say."""
    chat: ChatBody = decode(raw, ChatBody)
    if not chat.messages:
        raise InvalidRequest("`messages` must hold at least one message", param="messages")
    messages = _messages(chat.messages)
    return _translated(chat.model, messages, chat)


def generate_inbound(raw: bytes) -> Inbound:
    """`/api/generate` -> the internal text completion (an OpenAI `/v1/completions` body).

    `prompt` and `suffix` (fill-in-the-middle) are the completion's; Ollama's own fields that mean something
    only to Ollama (`system`, `images`, `raw`, `format`, `think`, `keep_alive`, the other `options`) ride
    along at the top level, where an ollama upstream reads them and an OpenAI-compatible one drops or
    refuses them (docs/dialects/embeddings_and_completions.md). `template` and `context` are ignored.
    """
    generate: GenerateBody = decode(raw, GenerateBody)
    _response_format(generate.format)  # checked as for chat; Ollama's own `format` goes on as written
    body: dict[str, Any] = {"model": generate.model, "prompt": generate.prompt or ""}
    if generate.suffix:
        body["suffix"] = generate.suffix
    request = _common(body, generate)
    for key in ("system", "images", "raw", "format", "think", "keep_alive"):
        value = getattr(generate, key)
        if value is not None:
            body[key] = value
    rest = {k: v for k, v in (generate.options or {}).items() if k not in _MAPPED_OPTIONS}
    if rest:
        body["options"] = rest
    return Inbound(request, body, Answering(generate.model, generate=True))


def _common(body: dict[str, Any], source: ChatBody | GenerateBody) -> ChatRequest:
    """The fields chat and completions share (stream, sampling, stop, token limit) into `body`; the typed
    request the router acts on."""
    known: Options = _options(source.options or {})
    body["stream"] = source.stream
    if source.stream:
        body["stream_options"] = {"include_usage": True}  # the final line's counts come from usage
    for key in _SAMPLING:
        value = getattr(known, key)
        if value is not None:
            body[key] = value
    stop = [known.stop] if isinstance(known.stop, str) else known.stop
    if stop:
        body["stop"] = stop
    # num_predict <= 0 means "no limit" (-1) or "fill the context" (-2): the route's cap applies then.
    max_tokens = known.num_predict if known.num_predict is not None and known.num_predict > 0 else None
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return ChatRequest(
        messages=[],  # the typed messages are not read past the door; the body carries them
        model=body["model"],
        stream=source.stream,
        stream_options=StreamOptions(include_usage=True) if source.stream else None,
        max_tokens=max_tokens,
        temperature=known.temperature,
        top_p=known.top_p,
        stop=stop or None,
        seed=known.seed,
    )


def _translated(model: str, messages: list[dict[str, Any]], source: ChatBody) -> Inbound:
    body: dict[str, Any] = {"model": model, "messages": messages}
    request = _common(body, source)
    response_format = _response_format(source.format)
    if response_format is not None:
        body["response_format"] = response_format
    if source.tools:
        body["tools"] = request.tools = source.tools
    if isinstance(source.think, str) and source.think in _THINK_LEVELS:
        body["reasoning_effort"] = source.think
    extras: dict[str, Any] = {}
    rest = {k: v for k, v in (source.options or {}).items() if k not in _MAPPED_OPTIONS}
    if rest:
        extras["options"] = rest
    if source.keep_alive is not None:
        extras["keep_alive"] = source.keep_alive
    if source.think is not None:
        extras["think"] = source.think
    if extras:
        body[OLLAMA_EXTRAS] = extras
    return Inbound(request, body, Answering(model, generate=False))


@dataclass(slots=True)
class EmbedAnswering:
    """What the embeddings answer needs: the name asked for, which endpoint (one vector or a list)."""

    model: str
    legacy: bool  # /api/embeddings: `{"embedding": [...]}`
    started_ns: int = field(default_factory=time.perf_counter_ns)


def embed_inbound(raw: bytes, legacy: bool) -> Inbound:
    """`/api/embed` (or the older `/api/embeddings`) -> an OpenAI embeddings body; `truncate`, `options` and
    `keep_alive` ride along for an ollama upstream (an OpenAI-compatible one drops them)."""
    source: EmbedBody | EmbeddingsBody
    if legacy:
        older: EmbeddingsBody = decode(raw, EmbeddingsBody)
        body: dict[str, Any] = {"model": older.model, "input": older.prompt}
        source = older
    else:
        embed: EmbedBody = decode(raw, EmbedBody)
        if not embed.input:
            raise InvalidRequest("`input` must be a non-empty text or list of texts", param="input")
        body = {"model": embed.model, "input": embed.input}
        if embed.truncate is not None:
            body["truncate"] = embed.truncate
        if embed.dimensions is not None:
            body["dimensions"] = embed.dimensions
        source = embed
    if source.options:
        body["options"] = source.options
    if source.keep_alive is not None:
        body["keep_alive"] = source.keep_alive
    request = ChatRequest(messages=[], model=source.model)
    return Inbound(request, body, EmbedAnswering(source.model, legacy))


def embed_answer(whole: bytes, context: EmbedAnswering) -> bytes:
    """An OpenAI embeddings list as Ollama's answer: `{"model", "embeddings", ...counts}` or, for the older
    endpoint, `{"embedding"}` (its one vector)."""
    listing = msgspec.json.decode(whole)
    data = sorted(listing.get("data") or [], key=lambda item: item.get("index", 0))
    vectors = [item.get("embedding") or [] for item in data]
    if context.legacy:
        return msgspec.json.encode({"embedding": vectors[0] if vectors else []})
    usage = listing.get("usage") or {}
    return msgspec.json.encode(
        {
            "model": context.model,
            "embeddings": vectors,
            "total_duration": time.perf_counter_ns() - context.started_ns,
            "load_duration": 0,
            "prompt_eval_count": int(usage.get("prompt_tokens") or 0),
        }
    )


def _options(options: Mapping[str, Any]) -> Options:
    try:
        return msgspec.convert(options, Options)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc), "options") from None


def _response_format(fmt: Format) -> dict[str, Any] | None:
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"name": "format", "schema": fmt}}
    raise InvalidRequest('`format` must be "json" or a JSON schema object', param="format")


def _image_url(data: str) -> str:
    """A base64 image as a data URL; the type is read from the first bytes (Ollama never says)."""
    if data.startswith("data:"):
        return data
    if data.startswith("/9j/"):
        mime = "image/jpeg"
    elif data.startswith("R0lGOD"):
        mime = "image/gif"
    elif data.startswith("UklGR"):
        mime = "image/webp"
    else:
        mime = "image/png"
    return f"data:{mime};base64,{data}"


def _user(content: str, images: list[str] | None, role: str = "user") -> dict[str, Any]:
    if not images:
        return {"role": role, "content": content}
    parts: list[dict[str, Any]] = [{"type": "text", "text": content}] if content else []
    parts += [{"type": "image_url", "image_url": {"url": _image_url(image)}} for image in images]
    return {"role": role, "content": parts}


def _messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Ollama's history as OpenAI's: tool calls get ids, and each tool result the id of its call.

    Ollama ties a result to its call by the tool's name (`tool_name`), OpenAI by an id. Calls are numbered
    in the order they appear; a result takes the oldest unanswered call of its tool (or, without a name,
    the oldest unanswered call of any tool).
    """
    out: list[dict[str, Any]] = []
    pending: list[tuple[str, str]] = []  # (id, tool name) of calls not answered yet
    count = 0
    for message in messages:
        if message.role == "tool":
            call_id = _answered(pending, message.tool_name)
            out.append({"role": "tool", "content": message.content or "", "tool_call_id": call_id})
            continue
        converted = _user(message.content or "", message.images, message.role)
        if message.tool_calls:
            calls = []
            for call in message.tool_calls:
                call_id = f"call_{count}"
                count += 1
                pending.append((call_id, call.function.name))
                arguments = call.function.arguments
                text = (
                    arguments if isinstance(arguments, str) else msgspec.json.encode(arguments or {}).decode()
                )
                calls.append(
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": call.function.name, "arguments": text},
                    }
                )
            converted["tool_calls"] = calls
        out.append(converted)
    return out


def _answered(pending: list[tuple[str, str]], name: str | None) -> str:
    for i, (call_id, tool) in enumerate(pending):
        if name is None or tool == name:
            del pending[i]
            return call_id
    return f"call_{name}" if name else "call_0"


# ==== answers =====================================================================================


def created_at() -> str:
    """Now, as Ollama writes `created_at` (RFC 3339 in UTC)."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _arguments(text: Any) -> Any:
    """OpenAI's JSON-text arguments as the object Ollama sends; text that is not an object stays text
    under `arguments`, so nothing the model wrote is lost."""
    if isinstance(text, dict):
        return text
    if not text:
        return {}
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return {"arguments": text}
    return value if isinstance(value, dict) else {"arguments": value}


def _tool_calls(calls: list[Any]) -> list[dict[str, Any]]:
    out = []
    for call in calls:
        function = (call.get("function") or {}) if isinstance(call, dict) else {}
        out.append(
            {
                "function": {
                    "name": function.get("name") or "",
                    "arguments": _arguments(function.get("arguments")),
                }
            }
        )
    return out


def _thinking(part: Mapping[str, Any]) -> str | None:
    """The model's reasoning, under either name OpenAI-compatible servers use."""
    return part.get("reasoning_content") or part.get("reasoning") or None


def _counts(context: Answering, usage: Any, first_ns: int | None, estimate: int) -> dict[str, Any]:
    """The final line's counters. Durations are the router's own clock (it cannot see the model's):
    prompt evaluation until the first token, generation after it; the load time is unknown, so 0."""
    now = time.perf_counter_ns()
    first = first_ns if first_ns is not None else now
    prompt = completion = None
    if isinstance(usage, dict):
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return {
        "total_duration": now - context.started_ns,
        "load_duration": 0,
        "prompt_eval_count": int(prompt or 0),
        "prompt_eval_duration": max(first - context.started_ns, 0),
        "eval_count": int(completion if completion is not None else estimate),
        "eval_duration": now - first,
    }


def _line(
    context: Answering, text: str, thinking: str | None, calls: list[dict[str, Any]] | None
) -> dict[str, Any]:
    line: dict[str, Any] = {"model": context.model, "created_at": created_at()}
    if context.generate:
        line["response"] = text
        if thinking:
            line["thinking"] = thinking
    else:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if thinking:
            message["thinking"] = thinking
        if calls:
            message["tool_calls"] = calls
        line["message"] = message
    return line


def answer(whole: bytes, context: Answering) -> bytes:
    """A `chat.completion` (or `text_completion`) as Ollama's one-object answer (`stream: false`)."""
    completion = msgspec.json.decode(whole)
    choices = completion.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    text = choice.get("text") if "text" in choice else message.get("content")
    calls = _tool_calls(message.get("tool_calls") or [])
    line = _line(context, text or "", _thinking(message), calls or None)
    line["done"] = True
    line["done_reason"] = _DONE_REASONS.get(choice.get("finish_reason") or "stop", "stop")
    line.update(_counts(context, completion.get("usage"), None, 0))
    line["prompt_eval_duration"] = 0  # a whole answer has no first-token time to split at
    return msgspec.json.encode(line)


class NDJSONEncoder:
    """One streamed answer, from internal chunk payloads to Ollama's NDJSON lines.

    Content and reasoning deltas become one line each as they come. Tool calls arrive from OpenAI servers
    in fragments (a name, then pieces of the arguments' JSON text); Ollama clients expect each call whole,
    with its arguments as an object, so the fragments are collected and the calls sent in one line when
    the choice finishes (Ollama sends them in a `done: false` line too). The `done: true` line closes the
    stream with the counters, once the upstream's usage (which follows the finish) has arrived.
    """

    media_type = NDJSON

    __slots__ = ("_calls", "_context", "_estimate", "_finish", "_first_ns", "_router", "_usage", "heartbeat")

    def __init__(self, context: Answering) -> None:
        self._context = context
        self._calls: dict[int, dict[str, Any]] = {}  # index -> {"name", "arguments": [pieces]}
        self._finish: str | None = None
        self._usage: Any = None
        self._first_ns: int | None = None
        self._estimate = 0  # content chunks seen: the token count when the upstream reports none
        self._router: Any = None  # a resumed answer's `router` field (router.resume), for the done line
        # The heartbeat is an empty, unfinished answer line: what Ollama itself sends while a model thinks
        # silently. Not a blank line: the official clients `json.loads` every line, and a blank one raises.
        self.heartbeat = msgspec.json.encode(_line(context, "", None, None) | {"done": False}) + b"\n"

    def start(self) -> bytes:
        """Nothing comes before the first line in NDJSON."""
        return b""

    def chunks(self, payloads: list[bytes]) -> bytes:
        """The lines for chunk payloads that arrived together (one write, however many lines)."""
        lines: list[bytes] = []
        for payload in payloads:
            chunk = msgspec.json.decode(payload)
            if not isinstance(chunk, dict):
                continue
            if chunk.get("usage"):
                self._usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                if choice.get("index", 0) == 0:
                    self._choice(choice, lines)
            if "router" in chunk:
                self._router = chunk["router"]
        return b"".join(lines)

    def _choice(self, choice: dict[str, Any], lines: list[bytes]) -> None:
        delta = choice.get("delta") or {}
        text = choice.get("text") if "text" in choice else delta.get("content")
        thinking = _thinking(delta)
        if text or thinking:
            if self._first_ns is None:
                self._first_ns = time.perf_counter_ns()
            self._estimate += 1
            line = _line(self._context, text or "", thinking, None)
            line["done"] = False
            lines.append(msgspec.json.encode(line) + b"\n")
        for call in delta.get("tool_calls") or ():
            self._collect(call)
        reason = choice.get("finish_reason")
        if reason:
            self._finish = reason
            self._flush_calls(lines)

    def _collect(self, call: dict[str, Any]) -> None:
        index = call.get("index", len(self._calls))
        entry = self._calls.setdefault(index, {"name": "", "arguments": []})
        function = call.get("function") or {}
        if function.get("name"):
            entry["name"] += function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            entry["arguments"].append(arguments)
        elif isinstance(arguments, dict):
            entry["arguments"] = [msgspec.json.encode(arguments).decode()]

    def _flush_calls(self, lines: list[bytes]) -> None:
        if not self._calls or self._context.generate:
            self._calls.clear()
            return
        calls = [
            {"function": {"name": entry["name"], "arguments": _arguments("".join(entry["arguments"]))}}
            for _, entry in sorted(self._calls.items())
        ]
        self._calls.clear()
        if self._first_ns is None:
            self._first_ns = time.perf_counter_ns()
        line = _line(self._context, "", None, calls)
        line["done"] = False
        lines.append(msgspec.json.encode(line) + b"\n")

    def end(self) -> bytes:
        """Any calls not sent yet, then the `done: true` line with `done_reason` and the counters."""
        lines: list[bytes] = []
        self._flush_calls(lines)
        line = _line(self._context, "", None, None)
        line["done"] = True
        line["done_reason"] = _DONE_REASONS.get(self._finish or "stop", "stop")
        line.update(_counts(self._context, self._usage, self._first_ns, self._estimate))
        if self._router is not None:  # a resumed answer: which upstreams served it (an extra field)
            line["router"] = self._router
        lines.append(msgspec.json.encode(line) + b"\n")
        return b"".join(lines)

    def error(self, reply: ErrorReply) -> bytes:
        """A failure after the stream started: a last line `{"error": "..."}` (the clients raise it)."""
        return reply.body + b"\n"


# ==== the dialects ================================================================================


class OllamaChat(ClientDialect):
    """`POST /api/chat`."""

    name = "ollama_chat"
    errors = OLLAMA_ERRORS

    def parse(self, raw: bytes, headers: Headers) -> Inbound:
        """The Ollama chat request as the internal one."""
        return chat_inbound(raw)

    def answer(self, whole: bytes, inbound: Inbound) -> bytes:
        """The whole answer as Ollama's one object."""
        return answer(whole, inbound.context)

    def stream(self, inbound: Inbound) -> StreamEncoder:
        """A fresh NDJSON encoder (it collects tool calls and the final counts)."""
        return NDJSONEncoder(inbound.context)


class OllamaGenerate(OllamaChat):
    """`POST /api/generate`: a text completion; answers as `response` lines."""

    name = "ollama_generate"
    kind = "completions"

    def parse(self, raw: bytes, headers: Headers) -> Inbound:
        """The Ollama generate request as the internal text completion."""
        return generate_inbound(raw)


class OllamaEmbed(ClientDialect):
    """`POST /api/embed` (`legacy`: the older `POST /api/embeddings`); never streamed."""

    errors = OLLAMA_ERRORS
    kind = "embeddings"

    def __init__(self, legacy: bool) -> None:
        self.legacy = legacy
        self.name = "ollama_embeddings" if legacy else "ollama_embed"

    def parse(self, raw: bytes, headers: Headers) -> Inbound:
        """The Ollama embeddings request as the internal one."""
        return embed_inbound(raw, self.legacy)

    def answer(self, whole: bytes, inbound: Inbound) -> bytes:
        """The embeddings list as Ollama's answer."""
        return embed_answer(whole, inbound.context)

    def stream(self, inbound: Inbound) -> StreamEncoder:
        """Never called: an embeddings request is not streamed."""
        raise InvalidRequest("embeddings are not streamed")


OLLAMA_CHAT = OllamaChat()
OLLAMA_GENERATE = OllamaGenerate()
OLLAMA_EMBED = OllamaEmbed(legacy=False)
OLLAMA_EMBEDDINGS = OllamaEmbed(legacy=True)
