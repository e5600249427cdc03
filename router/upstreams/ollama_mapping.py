"""The OpenAI <-> Ollama translation table, written once for streaming and non-streaming alike.

docs/protocols.md, "Translation OpenAI -> Ollama", is the specification. Precedence of generation options:
route `options` are the base, the client's sampling parameters win over them, and the route's token cap
wins over everything (it was applied before `max_tokens` reaches this module).

The request body was type-checked at the door (`router.api.request.ChatRequest`): the fields read here
have the types that model gives them, though optional ones may still be null.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import msgspec

_FINISH_REASONS = {"stop": "stop", "length": "length", "load": "stop", "unload": "stop"}
SAMPLING = ("temperature", "top_p", "seed", "frequency_penalty", "presence_penalty")
"""OpenAI sampling fields Ollama takes under the same names in `options` (chat and generate alike)."""
# The Ollama front door's settings OpenAI has no words for, under one router-only key of the internal body
# (router.dialects.ollama_api.OLLAMA_EXTRAS): `options` (below the client's sampling fields and the cap),
# `keep_alive` and `think`, passed to Ollama as the client wrote them.
OLLAMA_EXTRAS = "ollama"
_EXTRA_FIELDS = ("keep_alive", "think")
_EXTRA_SAMPLING = ("top_k",)  # not OpenAI's, but what OpenAI-compatible servers (and Anthropic clients) send


def chat_request(
    body: Mapping[str, Any],
    model: str,
    max_tokens: int | None,
    route_options: Mapping[str, Any],
    stream: bool,
) -> dict[str, Any]:
    """The `/api/chat` body for an OpenAI request. `stream` is always explicit: Ollama defaults to true."""
    options = dict(route_options)
    extras = body.get(OLLAMA_EXTRAS)
    if extras:
        options.update(extras.get("options") or {})
    add_sampling(options, body, SAMPLING + _EXTRA_SAMPLING, max_tokens)
    request: dict[str, Any] = {
        "model": model,
        "messages": [_message(m) for m in body["messages"]],
        "stream": stream,
        "options": options,
    }
    if body.get("tools"):
        request["tools"] = body["tools"]
    if body.get("reasoning_effort"):  # OpenAI's reasoning knob (Anthropic's `thinking`): Ollama's `think`
        request["think"] = True
    if extras:
        for key in _EXTRA_FIELDS:
            if key in extras:
                request[key] = extras[key]
    response_format = body.get("response_format")
    if isinstance(response_format, dict):
        if response_format.get("type") == "json_object":
            request["format"] = "json"
        elif response_format.get("type") == "json_schema":
            request["format"] = (response_format.get("json_schema") or {}).get("schema") or "json"
    return request


def _message(message: Mapping[str, Any]) -> dict[str, Any]:
    """One message: text parts joined, image parts moved to `images`, tool-call arguments as objects."""
    out: dict[str, Any] = {"role": message["role"]}
    content = message.get("content")
    if isinstance(content, list):
        texts, images = [], []
        for part in content:
            if part.get("type") == "text":
                texts.append(part.get("text") or "")
            elif part.get("type") == "image_url":
                url = (part.get("image_url") or {}).get("url", "")
                images.append(url.split(",", 1)[1] if url.startswith("data:") else url)
        out["content"] = "\n".join(texts)
        if images:
            out["images"] = images
    else:
        out["content"] = content or ""
    if message.get("tool_calls"):
        out["tool_calls"] = [_tool_call_to_ollama(call) for call in message["tool_calls"]]
    return out


def _tool_call_to_ollama(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = msgspec.json.decode(arguments)
        except msgspec.DecodeError:
            pass
    return {"function": {"name": function.get("name"), "arguments": arguments}}


def _tool_calls_to_openai(
    calls: list[dict[str, Any]], request_id: str, first: int = 0
) -> list[dict[str, Any]]:
    """Ollama's whole calls as OpenAI's; `first` numbers them on from the calls of earlier stream lines."""
    return [
        {
            "index": i,
            "id": f"call_{request_id}_{i}",
            "type": "function",
            "function": {
                "name": (call.get("function") or {}).get("name"),
                "arguments": msgspec.json.encode((call.get("function") or {}).get("arguments", {})).decode(),
            },
        }
        for i, call in enumerate(calls, first)
    ]


def finish_reason(line: Mapping[str, Any]) -> str | None:
    """Ollama's `done_reason` in OpenAI's words (None while the answer goes on)."""
    if not line.get("done"):
        return None
    if (line.get("message") or {}).get("tool_calls"):
        return "tool_calls"
    return _FINISH_REASONS.get(line.get("done_reason") or "stop", "stop")


def usage(line: Mapping[str, Any]) -> dict[str, int]:
    """Ollama's counters as OpenAI usage."""
    prompt = int(line.get("prompt_eval_count") or 0)
    completion = int(line.get("eval_count") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion(line: Mapping[str, Any], model: str, request_id: str) -> dict[str, Any]:
    """A non-streamed Ollama answer as a `chat.completion`."""
    message = line.get("message") or {}
    out_message: dict[str, Any] = {"role": "assistant", "content": message.get("content", "")}
    if message.get("thinking"):
        out_message["reasoning_content"] = message["thinking"]
    if message.get("tool_calls"):
        out_message["tool_calls"] = _tool_calls_to_openai(message["tool_calls"], request_id)
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": out_message, "finish_reason": finish_reason(line) or "stop"}],
        "usage": usage(line),
    }


class ChunkMapper:
    """Turns the lines of one Ollama stream into `chat.completion.chunk` payloads.

    It keeps the little state a stream needs: the id and creation time every chunk repeats, and whether
    the role was already announced (OpenAI sends it in the first delta only).
    """

    __slots__ = ("_calls", "_head", "_include_usage", "_request_id", "_role_sent")

    def __init__(self, model: str, request_id: str, include_usage: bool) -> None:
        created = int(time.time())
        self._head = {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        self._request_id = request_id
        self._include_usage = include_usage
        self._role_sent = False
        # Tool calls seen so far: Ollama may send each call in a line of its own, and OpenAI clients tell
        # calls apart by `index` (the same index twice is one call's fragments, merged).
        self._calls = 0

    def chunks(self, line: Mapping[str, Any]) -> list[bytes]:
        """The payloads for one Ollama line: a content delta, the finish chunk, the usage chunk."""
        message = line.get("message") or {}
        delta: dict[str, Any] = {}
        if not self._role_sent:
            delta["role"] = "assistant"
            self._role_sent = True
        content = message.get("content")
        if content:
            delta["content"] = content
        if message.get("thinking"):
            delta["reasoning_content"] = message["thinking"]
        if message.get("tool_calls"):
            delta["tool_calls"] = _tool_calls_to_openai(message["tool_calls"], self._request_id, self._calls)
            self._calls += len(message["tool_calls"])
        reason = finish_reason(line)
        out = []
        if delta or reason:
            choice = {"index": 0, "delta": delta, "finish_reason": reason}
            out.append(msgspec.json.encode({**self._head, "choices": [choice]}))
        if reason and self._include_usage:
            out.append(msgspec.json.encode({**self._head, "choices": [], "usage": usage(line)}))
        return out


def add_sampling(
    options: dict[str, Any], body: Mapping[str, Any], keys: tuple[str, ...], max_tokens: int | None
) -> None:
    """OpenAI sampling fields into Ollama `options`: each of `keys` the client set, `stop` as a list, and
    the (capped) token limit as `num_predict`. Client values win over the route's options already there."""
    for key in keys:
        value = body.get(key)
        if value is not None:
            options[key] = value
    stop = body.get("stop")
    if stop is not None:
        options["stop"] = [stop] if isinstance(stop, str) else list(stop)
    if max_tokens is not None:
        options["num_predict"] = max_tokens
