"""A fake OpenAI-compatible server (vLLM / llama.cpp style): chat completions, /v1/models, /health."""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

from aiohttp import web

from ._base import BadRequest, FakeUpstream, Frames, ProbeMaker, Reply, count_prompt_tokens, json_bytes

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
        return Reply(
            model=model,
            pieces=pieces,
            finish_reason=finish,
            prompt_tokens=count_prompt_tokens(messages),
            stream=bool(body.get("stream", False)),
            include_usage=self.send_usage
            and isinstance(options, dict)
            and bool(options.get("include_usage")),
        )

    def error_response(self, status: int, message: str) -> web.Response:
        body = _error_object(message, error_type(status))
        return web.Response(status=status, body=json_bytes(body), content_type=_JSON)

    def model_not_found(self, model: str) -> web.Response:
        body = _error_object(f"The model `{model}` does not exist.", "not_found_error", "model_not_found")
        return web.Response(status=404, body=json_bytes(body), content_type=_JSON)

    def _cached_suffixes(self, reply: Reply) -> tuple[bytes, tuple[bytes, ...], tuple[bytes, ...]]:
        key = (reply.model, reply.pieces, reply.finish_reason, reply.prompt_tokens, reply.include_usage)
        cached = self._suffixes.get(key)
        if cached is None:
            usage = reply.include_usage
            head = _choice_chunk({"role": "assistant", "content": ""}, None, usage)
            content = tuple(_choice_chunk({"content": piece}, None, usage) for piece in reply.pieces)
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
                        "message": {"role": "assistant", "content": reply.text},
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
