"""A fake OpenAI-compatible server (vLLM / llama.cpp style): chat completions, text completions
(`/v1/completions`, SSE `text_completion` chunks), embeddings (`/v1/embeddings`, float or base64),
/v1/models, /health. Every POST endpoint fails on command alike."""

from __future__ import annotations

import base64
import json
import struct
import time
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

_JSON = "application/json"
_DONE = b"data: [DONE]\n\n"

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    504: "timeout",
}


def error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def _error_object(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _usage(reply: Reply) -> dict[str, int]:
    completion = len(reply.pieces)
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": reply.prompt_tokens + completion,
    }


def _choice_chunk(delta: dict[str, Any], finish_reason: str | None, include_usage: bool) -> bytes:
    """Everything of a chunk event after the per-response `data: {"id":..,"created":..,"model":..,`."""
    chunk: dict[str, Any] = {
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    }
    if include_usage:
        chunk["usage"] = None  # as OpenAI does on every chunk but the last when usage was asked
    return json_bytes(chunk)[1:] + b"\n\n"


def _call_id(reply: Reply, index: int) -> str:
    return f"call_fake{index}"


def _message(reply: Reply) -> dict[str, Any]:
    """The assistant message of a whole answer: its text, and its tool calls (arguments as JSON text)."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.tool_calls:
        message["content"] = reply.text or None
        message["tool_calls"] = [
            {
                "id": _call_id(reply, i),
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
            for i, (name, arguments) in enumerate(reply.tool_calls)
        ]
    return message


def _tool_call_deltas(reply: Reply) -> list[dict[str, Any]]:
    """A streamed tool call as OpenAI sends it: id and name first, then the arguments JSON in pieces."""
    deltas: list[dict[str, Any]] = []
    for i, (name, arguments) in enumerate(reply.tool_calls):
        start = {"index": i, "id": _call_id(reply, i), "type": "function"}
        deltas.append({"tool_calls": [{**start, "function": {"name": name, "arguments": ""}}]})
        text = json.dumps(arguments)
        half = len(text) // 2
        for piece in (text[:half], text[half:]):
            if piece:
                deltas.append({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
    return deltas


class FakeOpenAI(FakeUpstream):
    """`base_url` includes /v1 (http://127.0.0.1:PORT/v1), as a router's openai upstream expects.

    Set `api_key` to require `Authorization: Bearer <key>` on /v1/* (401 otherwise).
    """

    kind: ClassVar[str] = "openai"
    default_models: ClassVar[tuple[str, ...]] = ("smollm2",)
    chat_path: ClassVar[str] = "/v1/chat/completions"
    stream_content_type: ClassVar[str] = "text/event-stream"

    def __init__(self, *args: Any, api_key: str | None = None, **kwargs: Any) -> None:
        self._initial_api_key = api_key
        self.api_key = api_key
        # (model, pieces, finish, prompt_tokens, include_usage) -> (content suffixes, tail suffixes)
        self._suffixes: dict[tuple[Any, ...], tuple[bytes, tuple[bytes, ...], tuple[bytes, ...]]] = {}
        super().__init__(*args, **kwargs)

    def reset(self) -> None:
        super().reset()
        self.api_key = self._initial_api_key
        # False: no usage at all, asked or not (llama-cpp-python ignores stream_options.include_usage)
        self.send_usage = True
        # How this server continues a final assistant message (the router's `continuation:`): "vllm" only
        # with continue_final_message: true and add_generation_prompt: false, "llama_cpp" always (assistant
        # prefill), None never (it answers the conversation anew, as OpenAI's own API does)
        self.continuation: str | None = None

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def probe_routes(self) -> dict[str, ProbeMaker]:
        return {"/v1/models": self._models, "/health": self._health}

    def _models(self) -> web.Response:
        data = [
            {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "fake"}
            for name in self.models
        ]
        return web.Response(body=json_bytes({"object": "list", "data": data}), content_type=_JSON)

    @staticmethod
    def _health() -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type=_JSON)

    def authorize(self, request: web.BaseRequest) -> web.StreamResponse | None:
        key = self.api_key
        if key is None or not request.path.startswith("/v1/"):
            return None
        if request.headers.get("Authorization") == f"Bearer {key}":
            return None
        body = _error_object("Incorrect API key provided.", "authentication_error", "invalid_api_key")
        return web.Response(status=401, body=json_bytes(body), content_type=_JSON)

    def continued_prefix(self, body: dict[str, Any]) -> str | None:
        """A final assistant message is continued as the declared `continuation` server would."""
        if self.continuation == "vllm":
            if (
                body.get("continue_final_message") is not True
                or body.get("add_generation_prompt") is not False
            ):
                return None
        elif self.continuation != "llama_cpp":
            return None
        return final_assistant_text(body)

    # ---- chat -----------------------------------------------------------------------------------

    def parse_chat(self, body: dict[str, Any]) -> Reply:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("you must provide a model parameter")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty array")
        limit = body.get("max_completion_tokens")
        if limit is None:
            limit = body.get("max_tokens")
        if limit is not None and not isinstance(limit, int):
            raise BadRequest("max_tokens must be an integer")
        pieces, finish = self.reply_pieces(body, limit)
        options = body.get("stream_options")
        calls = self.reply_calls(body)
        return Reply(
            model=model,
            pieces=pieces,
            finish_reason="tool_calls" if calls else finish,
            prompt_tokens=count_prompt_tokens(messages),
            stream=bool(body.get("stream", False)),
            include_usage=self.send_usage
            and isinstance(options, dict)
            and bool(options.get("include_usage")),
            tool_calls=calls,
        )

    def call_kinds(self) -> dict[str, str]:
        return {
            "/v1/chat/completions": "chat",
            "/v1/completions": "completions",
            "/v1/embeddings": "embed",
        }

    def parse_call(self, kind: str, body: dict[str, Any]) -> Reply:
        if kind == "chat":
            return self.parse_chat(body)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("you must provide a model parameter")
        if kind == "embed":
            return self._parse_embeddings(model, body)
        return self._parse_completions(model, body)

    def _parse_embeddings(self, model: str, body: dict[str, Any]) -> Reply:
        """Strings, a list of strings, a token array or a list of them; one vector each."""
        inputs = body.get("input")
        if isinstance(inputs, str) or (
            isinstance(inputs, list) and inputs and all(isinstance(i, int) for i in inputs)
        ):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            raise BadRequest("'input' must be a string, an array of strings or an array of token arrays")
        dimensions = body.get("dimensions") or DEFAULT_DIMENSIONS
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise BadRequest("encoding_format must be 'float' or 'base64'")
        vectors = [fake_vector(json.dumps(item), dimensions) for item in inputs]
        return Reply(model, (), "stop", count_words(inputs), False, kind="embed", extra=(vectors, encoding))

    def _parse_completions(self, model: str, body: dict[str, Any]) -> Reply:
        """One choice; `suffix` echoed as a last piece ` [suffix: ...]`, `echo` puts the prompt first."""
        prompt = body.get("prompt", "")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise BadRequest("this fake takes one prompt")
        limit = body.get("max_tokens")
        if limit is not None and not isinstance(limit, int):
            raise BadRequest("max_tokens must be an integer")
        pieces, finish = self.reply_pieces(body, None)
        suffix = body.get("suffix")
        if isinstance(suffix, str) and suffix:
            pieces = (*pieces, f" [suffix: {suffix}]")
        if limit is not None and limit < len(pieces):
            pieces, finish = pieces[:limit], "length"
        options = body.get("stream_options")
        return Reply(
            model=model,
            pieces=pieces,
            finish_reason=finish,
            prompt_tokens=count_words(prompt),
            stream=bool(body.get("stream", False)),
            include_usage=self.send_usage
            and isinstance(options, dict)
            and bool(options.get("include_usage")),
            kind="completions",
            extra=prompt if body.get("echo") else "",
        )

    def _text_chunk(self, head: bytes, text: str, finish: str | None) -> bytes:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
        return head + json_bytes({"choices": [choice]})[1:] + b"\n\n"

    def _completion_frames(self, reply: Reply) -> Frames:
        id_ = f"cmpl-fake{self.next_id():08d}"
        head = b'data: {"id":"%s","object":"text_completion","created":%d,"model":%s,' % (
            id_.encode(),
            int(time.time()),
            json.dumps(reply.model).encode(),
        )
        first = (self._text_chunk(head, reply.extra, None),) if reply.extra else ()
        content = tuple(self._text_chunk(head, piece, None) for piece in reply.pieces)
        tail = self._text_chunk(head, "", reply.finish_reason)
        if reply.include_usage:
            tail += head + json_bytes({"choices": [], "usage": _usage(reply)})[1:] + b"\n\n"
        return Frames(head=first, content=content, tail=tail + _DONE)

    def _body_of_kind(self, reply: Reply) -> bytes:
        if reply.kind == "embed":
            vectors, encoding = reply.extra
            data = [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": (
                        base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()
                        if encoding == "base64"
                        else v
                    ),
                }
                for i, v in enumerate(vectors)
            ]
            usage = {"prompt_tokens": reply.prompt_tokens, "total_tokens": reply.prompt_tokens}
            return json_bytes({"object": "list", "data": data, "model": reply.model, "usage": usage})
        id_ = f"cmpl-fake{self.next_id():08d}"
        choice = {
            "text": reply.extra + reply.text,
            "index": 0,
            "logprobs": None,
            "finish_reason": reply.finish_reason,
        }
        return json_bytes(
            {
                "id": id_,
                "object": "text_completion",
                "created": int(time.time()),
                "model": reply.model,
                "choices": [choice],
                "usage": _usage(reply),
            }
        )

    def error_response(self, status: int, message: str) -> web.Response:
        body = _error_object(message, error_type(status))
        return web.Response(status=status, body=json_bytes(body), content_type=_JSON)

    def model_not_found(self, model: str) -> web.Response:
        body = _error_object(f"The model `{model}` does not exist.", "not_found_error", "model_not_found")
        return web.Response(status=404, body=json_bytes(body), content_type=_JSON)

    def _cached_suffixes(self, reply: Reply) -> tuple[bytes, tuple[bytes, ...], tuple[bytes, ...]]:
        key = (reply.model, reply.pieces, reply.finish_reason, reply.prompt_tokens, reply.include_usage)
        cached = None if reply.tool_calls else self._suffixes.get(key)
        if cached is None:
            usage = reply.include_usage
            head = _choice_chunk({"role": "assistant", "content": ""}, None, usage)
            content = tuple(_choice_chunk({"content": piece}, None, usage) for piece in reply.pieces)
            content += tuple(_choice_chunk(d, None, usage) for d in _tool_call_deltas(reply))
            tail = [_choice_chunk({}, reply.finish_reason, usage)]
            if usage:
                tail.append(json_bytes({"choices": [], "usage": _usage(reply)})[1:] + b"\n\n")
            if len(self._suffixes) > 256:
                self._suffixes.clear()
            cached = self._suffixes[key] = (head, content, tuple(tail))
        return cached

    def _new_id(self) -> tuple[str, int]:
        return f"chatcmpl-fake{self.next_id():08d}", int(time.time())

    def stream_frames(self, reply: Reply) -> Frames:
        if reply.kind == "completions":
            return self._completion_frames(reply)
        id_, created = self._new_id()
        prefix = b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,' % (
            id_.encode(),
            created,
            json.dumps(reply.model).encode(),
        )
        head, content, tail = self._cached_suffixes(reply)
        return Frames(
            head=(prefix + head,),
            content=tuple(prefix + suffix for suffix in content),
            tail=b"".join(prefix + suffix for suffix in tail) + _DONE,
        )

    def full_body(self, reply: Reply) -> bytes:
        if reply.kind != "chat":
            return self._body_of_kind(reply)
        id_, created = self._new_id()
        body = json_bytes(
            {
                "id": id_,
                "object": "chat.completion",
                "created": created,
                "model": reply.model,
                "choices": [
                    {
                        "index": 0,
                        "message": _message(reply),
                        "logprobs": None,
                        "finish_reason": reply.finish_reason,
                    }
                ],
                "usage": _usage(reply),
            }
        )
        if not self.send_usage:
            body = json_bytes({k: v for k, v in json.loads(body).items() if k != "usage"})
        return body

    def error_frame(self, message: str) -> bytes:
        return b"data: " + json_bytes(_error_object(message, "server_error")) + b"\n\n"

    def malformed_frame(self) -> bytes:
        return b"data: this is not json {\n\n"

    def endless_line_head(self) -> bytes:
        return b'data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"'

    def flood_frame(self) -> bytes:
        return b": flood\n\n"
