"""A fake Ollama: `/api/chat` and `/api/generate` as NDJSON (stream is the default!), `/api/embed` and the
legacy `/api/embeddings`, plus the probe endpoints. Every POST endpoint fails on command alike."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from aiohttp import web

from ._base import (
    DEFAULT_DIMENSIONS,
    BadRequest,
    FakeUpstream,
    Frames,
    ProbeMaker,
    Reply,
    count_prompt_tokens,
    count_words,
    fake_vector,
    final_assistant_text,
    json_bytes,
)

OLLAMA_VERSION = "0.9.0"
_JSON = "application/json"
_MODIFIED_AT = "2025-01-01T00:00:00Z"
_VERSION_BODY = json_bytes({"version": OLLAMA_VERSION})


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _tool_calls(reply: Reply) -> list[dict[str, Any]]:
    """Ollama's `message.tool_calls`: arguments as an object, no ids."""
    return [{"function": {"name": name, "arguments": arguments}} for name, arguments in reply.tool_calls]


def _counters(reply: Reply, prompt_count: bool = True) -> bytes:
    """The trailing fields of the `done` object, in nanoseconds like Ollama (1 ms per fake token).

    Without `prompt_count`, `prompt_eval_count` is left out, as Ollama does when the prompt was cached.
    """
    eval_count = len(reply.pieces)
    prompt_ns = 100_000 * reply.prompt_tokens
    eval_ns = 1_000_000 * max(eval_count, 1)
    load_ns = 1_000_000
    fields = {
        "done_reason": reply.finish_reason,
        "total_duration": load_ns + prompt_ns + eval_ns,
        "load_duration": load_ns,
        "prompt_eval_count": reply.prompt_tokens,
        "prompt_eval_duration": prompt_ns,
        "eval_count": eval_count,
        "eval_duration": eval_ns,
    }
    if not prompt_count:
        del fields["prompt_eval_count"]
    return json_bytes(fields)[1:]  # without "{": spliced after `"done":true,`


class FakeOllama(FakeUpstream):
    """`base_url` is the server root, e.g. http://127.0.0.1:PORT (Ollama has no /v1 prefix)."""

    kind: ClassVar[str] = "ollama"
    default_models: ClassVar[tuple[str, ...]] = ("qwen3:32b", "qwen2:7b")
    chat_path: ClassVar[str] = "/api/chat"
    stream_content_type: ClassVar[str] = "application/x-ndjson"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.loaded: list[str] = []  # what /api/ps reports; a model joins on its first chat
        # (model, pieces, finish, prompt_tokens) -> (content line suffixes, done line suffix)
        self._suffixes: dict[tuple[Any, ...], tuple[tuple[bytes, ...], bytes]] = {}
        super().__init__(*args, **kwargs)

    def reset(self) -> None:
        super().reset()
        self.loaded = []
        self.send_prompt_count = True  # False: leave prompt_eval_count out (a cached prompt)
        self.continues = True  # /api/chat continues a final assistant message, as Ollama does

    def probe_routes(self) -> dict[str, ProbeMaker]:
        return {
            "/": lambda: web.Response(text="Ollama is running"),
            "/api/tags": self._tags,
            "/api/version": lambda: web.Response(body=_VERSION_BODY, content_type=_JSON),
            "/api/ps": self._ps,
        }

    @staticmethod
    def _model_entry(name: str) -> dict[str, Any]:
        family = name.split(":", 1)[0]
        tag = name.split(":", 1)[1] if ":" in name else "latest"
        return {
            "name": name,
            "model": name,
            "modified_at": _MODIFIED_AT,
            "size": 1_000_000_000,
            "digest": hashlib.sha256(name.encode()).hexdigest(),
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": family,
                "families": [family],
                "parameter_size": tag.upper() if tag[:1].isdigit() else "7B",
                "quantization_level": "Q4_K_M",
            },
        }

    def _tags(self) -> web.Response:
        models = [self._model_entry(name) for name in self.models]
        return web.Response(body=json_bytes({"models": models}), content_type=_JSON)

    def _ps(self) -> web.Response:
        expires = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
        models = [
            {**self._model_entry(name), "expires_at": expires, "size_vram": 1_000_000_000}
            for name in list(self.loaded)
        ]
        return web.Response(body=json_bytes({"models": models}), content_type=_JSON)

    # ---- chat -----------------------------------------------------------------------------------

    def parse_chat(self, body: dict[str, Any]) -> Reply:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("model is required")
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise BadRequest("options must be an object")
        num_predict = options.get("num_predict")
        # Ollama: -1 = unlimited, -2 = fill the context.
        limit = num_predict if isinstance(num_predict, int) and num_predict >= 0 else None
        pieces, finish = self.reply_pieces(body, limit)
        return Reply(
            model=model,
            pieces=pieces,
            finish_reason=finish,  # Ollama says "stop" after tool calls too
            prompt_tokens=count_prompt_tokens(body.get("messages")),
            stream=body.get("stream", True) is not False,  # absent means true
            tool_calls=self.reply_calls(body),
        )

    def call_kinds(self) -> dict[str, str]:
        return {
            "/api/chat": "chat",
            "/api/generate": "completions",
            "/api/embed": "embed",
            "/api/embeddings": "embeddings",
        }

    def parse_call(self, kind: str, body: dict[str, Any]) -> Reply:
        if kind == "chat":
            return self.parse_chat(body)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("model is required")
        if kind == "completions":
            return self._parse_generate(model, body)
        if kind == "embeddings":  # legacy: one `prompt`, one `embedding`
            prompt = body.get("prompt")
            if not isinstance(prompt, str):
                raise BadRequest("prompt must be a string")
            vector = fake_vector(prompt, DEFAULT_DIMENSIONS)
            return Reply(model, (), "stop", count_words(prompt), False, kind=kind, extra=vector)
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not all(isinstance(item, str) for item in inputs):
            raise BadRequest("invalid input type")
        dimensions = body.get("dimensions") or DEFAULT_DIMENSIONS
        if not isinstance(dimensions, int) or dimensions < 1:
            raise BadRequest("dimensions must be a positive integer")
        vectors = [fake_vector(text, dimensions) for text in inputs]
        return Reply(model, (), "stop", count_words(inputs), False, kind=kind, extra=vectors)

    def _parse_generate(self, model: str, body: dict[str, Any]) -> Reply:
        """`/api/generate`: the usual pieces; a `suffix` is echoed as a last piece ` [suffix: ...]`."""
        prompt = body.get("prompt", "")
        if not isinstance(prompt, str):
            raise BadRequest("prompt must be a string")
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise BadRequest("options must be an object")
        num_predict = options.get("num_predict")
        limit = num_predict if isinstance(num_predict, int) and num_predict >= 0 else None
        suffix = body.get("suffix")
        pieces, finish = self.reply_pieces(body, None)
        if isinstance(suffix, str) and suffix:
            pieces = (*pieces, f" [suffix: {suffix}]")
        if limit is not None and limit < len(pieces):
            pieces, finish = pieces[:limit], "length"
        prompt_tokens = count_words(prompt) + count_words(body.get("system") or "")
        return Reply(
            model, pieces, finish, prompt_tokens, body.get("stream", True) is not False, kind="completions"
        )

    def continued_prefix(self, body: dict[str, Any]) -> str | None:
        """Ollama's /api/chat continues a final assistant message by itself (`continues` turns it off)."""
        return final_assistant_text(body) if self.continues else None

    def on_chat_accepted(self, reply: Reply) -> None:
        if reply.model not in self.loaded:
            self.loaded.append(reply.model)

    def error_response(self, status: int, message: str) -> web.Response:
        return web.Response(status=status, body=json_bytes({"error": message}), content_type=_JSON)

    def not_found(self, request: web.BaseRequest) -> web.Response:
        return web.Response(status=404, text="404 page not found")

    def model_not_found(self, model: str) -> web.Response:
        return self.error_response(404, f'model "{model}" not found, try pulling it first')

    def _cached_suffixes(self, reply: Reply) -> tuple[tuple[bytes, ...], bytes]:
        key = (reply.model, reply.pieces, reply.finish_reason, reply.prompt_tokens, self.send_prompt_count)
        cached = None if reply.tool_calls else self._suffixes.get(key)
        if cached is None:
            content = tuple(
                b'"message":{"role":"assistant","content":'
                + json.dumps(piece, ensure_ascii=False).encode()
                + b'},"done":false}\n'
                for piece in reply.pieces
            )
            if reply.tool_calls:  # Ollama streams each call whole, in a line of its own before `done`
                content += (
                    b'"message":{"role":"assistant","content":"","tool_calls":'
                    + json_bytes(_tool_calls(reply))
                    + b'},"done":false}\n',
                )
            done = (
                b'"message":{"role":"assistant","content":""},"done":true,'
                + _counters(reply, self.send_prompt_count)
                + b"\n"
            )
            if len(self._suffixes) > 256:
                self._suffixes.clear()
            cached = self._suffixes[key] = (content, done)
        return cached

    def _prefix(self, reply: Reply) -> bytes:
        model = json.dumps(reply.model).encode()
        return b'{"model":' + model + b',"created_at":"' + _now_rfc3339().encode() + b'",'

    def stream_frames(self, reply: Reply) -> Frames:
        prefix = self._prefix(reply)
        if reply.kind == "completions":
            content = tuple(
                prefix + b'"response":' + json_bytes(piece) + b',"done":false}\n' for piece in reply.pieces
            )
            tail = prefix + b'"response":"","done":true,"context":[1,2,3],' + _counters(reply) + b"\n"
            return Frames(head=(), content=content, tail=tail)
        content, done = self._cached_suffixes(reply)
        return Frames(head=(), content=tuple(prefix + suffix for suffix in content), tail=prefix + done)

    def full_body(self, reply: Reply) -> bytes:
        if reply.kind == "embed":
            return json_bytes(
                {
                    "model": reply.model,
                    "embeddings": reply.extra,
                    "total_duration": 1_000_000,
                    "load_duration": 100_000,
                    "prompt_eval_count": reply.prompt_tokens,
                }
            )
        if reply.kind == "embeddings":
            return json_bytes({"embedding": reply.extra})
        if reply.kind == "completions":
            return (
                self._prefix(reply)
                + b'"response":'
                + json_bytes(reply.text)
                + b',"done":true,"context":[1,2,3],'
                + _counters(reply)
            )
        return (
            self._prefix(reply)
            + b'"message":{"role":"assistant","content":'
            + json.dumps(reply.text, ensure_ascii=False).encode()
            + (b',"tool_calls":' + json_bytes(_tool_calls(reply)) if reply.tool_calls else b"")
            + b'},"done":true,'
            + _counters(reply, self.send_prompt_count)
        )

    def error_frame(self, message: str) -> bytes:
        return json_bytes({"error": message}) + b"\n"

    def malformed_frame(self) -> bytes:
        return b"this is not json {\n"

    def endless_line_head(self) -> bytes:
        return b'{"model":"endless","message":{"role":"assistant","content":"'

    def flood_frame(self) -> bytes:
        return b"\n"
