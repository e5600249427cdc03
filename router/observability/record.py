"""One request's facts, filled in along the request path and reported once, when the request ends.

A streamed answer ends long after its handler returned, so the record travels with the answer inside
the request's `Exchange` (`router.api.exchange`), which closes it and hands it to the observers once.
The record itself is plain data and knows nothing of who reads it.

Label values for metrics come from the route table (path, model, upstream), never from client input, so
cardinality stays bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from router.errors import Overloaded, RouterError, RouteUnavailable, StreamTooLong
from router.upstreams.errors import UpstreamError, UpstreamStalled, UpstreamTimeout


def outcome_of(error: BaseException | None) -> str:
    """The outcome label for how a request ended."""
    if error is None:
        return "ok"
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return "client_cancelled"
    if isinstance(error, UpstreamTimeout | UpstreamStalled | StreamTooLong):
        return "timeout"
    if isinstance(error, RouteUnavailable | Overloaded):
        return "rejected"
    if isinstance(error, UpstreamError):
        return "upstream_error" if error.upstream_fault else "upstream_refused"
    if isinstance(error, RouterError):
        return "rejected" if error.status in (401, 403, 429) else "invalid_request"
    return "internal_error"


@dataclass(slots=True)
class RequestRecord:
    """Facts about one chat request (times are `time.perf_counter()` seconds)."""

    request_id: str
    started: float = field(default_factory=time.perf_counter)
    route: str = "-"
    model: str = "-"
    upstream: str = "-"
    principal: str | None = None
    stream: bool = False
    status: int = 0
    outcome: str = ""
    retries: int = 0
    first_token_at: float | None = None
    ended_at: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_estimated: bool = False  # the upstream reported no prompt count: estimated (router.usage)
    completion_estimated: bool = False  # likewise for the completion
    dialect: str = "openai_chat"  # the client's dialect (`router.dialects`): which front door it used
    admitted: bool = False  # passed authentication, authorisation and quotas: counted in /usage
    error: str | None = None
    release: Callable[[], None] | None = None  # ends the request's share of its key's max_concurrency
    # Tracing and the router's overhead: the trace id (tracing on), the seconds spent waiting on upstreams
    # (slot waits, retry backoff, attempts), and when the answer started leaving (headers ready).
    trace_id: str | None = None
    upstream_wait: float = 0.0
    served_at: float | None = None
    # A stream resumed after its upstream broke (router.resume): how often, and every upstream that served
    # the answer, in order (None while it was not resumed: `upstream` says it all).
    resumes: int = 0
    upstreams: list[str] | None = None

    @property
    def duration(self) -> float:
        """Seconds from arrival to the end of the answer."""
        return (self.ended_at or time.perf_counter()) - self.started

    @property
    def tokens_estimated(self) -> bool:
        """Whether either token figure is the router's estimate rather than the upstream's count."""
        return self.prompt_estimated or self.completion_estimated

    @property
    def ttft(self) -> float | None:
        """Seconds from arrival to the first token (streams only)."""
        return None if self.first_token_at is None else self.first_token_at - self.started

    @property
    def overhead(self) -> float | None:
        """Seconds the router itself added: the time not spent waiting on upstreams (slot waits, retry
        backoff and attempts excluded). For a whole answer, from arrival to the end of the answer; for a
        stream, from arrival to its first bytes being handed over (what it added to the time to first
        token). None for a request that got no answer."""
        if self.served_at is None:
            return None
        end = self.served_at if self.stream else (self.ended_at or time.perf_counter())
        return max(end - self.started - self.upstream_wait, 0.0)

    @property
    def time_per_output_token(self) -> float | None:
        """Seconds per output token after the first, for a complete stream that reported its tokens."""
        tokens, first, end = self.completion_tokens, self.first_token_at, self.ended_at
        if tokens is None or tokens < 2 or first is None or end is None or self.outcome != "ok":
            return None
        return (end - first) / (tokens - 1)

    def close(self, status: int, error: BaseException | None) -> None:
        """Note how the request ended (the message unredacted: every writer of the record masks it)."""
        self.ended_at = time.perf_counter()
        self.status = status
        self.outcome = outcome_of(error)
        if isinstance(error, RouterError):
            self.error = error.message
        if self.release is not None:
            self.release()
