"""The one interface every model server hides behind.

The dispatcher, the streaming relay and the health prober only ever see `UpstreamAdapter`; which wire
dialect (Ollama's NDJSON or OpenAI's SSE) sits behind it is known to the two implementations alone. The
interface is narrow on purpose: a scripted fake (tests/support/fake_adapter.py) stands in for a model
server so the core is tested in process. Adapters speak OpenAI Chat Completions on their client-facing side: a
complete answer is a `chat.completion` JSON document, a streamed one is a sequence of
`chat.completion.chunk` JSON payloads.

Two more call kinds share the interface, each with OpenAI's wire format as its internal model (docs/
dialects/embeddings_and_completions.md): embeddings (`embed`: an OpenAI `/v1/embeddings` body in, an
OpenAI embeddings list with float vectors out) and text completions (`complete_text` / `open_text_stream`:
an OpenAI `/v1/completions` body in, `text_completion` objects and chunks out). They take the same
`ChatCall` (its `body` is then that kind's body) so the dispatcher, its retries, breakers and fallbacks
serve every kind through one `Attempt` seam.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from router.config.models import UpstreamConfig
from router.errors import RouterError


class UnsupportedCall(RouterError):
    """The upstream does not serve this kind of call (or this option of it): the request, as written,
    cannot be served there, and retrying it elsewhere on the same route would fare no better."""

    status = 400
    type = "invalid_request_error"
    code = "unsupported_by_upstream"


@dataclass(frozen=True, slots=True)
class Limits:
    """A route's time limits for one attempt, prepared once per route so requests allocate nothing."""

    timeout: float  # until the answer starts (the whole answer when not streaming)
    client_timeout: aiohttp.ClientTimeout  # carries the connect timeout

    @classmethod
    def of(cls, timeout: float, connect_timeout: float) -> Limits:
        """Build the limits and the matching aiohttp timeout object."""
        client_timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=None
        )
        return cls(timeout=timeout, client_timeout=client_timeout)


@dataclass(slots=True)
class ChatCall:
    """A validated client request bound to a route: everything an adapter needs and nothing to re-check.

    `body` is the client's JSON object as sent (unknown fields included, for OpenAI-compatible upstreams
    that understand more than we do); the typed fields are the ones the router itself acts upon.
    """

    body: dict[str, Any]
    model: str
    stream: bool
    max_tokens: int | None
    include_usage: bool
    options: Mapping[str, Any]
    request_id: str
    collect_text: bool = False  # keep the answer's text (server-side sessions need it)
    headers: Mapping[str, str] | None = None  # per attempt: the trace context (traceparent), tracing on


@dataclass(slots=True)
class AnswerStats:
    """What an answer reported about itself, for logs, metrics and sessions.

    `text` collects the answer's content pieces only when the call asked for it (`collect_text`), so the
    hot path does not pay for it otherwise.
    """

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    text: list[str] | None = None
    model: str | None = None  # the model the upstream says answered (traces: gen_ai.response.model)
    finish_reason: str | None = None  # OpenAI's words (traces: gen_ai.response.finish_reasons)
    chars: int = 0  # characters of content relayed: the estimate's base when no usage comes

    def take_usage(self, usage: Any) -> None:
        """Read an OpenAI `usage` object, if it is one (a count that is not an integer is no count)."""
        if isinstance(usage, dict):
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            self.prompt_tokens = prompt if isinstance(prompt, int) and prompt >= 0 else None
            self.completion_tokens = completion if isinstance(completion, int) and completion >= 0 else None

    def take_end(self, answer: dict[str, Any], choice: Any) -> None:
        """Note the answering model (first seen) and a choice's finish reason, when it has one."""
        if self.model is None:
            model = answer.get("model")
            if isinstance(model, str):
                self.model = model
        if isinstance(choice, dict):
            reason = choice.get("finish_reason")
            if isinstance(reason, str):
                self.finish_reason = reason

    def take_text(self, choice: Any) -> None:
        """Read one text-completion choice's `text` (whole answers and chunks alike)."""
        if isinstance(choice, dict):
            text = choice.get("text")
            if isinstance(text, str):
                self.chars += len(text)
                if self.text is not None:
                    self.text.append(text)

    def take_choice(self, choice: Any, field: str) -> None:
        """Read one OpenAI choice's text (`field` is "message" for whole answers, "delta" for chunks)."""
        if isinstance(choice, dict):
            part = choice.get(field)
            if not isinstance(part, dict):
                return
            content = part.get("content")
            if isinstance(content, str):
                self.chars += len(content)
                if self.text is not None:
                    self.text.append(content)
            reasoning = part.get("reasoning_content")
            if isinstance(reasoning, str):
                self.chars += len(reasoning)


def new_stats(call: ChatCall) -> AnswerStats:
    """Empty stats for a call, collecting text only when asked."""
    return AnswerStats(text=[] if call.collect_text else None)


class EventStream(ABC):
    """An upstream answer being streamed, already translated into OpenAI chunk payloads.

    `read()` returns the payloads that arrived in one network read (possibly none, when a read ended
    mid-line), or None once the upstream finished properly. A stream that ends without its protocol's
    end marker raises instead: a truncated answer must never look like a complete one.
    """

    stats: AnswerStats

    @abstractmethod
    async def read(self) -> list[bytes] | None:
        """The next batch of chunk payloads, or None at the clean end."""

    @abstractmethod
    def close(self) -> None:
        """Drop the connection now; for an unfinished answer this is what stops the model generating."""

    def survives(self, error: RouterError) -> bool:
        """Whether the answer goes on after `error`, a failure the relay saw itself (a stall): a resumable
        stream (router.resume) starts its resume and says True; every other stream ends (False)."""
        return False


class UpstreamAdapter(ABC):
    """One model server, with its own pooled HTTP client shared by every route that uses it."""

    def __init__(
        self,
        config: UpstreamConfig,
        session: aiohttp.ClientSession,
        probe_session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.session = session
        # Health probes get their own small pool when given one, so that client traffic holding every
        # pooled connection cannot make probes wait and mark a responsive upstream down.
        self.probe_session = probe_session or session

    @abstractmethod
    async def complete(self, call: ChatCall, limits: Limits) -> tuple[bytes, AnswerStats]:
        """A whole `chat.completion` JSON document for a non-streaming call, and what it reported."""

    @abstractmethod
    async def open_stream(self, call: ChatCall, limits: Limits) -> tuple[EventStream, list[bytes]]:
        """Start a streamed answer; returns the stream and its first payloads.

        The first payloads are awaited here, within the route's timeout, so that every failure before the
        model's first token can still become a proper HTTP status (and be retried) instead of a broken
        stream.
        """

    @abstractmethod
    async def probe(
        self, model: str | None, endpoint: str | None, timeout: float, max_age: float = 0.0
    ) -> None:
        """Raise an UpstreamError unless the server is up (and lists `model`, when one is given).

        A probe answer fetched for another model less than `max_age` seconds ago may be reused.
        """

    async def embed(self, call: ChatCall, limits: Limits) -> tuple[bytes, AnswerStats]:
        """An OpenAI embeddings list (`{"object": "list", "data": [{"embedding": [floats], "index"}], ...}`)
        for the OpenAI `/v1/embeddings` body in `call.body`; vectors are always floats (the front door
        encodes base64 when its client asks). Adapters of servers without embeddings keep this refusal."""
        raise UnsupportedCall(f"upstream {self.name!r} ({self.config.type}) does not serve embeddings")

    async def complete_text(self, call: ChatCall, limits: Limits) -> tuple[bytes, AnswerStats]:
        """A whole `text_completion` JSON document for the OpenAI `/v1/completions` body in `call.body`."""
        raise UnsupportedCall(f"upstream {self.name!r} ({self.config.type}) does not serve text completions")

    async def open_text_stream(self, call: ChatCall, limits: Limits) -> tuple[EventStream, list[bytes]]:
        """Start a streamed text completion: `text_completion` chunk payloads, first ones awaited here."""
        raise UnsupportedCall(f"upstream {self.name!r} ({self.config.type}) does not serve text completions")

    async def close(self) -> None:
        """Close the connection pools (after a reload removed the upstream, or at shutdown)."""
        await self.session.close()
        if self.probe_session is not self.session:
            await self.probe_session.close()
