"""OpenAI embeddings and text completions <-> Ollama's `/api/embed` and `/api/generate`, written once.

docs/dialects/embeddings_and_completions.md is the specification. The internal models are OpenAI's: an
embeddings request is an OpenAI `/v1/embeddings` body and its answer an OpenAI embeddings list (float
vectors); a text completion is an OpenAI `/v1/completions` body and its answer `text_completion` objects.

The internal bodies may carry a few of Ollama's own fields (`raw`, `images`, `system`, `template`, `format`,
`think`, `keep_alive`, `context`, `options`, `truncate`): a client speaking Ollama's API (the Ollama front
door) sends them, and an Ollama upstream receives them unchanged. Generation options follow the chat
mapping's precedence: route `options` < the body's Ollama `options` < OpenAI sampling fields < the route's
token cap (already applied to `max_tokens`).

What Ollama cannot do is refused with a 400 naming the field (`UnsupportedCall`), never silently dropped:
token-array inputs, several prompts in one request, `echo`, `logprobs`, `n`/`best_of` above 1.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import msgspec

from router.upstreams.base import UnsupportedCall
from router.upstreams.errors import BadUpstreamResponse
from router.upstreams.ollama_mapping import SAMPLING, add_sampling, usage

# Ollama's own `/api/generate` fields passed through as they are (the Ollama front door sends them).
GENERATE_PASSTHROUGH = ("raw", "images", "system", "template", "format", "think", "keep_alive", "context")
_FINISH_REASONS = {"stop": "stop", "length": "length", "load": "stop", "unload": "stop"}


def _options(body: Mapping[str, Any], route_options: Mapping[str, Any]) -> dict[str, Any]:
    options = dict(route_options)
    own = body.get("options")
    if isinstance(own, Mapping):
        options.update(own)
    return options


def _texts(value: Any, field: str) -> str | list[str]:
    """A string or a list of strings; token arrays (lists of integers) are refused."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise UnsupportedCall(
        f"ollama upstreams take `{field}` as text (a string or a list of strings), not token arrays; "
        "send the text itself, or use a route on an OpenAI-compatible upstream",
        param=field,
    )


def embed_request(body: Mapping[str, Any], model: str, route_options: Mapping[str, Any]) -> dict[str, Any]:
    """The `/api/embed` body for an OpenAI embeddings body: `input` as text, `dimensions` kept."""
    request: dict[str, Any] = {
        "model": model,
        "input": _texts(body.get("input"), "input"),
        "truncate": body.get("truncate") is not False,
    }
    dimensions = body.get("dimensions")
    if dimensions is not None:
        request["dimensions"] = dimensions
    keep_alive = body.get("keep_alive")
    if keep_alive is not None:
        request["keep_alive"] = keep_alive
    options = _options(body, route_options)
    if options:
        request["options"] = options
    return request


def embeddings_list(answer: Any, model: str, where: str) -> dict[str, Any]:
    """An `/api/embed` answer as an OpenAI embeddings list (vectors as floats, in input order)."""
    vectors = answer.get("embeddings") if isinstance(answer, dict) else None
    if not isinstance(vectors, list) or not all(isinstance(v, list) for v in vectors):
        raise BadUpstreamResponse(f"ollama at {where} answered JSON that is not an embeddings answer")
    prompt = int(answer.get("prompt_eval_count") or 0)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    }


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    """OpenAI completion options Ollama's `/api/generate` has no equivalent for: a 400, not a surprise."""
    if body.get("echo"):
        raise UnsupportedCall(
            "`echo` is not supported by ollama upstreams; prepend the prompt to the answer yourself",
            param="echo",
        )
    if body.get("logprobs") not in (None, 0, False):
        raise UnsupportedCall("`logprobs` is not supported by ollama upstreams", param="logprobs")
    for field in ("n", "best_of"):
        value = body.get(field)
        if value is not None and value != 1:
            raise UnsupportedCall(
                f"ollama upstreams answer one completion per request (`{field}` must be 1); send "
                "several requests instead",
                param=field,
            )


def _prompt(body: Mapping[str, Any]) -> str:
    prompt = _texts(body.get("prompt", ""), "prompt")
    if isinstance(prompt, str):
        return prompt
    if len(prompt) == 1:
        return prompt[0]
    raise UnsupportedCall(
        "ollama upstreams complete one prompt per request; send a string (or a list of one string)",
        param="prompt",
    )


def generate_request(
    body: Mapping[str, Any],
    model: str,
    max_tokens: int | None,
    route_options: Mapping[str, Any],
    stream: bool,
) -> dict[str, Any]:
    """The `/api/generate` body for an OpenAI completions body. `stream` is explicit: Ollama's default is
    true. Not `raw` unless asked: as Ollama's own `/v1/completions` does, the model's template applies
    (it is what places a `suffix` for fill-in-the-middle)."""
    _refuse_unsupported(body)
    options = _options(body, route_options)
    add_sampling(options, body, SAMPLING, max_tokens)
    request: dict[str, Any] = {"model": model, "prompt": _prompt(body), "stream": stream}
    suffix = body.get("suffix")
    if suffix is not None:
        request["suffix"] = suffix
    for key in GENERATE_PASSTHROUGH:
        value = body.get(key)
        if value is not None:
            request[key] = value
    if options:
        request["options"] = options
    return request


def finish_reason(line: Mapping[str, Any]) -> str | None:
    """Ollama's `done_reason` in OpenAI's words (None while the answer goes on)."""
    if not line.get("done"):
        return None
    return _FINISH_REASONS.get(line.get("done_reason") or "stop", "stop")


def text_completion(line: Mapping[str, Any], model: str, request_id: str) -> dict[str, Any]:
    """A non-streamed `/api/generate` answer as a `text_completion`."""
    text = line.get("response")
    return {
        "id": f"cmpl-{request_id}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "text": text if isinstance(text, str) else "",
                "logprobs": None,
                "finish_reason": finish_reason(line) or "stop",
            }
        ],
        "usage": usage(line),
    }


class TextChunkMapper:
    """Turns the lines of one `/api/generate` stream into `text_completion` chunk payloads.

    Every chunk repeats the id and creation time; the last choice chunk carries `finish_reason`, and with
    `stream_options.include_usage` a last chunk with empty `choices` carries `usage` (as OpenAI does).
    """

    __slots__ = ("_head", "_include_usage")

    def __init__(self, model: str, request_id: str, include_usage: bool) -> None:
        self._head = {
            "id": f"cmpl-{request_id}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
        }
        self._include_usage = include_usage

    def chunks(self, line: Mapping[str, Any]) -> list[bytes]:
        """The payloads for one Ollama line: a text chunk (if any text or the finish), the usage chunk."""
        text = line.get("response")
        text = text if isinstance(text, str) else ""
        reason = finish_reason(line)
        out = []
        if text or reason:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
            out.append(msgspec.json.encode({**self._head, "choices": [choice]}))
        if reason and self._include_usage:
            out.append(msgspec.json.encode({**self._head, "choices": [], "usage": usage(line)}))
        return out
