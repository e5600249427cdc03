"""Ollama's native API (`/api/chat`, NDJSON streaming) behind the OpenAI-speaking adapter interface.

Embeddings go to `/api/embed` and text completions to `/api/generate` (router/upstreams/ollama_kinds.py
translates them).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import msgspec
from yarl import URL

from router.config.models import UpstreamConfig
from router.upstreams import ollama_kinds, ollama_mapping
from router.upstreams.base import AnswerStats, ChatCall, EventStream, Limits, new_stats
from router.upstreams.errors import (
    BadUpstreamResponse,
    UpstreamError,
    UpstreamStatus,
)
from router.upstreams.http import (
    Answer,
    HttpAdapter,
    LineStream,
    Wire,
    deadline,
    decode_json,
    open_line_stream,
    post_json,
    read_json,
)


class OllamaAdapter(HttpAdapter):
    """Translates OpenAI chat requests to Ollama's `/api/chat` and its answers back."""

    def __init__(
        self,
        config: UpstreamConfig,
        session: aiohttp.ClientSession,
        probe_session: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__(config, session, probe_session)
        root = config.base_url.rstrip("/")
        self.root = root
        self.chat_url = f"{root}/api/chat"
        self.chat_target = URL(self.chat_url)
        self.tags_url = f"{root}/api/tags"
        self.embed_url = f"{root}/api/embed"
        self.embed_target = URL(self.embed_url)
        self.generate_url = f"{root}/api/generate"
        self.generate_target = URL(self.generate_url)

    def _request(self, call: ChatCall, stream: bool) -> dict[str, Any]:
        return ollama_mapping.chat_request(call.body, call.model, call.max_tokens, call.options, stream)

    async def complete(self, call: ChatCall, limits: Limits) -> tuple[bytes, AnswerStats]:
        payload = self._request(call, False)
        answer = await self._post_whole(self.chat_target, self.chat_url, payload, call, limits)
        if not isinstance(answer, dict) or "message" not in answer:
            raise BadUpstreamResponse(f"ollama at {self.root} answered JSON that is not a chat answer")
        stats = new_stats(call)
        record_final_line(stats, answer)
        message = answer.get("message")
        content = (message.get("content") or "") if isinstance(message, dict) else ""
        stats.chars = len(content)
        if stats.text is not None:
            stats.text.append(content)
        return msgspec.json.encode(ollama_mapping.completion(answer, call.model, call.request_id)), stats

    async def open_stream(self, call: ChatCall, limits: Limits) -> tuple[EventStream, list[bytes]]:
        async def start() -> OllamaStream:
            payload = self._request(call, True)
            response = await post_json(
                self.poster, self.chat_target, payload, limits, call.request_id, self.wire, call.headers
            )
            return OllamaStream(response, self.chat_url, call, self.wire)

        return await open_line_stream(limits, self.chat_url, start)

    async def _post_whole(
        self, target: URL, url: str, payload: dict[str, Any], call: ChatCall, limits: Limits
    ) -> Any:
        """POST and read a whole JSON answer within the route's timeout; an `{"error"}` body is a 500."""
        async with deadline(limits.timeout, url):
            response = await post_json(
                self.poster, target, payload, limits, call.request_id, self.wire, call.headers
            )
            answer = await read_json(response, url, self.wire)
        if isinstance(answer, dict) and "error" in answer:
            raise UpstreamStatus(self.wire.scrub(f"ollama at {self.root}: {answer['error']}"), status=500)
        return answer

    async def embed(self, call: ChatCall, limits: Limits) -> tuple[bytes, AnswerStats]:
        payload = ollama_kinds.embed_request(call.body, call.model, call.options)
        answer = await self._post_whole(self.embed_target, self.embed_url, payload, call, limits)
        listing = ollama_kinds.embeddings_list(answer, call.model, self.embed_url)
        stats = new_stats(call)
        stats.prompt_tokens = listing["usage"]["prompt_tokens"]
        stats.completion_tokens = 0
        return msgspec.json.encode(listing), stats

    def _generate(self, call: ChatCall, stream: bool) -> dict[str, Any]:
        return ollama_kinds.generate_request(call.body, call.model, call.max_tokens, call.options, stream)

    async def complete_text(self, call: ChatCall, limits: Limits) -> tuple[bytes, AnswerStats]:
        payload = self._generate(call, False)
        answer = await self._post_whole(self.generate_target, self.generate_url, payload, call, limits)
        if not isinstance(answer, dict) or not isinstance(answer.get("response"), str):
            raise BadUpstreamResponse(f"ollama at {self.root} answered JSON that is not a generate answer")
        stats = new_stats(call)
        record_final_line(stats, answer)
        stats.chars = len(answer["response"])
        if stats.text is not None:
            stats.text.append(answer["response"])
        return msgspec.json.encode(ollama_kinds.text_completion(answer, call.model, call.request_id)), stats

    async def open_text_stream(self, call: ChatCall, limits: Limits) -> tuple[EventStream, list[bytes]]:
        payload = self._generate(call, True)  # refusals (400) before any connection is made

        async def start() -> OllamaTextStream:
            response = await post_json(
                self.poster, self.generate_target, payload, limits, call.request_id, self.wire, call.headers
            )
            return OllamaTextStream(response, self.generate_url, call, self.wire)

        return await open_line_stream(limits, self.generate_url, start)

    async def probe(
        self, model: str | None, endpoint: str | None, timeout: float, max_age: float = 0.0
    ) -> None:
        url = f"{self.root}{endpoint}" if endpoint else self.tags_url
        async with asyncio.timeout(timeout):
            tags = await self.probes.get(url, not endpoint, max_age)
        if model is not None and not endpoint and not _lists_model(self.probes.names(tags, _names), model):
            raise UpstreamStatus(
                f"model {model!r} is not pulled on ollama at {self.root}; run `ollama pull {model}`",
                status=404,
            )


def _lists_model(names: frozenset[str], model: str) -> bool:
    """Whether `/api/tags` lists the model (a name without a tag means `:latest`, as in Ollama)."""
    return model in names or (":" not in model and f"{model}:latest" in names)


def _names(tags: Any) -> frozenset[str]:
    """Every `name` and `model` `/api/tags` lists."""
    models = tags.get("models") if isinstance(tags, dict) else None
    if not isinstance(models, list):
        raise BadUpstreamResponse("ollama's /api/tags answered without a `models` list")
    found = (m.get(key) for m in models if isinstance(m, dict) for key in ("name", "model"))
    return frozenset(name for name in found if isinstance(name, str))


class OllamaStream(LineStream):
    """One NDJSON answer being relayed; ends cleanly only on a line with `done: true`."""

    def __init__(self, response: Answer, url: str, call: ChatCall, wire: Wire) -> None:
        super().__init__(response, url, new_stats(call), wire)
        self.mapper = ollama_mapping.ChunkMapper(call.model, call.request_id, call.include_usage)

    def translate(self, raw: bytes) -> list[bytes]:
        if not raw.strip():
            return []
        line = self.decode(raw)
        said = line.get("message")
        if isinstance(said, dict):
            content = said.get("content")
            text = content if isinstance(content, str) else ""
            thinking = said.get("thinking")
            self.stats.chars += len(text) + (len(thinking) if isinstance(thinking, str) else 0)
            if self.stats.text is not None:
                self.stats.text.append(text)
        if line.get("done"):
            self.done = True
            record_final_line(self.stats, line)
        return self.mapper.chunks(line)

    def decode(self, raw: bytes) -> dict[str, Any]:
        """One NDJSON line as an object; garbage is a bad response, an `{"error"}` line a failure."""
        try:
            line = decode_json(raw, self.url)
        except UpstreamError:
            raise BadUpstreamResponse(
                self.wire.scrub(f"ollama at {self.url} sent a stream line that is not JSON: {raw[:200]!r}")
            ) from None
        if not isinstance(line, dict):
            raise BadUpstreamResponse(f"ollama at {self.url} sent a stream line that is not an object")
        if "error" in line:
            message = self.wire.scrub(f"ollama at {self.url} failed mid-answer: {line['error']}")
            raise UpstreamStatus(message, status=500)
        return line


class OllamaTextStream(OllamaStream):
    """One `/api/generate` NDJSON answer relayed as `text_completion` chunks; ends on `done: true`."""

    def __init__(self, response: Answer, url: str, call: ChatCall, wire: Wire) -> None:
        super().__init__(response, url, call, wire)
        self.text_mapper = ollama_kinds.TextChunkMapper(call.model, call.request_id, call.include_usage)

    def translate(self, raw: bytes) -> list[bytes]:
        if not raw.strip():
            return []
        line = self.decode(raw)
        piece = line.get("response")
        text = piece if isinstance(piece, str) else ""
        self.stats.chars += len(text)
        if self.stats.text is not None:
            self.stats.text.append(text)
        if line.get("done"):
            self.done = True
            record_final_line(self.stats, line)
        return self.text_mapper.chunks(line)


def record_final_line(stats: AnswerStats, line: dict[str, Any]) -> None:
    """Ollama's last line carries the token counts; a count it leaves out stays unknown (then estimated).

    Ollama omits `prompt_eval_count` when the whole prompt came from its cache, so an absent count is
    not read as zero: the router estimates it instead and says so.
    """
    prompt, completion = line.get("prompt_eval_count"), line.get("eval_count")
    stats.prompt_tokens = prompt if isinstance(prompt, int) and prompt >= 0 else None
    stats.completion_tokens = completion if isinstance(completion, int) and completion >= 0 else None
    stats.finish_reason = ollama_mapping.finish_reason(line)
    model = line.get("model")
    if isinstance(model, str):
        stats.model = model
