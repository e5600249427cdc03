"""Ollama's native API (`/api/chat`, NDJSON streaming) behind the OpenAI-speaking adapter interface."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import msgspec
from yarl import URL

from router.config.models import UpstreamConfig
from router.upstreams import ollama_mapping
from router.upstreams.base import AnswerStats, ChatCall, EventStream, Limits, UpstreamAdapter, new_stats
from router.upstreams.errors import (
    BadUpstreamResponse,
    UpstreamError,
    UpstreamStatus,
)
from router.upstreams.http import (
    LineStream,
    SharedProbe,
    Wire,
    deadline,
    decode_json,
    open_line_stream,
    post_json,
    read_json,
)


class OllamaAdapter(UpstreamAdapter):
    """Translates OpenAI chat requests to Ollama's `/api/chat` and its answers back."""

    def __init__(
        self,
        config: UpstreamConfig,
        session: aiohttp.ClientSession,
        probe_session: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__(config, session, probe_session)
        self.wire = Wire.of(config)
        self.probes = SharedProbe(self.probe_session, self.wire)
        root = config.base_url.rstrip("/")
        self.root = root
        self.chat_url = f"{root}/api/chat"
        self.chat_target = URL(self.chat_url)
        self.tags_url = f"{root}/api/tags"

    def _request(self, call: ChatCall, stream: bool) -> dict[str, Any]:
        return ollama_mapping.chat_request(call.body, call.model, call.max_tokens, call.options, stream)

    async def complete(self, call: ChatCall, limits: Limits) -> tuple[bytes, AnswerStats]:
        async with deadline(limits.timeout, self.chat_url):
            response = await post_json(
                self.session, self.chat_target, self._request(call, False), limits, call.request_id, self.wire
            )
            answer = await read_json(response, self.chat_url, self.wire)
        if not isinstance(answer, dict) or "message" not in answer:
            if isinstance(answer, dict) and "error" in answer:
                raise UpstreamStatus(self.wire.scrub(f"ollama at {self.root}: {answer['error']}"), status=500)
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
                self.session, self.chat_target, payload, limits, call.request_id, self.wire
            )
            return OllamaStream(response, self.chat_url, call, self.wire)

        return await open_line_stream(limits, self.chat_url, start)

    async def probe(
        self, model: str | None, endpoint: str | None, timeout: float, max_age: float = 0.0
    ) -> None:
        url = f"{self.root}{endpoint}" if endpoint else self.tags_url
        async with asyncio.timeout(timeout):
            tags = await self.probes.get(url, not endpoint, max_age)
        if model is not None and not endpoint and not _lists_model(tags, model):
            raise UpstreamStatus(
                f"model {model!r} is not pulled on ollama at {self.root}; run `ollama pull {model}`",
                status=404,
            )


def _lists_model(tags: Any, model: str) -> bool:
    """Whether `/api/tags` lists the model (a name without a tag means `:latest`, as in Ollama)."""
    wanted = {model, f"{model}:latest"} if ":" not in model else {model}
    models = tags.get("models") if isinstance(tags, dict) else None
    if not isinstance(models, list):
        raise BadUpstreamResponse("ollama's /api/tags answered without a `models` list")
    return any(isinstance(m, dict) and (m.get("name") in wanted or m.get("model") in wanted) for m in models)


class OllamaStream(LineStream):
    """One NDJSON answer being relayed; ends cleanly only on a line with `done: true`."""

    def __init__(self, response: aiohttp.ClientResponse, url: str, call: ChatCall, wire: Wire) -> None:
        super().__init__(response, url, new_stats(call), wire)
        self.mapper = ollama_mapping.ChunkMapper(call.model, call.request_id, call.include_usage)

    def translate(self, raw: bytes) -> list[bytes]:
        if not raw.strip():
            return []
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


def record_final_line(stats: AnswerStats, line: dict[str, Any]) -> None:
    """Ollama's last line carries the token counts; a count it leaves out stays unknown (then estimated).

    Ollama omits `prompt_eval_count` when the whole prompt came from its cache, so an absent count is
    not read as zero: the router estimates it instead and says so.
    """
    prompt, completion = line.get("prompt_eval_count"), line.get("eval_count")
    stats.prompt_tokens = prompt if isinstance(prompt, int) and prompt >= 0 else None
    stats.completion_tokens = completion if isinstance(completion, int) and completion >= 0 else None
