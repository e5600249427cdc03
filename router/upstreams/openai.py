"""Any OpenAI-compatible server (vLLM, llama.cpp server, TGI, SGLang): a pass-through with three edits.

The client's body goes upstream as sent, unknown fields included, except that the model becomes the
route's model, the route's token cap is applied, and router-only fields are removed. Answers are relayed
byte for byte after checking that they are what the protocol promises.

Embeddings (`/embeddings`) and text completions (`/completions`) pass through the same way, with two more
edits: embeddings are always asked for as floats (the internal model; the front door encodes base64), and
the Ollama-only fields an internal body may carry (from the Ollama front door) are taken out: `system` is
put before the prompt, `images` are refused, the rest (`raw`, `options`...) have no OpenAI meaning.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urljoin

import aiohttp
from yarl import URL

from router.config.models import UpstreamConfig
from router.upstreams.base import (
    AnswerStats,
    ChatCall,
    EventStream,
    Limits,
    UnsupportedCall,
    new_stats,
)
from router.upstreams.errors import BadUpstreamResponse, UpstreamReset, UpstreamStatus
from router.upstreams.http import (
    HttpAdapter,
    LineStream,
    deadline,
    decode_json,
    open_line_stream,
    post_json,
    read_body,
)

ROUTER_ONLY_FIELDS = ("session_id", "ollama")  # "ollama": the Ollama front door's extras, Ollama-only
# Ollama's own fields of an internal embeddings / completions body: meaningless to an OpenAI server.
_OLLAMA_EMBED_FIELDS = frozenset({"session_id", "truncate", "keep_alive", "options"})
_OLLAMA_GENERATE_FIELDS = frozenset(
    {
        "session_id",
        "raw",
        "images",
        "system",
        "template",
        "format",
        "think",
        "keep_alive",
        "context",
        "options",
    }
)


class OpenAIAdapter(HttpAdapter):
    """Relays OpenAI Chat Completions to an OpenAI-compatible server."""

    def __init__(
        self,
        config: UpstreamConfig,
        session: aiohttp.ClientSession,
        probe_session: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__(config, session, probe_session)
        self.base_url = config.base_url.rstrip("/")
        self.chat_url = f"{self.base_url}/chat/completions"
        self.chat_target = URL(self.chat_url)
        self.models_url = f"{self.base_url}/models"
        self.embeddings_url = f"{self.base_url}/embeddings"
        self.embeddings_target = URL(self.embeddings_url)
        self.completions_url = f"{self.base_url}/completions"
        self.completions_target = URL(self.completions_url)
        self.ask_usage = config.stream_usage

    def _request(self, call: ChatCall) -> dict[str, Any]:
        body = {k: v for k, v in call.body.items() if k not in ROUTER_ONLY_FIELDS}
        body["model"] = call.model
        body["stream"] = call.stream
        if call.max_tokens is not None:
            body["max_tokens"] = call.max_tokens
            if "max_completion_tokens" in body:
                body["max_completion_tokens"] = call.max_tokens
        if call.stream and not call.include_usage and self.ask_usage:
            # Token accounting needs the upstream's counts; the client did not ask, so the usage chunk
            # this adds is dropped again on the way back (`OpenAIStream`).
            options = body.get("stream_options")
            body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        return body

    async def complete(self, call: ChatCall, limits: Limits) -> tuple[bytes, AnswerStats]:
        body = self._request(call)
        raw, answer = await self._post_whole(self.chat_target, self.chat_url, body, call, limits)
        if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list):
            raise BadUpstreamResponse(
                f"upstream at {self.chat_url} answered JSON that is not a chat completion"
            )
        stats = new_stats(call)
        stats.take_usage(answer.get("usage"))
        for choice in answer["choices"]:
            stats.take_choice(choice, "message")
            stats.take_end(answer, choice)
        return raw, stats

    async def open_stream(self, call: ChatCall, limits: Limits) -> tuple[EventStream, list[bytes]]:
        body = self._request(call)
        drop_usage = self.ask_usage and not call.include_usage
        return await self._open_sse(
            self.chat_target, self.chat_url, body, call, limits, OpenAIStream, drop_usage
        )

    async def _open_sse(
        self,
        target: URL,
        url: str,
        body: dict[str, Any],
        call: ChatCall,
        limits: Limits,
        kind: type[OpenAIStream],
        drop_usage: bool = False,
    ) -> tuple[EventStream, list[bytes]]:
        """POST for an SSE stream and read its first payloads within the route's timeout; an answer that
        is not an event stream (an HTML page, a JSON error) is a bad upstream response naming what came."""

        async def start() -> OpenAIStream:
            response = await post_json(
                self.poster, target, body, limits, call.request_id, self.wire, call.headers
            )
            if "text/event-stream" not in response.content_type:
                raw = await read_body(response, url, self.wire.max_response_bytes, self.wire)
                decode_json(raw, url, response.content_type)  # names HTML/garbage if it is
                raise BadUpstreamResponse(
                    f"upstream at {url} answered {response.content_type} instead of a stream"
                )
            stream = kind(response, url, new_stats(call), self.wire)
            stream.drop_usage = drop_usage
            return stream

        return await open_line_stream(limits, url, start)

    async def _post_whole(
        self, target: URL, url: str, body: dict[str, Any], call: ChatCall, limits: Limits
    ) -> tuple[bytes, Any]:
        """POST and read a whole JSON answer within the route's timeout: its bytes and its decoded value."""
        async with deadline(limits.timeout, url):
            response = await post_json(
                self.poster, target, body, limits, call.request_id, self.wire, call.headers
            )
            raw = await read_body(response, url, self.wire.max_response_bytes, self.wire)
        answer = decode_json(raw, url, response.content_type)
        if isinstance(answer, dict) and "error" in answer and answer["error"] is not None:
            raise UpstreamStatus(self.wire.scrub(f"upstream at {url}: {answer['error']}"), status=500)
        return raw, answer

    async def embed(self, call: ChatCall, limits: Limits) -> tuple[bytes, AnswerStats]:
        body = {k: v for k, v in call.body.items() if k not in _OLLAMA_EMBED_FIELDS}
        body["model"] = call.model
        body["encoding_format"] = "float"
        raw, answer = await self._post_whole(self.embeddings_target, self.embeddings_url, body, call, limits)
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or not all(
            isinstance(item, dict) and isinstance(item.get("embedding"), list) for item in data
        ):
            raise BadUpstreamResponse(
                f"upstream at {self.embeddings_url} answered JSON that is not an embeddings list"
            )
        stats = new_stats(call)
        stats.take_usage(answer.get("usage"))
        stats.completion_tokens = 0  # an embedding generates no tokens (OpenAI's usage has no such count)
        return raw, stats

    def _text_request(self, call: ChatCall) -> dict[str, Any]:
        source = call.body
        body = {k: v for k, v in source.items() if k not in _OLLAMA_GENERATE_FIELDS}
        if source.get("images"):
            raise UnsupportedCall(
                f"upstream {self.name!r} is OpenAI-compatible: its /completions takes no images; use a "
                "route on an ollama upstream or a chat request with image parts",
                param="images",
            )
        system = source.get("system")
        if isinstance(system, str) and system and isinstance(body.get("prompt"), str):
            body["prompt"] = f"{system}\n\n{body['prompt']}"
        body["model"] = call.model
        body["stream"] = call.stream
        if call.max_tokens is not None:
            body["max_tokens"] = call.max_tokens
        return body

    async def complete_text(self, call: ChatCall, limits: Limits) -> tuple[bytes, AnswerStats]:
        body = self._text_request(call)
        raw, answer = await self._post_whole(
            self.completions_target, self.completions_url, body, call, limits
        )
        if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list):
            raise BadUpstreamResponse(
                f"upstream at {self.completions_url} answered JSON that is not a text completion"
            )
        stats = new_stats(call)
        stats.take_usage(answer.get("usage"))
        for choice in answer["choices"]:
            stats.take_text(choice)
        return raw, stats

    async def open_text_stream(self, call: ChatCall, limits: Limits) -> tuple[EventStream, list[bytes]]:
        body = self._text_request(call)  # refusals (400) before any connection is made
        return await self._open_sse(
            self.completions_target, self.completions_url, body, call, limits, OpenAITextStream
        )

    async def probe(
        self, model: str | None, endpoint: str | None, timeout: float, max_age: float = 0.0
    ) -> None:
        url = urljoin(self.base_url + "/", endpoint) if endpoint else self.models_url
        async with asyncio.timeout(timeout):
            listing = await self.probes.get(url, not endpoint, max_age)
        if model is not None and not endpoint and model not in self.probes.names(listing, _model_ids):
            raise UpstreamStatus(f"upstream at {self.base_url} does not serve model {model!r}", status=404)


def _model_ids(listing: Any) -> frozenset[str]:
    """Every model `id` a `/models` listing names."""
    data = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(data, list):
        raise BadUpstreamResponse("the upstream's /models answered without a `data` list")
    return frozenset(m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str))


class OpenAIStream(LineStream):
    """One SSE answer being relayed; ends cleanly only on `data: [DONE]`.

    `drop_usage`: the router asked for usage the client did not, so the usage-only chunk (empty
    `choices`) is read for its counts and not relayed. Every chunk is decoded anyway (`_check`), so this
    costs one test per chunk; other chunks still go out byte for byte (with the `"usage": null` some
    servers then add, which the OpenAI chunk type allows).
    """

    drop_usage = False

    def translate(self, line: bytes) -> list[bytes]:
        if not line.startswith(b"data:"):
            return []  # blank separators, comments (keepalives), `event:`/`id:` fields
        payload = line[5:].strip()
        if payload == b"[DONE]":
            if self.stats.finish_reason is None:
                raise self._cut_off()
            self.done = True
            return []
        if self._check(payload) and self.drop_usage:
            return []
        return [payload]

    def _cut_off(self) -> UpstreamReset:
        """`[DONE]` before any choice finished: the answer was cut off, whatever the end marker says.

        Every OpenAI-compatible server ends a complete answer's last choice with a `finish_reason`;
        llama-cpp-python's server sends `[DONE]` without one when it interrupts a generation for the next
        request (its `interrupt_requests`), and passing that on as a clean end would hide a truncation.
        """
        return UpstreamReset(
            f"upstream at {self.url} ended the stream ([DONE]) before the answer finished (no finish_reason):"
            " the answer was cut off (llama-cpp-python's server does this when another request arrives:"
            " start it with --interrupt_requests False)"
        )

    def _check(self, payload: bytes) -> bool:
        """Refuse garbage and surface in-stream errors; note what logs and metrics want to know.

        True for a usage-only chunk (usage and no choices).
        """
        try:
            chunk = decode_json(payload, self.url)
        except BadUpstreamResponse:
            what = f"upstream at {self.url} sent a stream event that is not JSON: {payload[:200]!r}"
            raise BadUpstreamResponse(self.wire.scrub(what)) from None
        if not isinstance(chunk, dict):
            raise BadUpstreamResponse(f"upstream at {self.url} sent a stream event that is not an object")
        error = chunk.get("error")
        if error is not None:
            message = error.get("message") if isinstance(error, dict) else error
            text = self.wire.scrub(f"upstream at {self.url} failed mid-answer: {message}")
            raise UpstreamStatus(text, status=500)
        usage = chunk.get("usage")
        choices = chunk.get("choices")
        if usage is not None:
            self.stats.take_usage(usage)
            if not choices:
                return True
        self.take_choices(choices or (), chunk)
        return False

    def take_choices(self, choices: Any, chunk: dict[str, Any]) -> None:
        """Note the text and the end of a chunk's choices (chat deltas here)."""
        for choice in choices:
            self.stats.take_choice(choice, "delta")
            self.stats.take_end(chunk, choice)


class OpenAITextStream(OpenAIStream):
    """A streamed text completion (`text_completion` chunks with `choices[].text`); ends on `[DONE]`."""

    def take_choices(self, choices: Any, chunk: dict[str, Any]) -> None:
        for choice in choices:
            self.stats.take_text(choice)
            self.stats.take_end(chunk, choice)
