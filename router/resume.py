"""Streams that survive their upstream: an answer that breaks after it started goes on elsewhere.

Once a stream's first bytes reached the client, its status code is gone and dispatch can no longer fail
over; until now such a break (an error event or status mid-answer, a reset, a stall past `stall_timeout`,
data that is not the protocol) ended the answer with an error event. A route with `resume: {enabled:
true}` instead has its streams wrapped in a `ResumingStream`, which notes what was relayed and, when the
answer breaks, asks another upstream to *continue* it: the same conversation with the partial answer as
the assistant's last message (`router.upstreams.continuation` knows how each server is asked), on
another available replica of the route or the first available fallback, never on the (route, replica)
that broke nor on an upstream whose `continuation` is `none`. The continuation goes through `dispatch`
like any attempt (its own slot, breaker permit and in-flight count, retries, the caller's allowed
routes), and its chunks are stitched into the same client stream:

- one answer: the first attempt's chunk id, creation time and model are kept, the continuation's role
  chunk is dropped, so every dialect's encoder sees one upstream's stream;
- one `finish_reason`, and its chunk carries `"router": {"upstreams": [...], "resumes": n}` (which the
  dialects carry into their closing event);
- usage summed over the attempts (a broken attempt's counts are estimated, and the request is marked
  estimated), and the continuation's `max_tokens` is what is left of the first attempt's cap (the
  tokens the broken attempts generated, estimated from their characters when they did not say);
- bounded by `max_resumes`: the next break ends the stream with its error event, as without resume.

What was relayed is noted lazily: the first attempt's payloads are kept as they are and read (the text,
the head chunk's id, what forbids a resume) only when a break asks whether the answer may be resumed, so
a stream that never breaks parses none of them for resuming. `resume.keep_raw_bytes` bounds what one
stream keeps: past it the kept payloads are read at once and only their text stays (a long answer then
pays the parse as it goes, and holds its text, not its chunks).

Never resumed (the stream ends with its error event, as without resume): a break once tool-call or
reasoning deltas were relayed (continuing a half-sent call, or reasoning the next model cannot see, is
not well defined), a break after the finish reason went out, and faults that are not the upstream's.

The resume runs in a task of its own, shielded from the relay's heartbeat waits (which cancel a silent
read every `heartbeat_interval` to send a keepalive), so the client keeps getting heartbeats while the
next upstream starts. A stall is seen by the relay, which asks the stream whether it `survives` it (every
other stream says no and the answer ends as before): this one starts its resume and says yes, so an
unbroken stream pays no timer of its own. Closing the stream (the client left) cancels a resume under
way and closes whichever upstream is active.

A route without resume gets none of this: `Route.resume` is None (decided when the table is built), and
the request path makes that one check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Set
from dataclasses import dataclass, replace
from typing import Any, Protocol

import msgspec

from router.dispatch import Attempt, Lease, Trace, dispatch
from router.errors import RouterError
from router.events import EventBus
from router.observability.record import RequestRecord
from router.observability.tokens import estimate_prompt, estimate_tokens
from router.policies import clamp_max_tokens
from router.protocol.openai_chat import ChatRequest
from router.registry import Registry
from router.table import Route
from router.upstreams.base import AnswerStats, ChatCall, EventStream, Limits, UpstreamAdapter
from router.upstreams.continuation import can_continue, continuation_body
from router.upstreams.errors import BadUpstreamResponse, UpstreamError, UpstreamReset, UpstreamStalled

__all__ = ["Answering", "ResumingStream", "cause_of"]

log = logging.getLogger("router.resume")

OpenStream = Attempt[tuple[EventStream, list[bytes]]]


def cause_of(error: BaseException) -> str | None:
    """Why a stream broke, as the metric's `cause` label; None when it is not the upstream's fault.

    `stall`: silent past `stall_timeout`; `reset`: the connection died or closed before the end marker;
    `malformed`: data that is not the protocol (not JSON, a line too long); `error`: the upstream said
    it failed (an error event or line mid-answer).
    """
    if not isinstance(error, UpstreamError) or not error.upstream_fault:
        return None
    if isinstance(error, UpstreamStalled):
        return "stall"
    if isinstance(error, UpstreamReset):
        return "reset"
    if isinstance(error, BadUpstreamResponse):
        return "malformed"
    return "error"


class Answering(Protocol):
    """What a resumed stream needs of its request (`router.api.exchange.Exchange`)."""

    stats: AnswerStats | None

    @property
    def record(self) -> RequestRecord: ...

    @property
    def messages(self) -> list[Any]: ...

    @property
    def trace(self) -> Trace | None: ...

    def attempt_broke(self, error: BaseException) -> None:
        """Free the broken attempt's lease now (its breaker learns of `error`)."""

    def continue_on(self, lease: Lease) -> None:
        """The continuation holds `lease` from now on."""


class _Delta(msgspec.Struct):
    content: Any = None
    tool_calls: Any = None
    reasoning_content: Any = None
    reasoning: Any = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    finish_reason: Any = None


class _Chunk(msgspec.Struct):
    """A chunk as far as resuming reads it (the first attempt's chunks are relayed untouched)."""

    id: Any = None
    created: Any = None
    model: Any = None
    choices: list[_Choice] | None = None


_read_chunk = msgspec.json.Decoder(_Chunk).decode

_OVERHEAD = 64  # what a kept payload costs beyond its bytes (the bytes object and its list slot), rounded up
# The kept payloads' bytes are summed every this many payloads, not per payload (summing per payload cost
# an unbroken 200-chunk stream ~15 us, about as much as keeping them): so `keep_raw_bytes` may be exceeded
# by up to this many payloads (each at most the upstream's `max_line_bytes`) before they are read.
_CHECK_EVERY = 16


@dataclass(slots=True)
class _Tally:
    """The continuation's own retries and waits (not the request's overhead: that ended with its first
    byte)."""

    retries: int = 0
    upstream_wait: float = 0.0


class ResumingStream(EventStream):
    """An upstream stream that, when it breaks after the answer started, goes on on another upstream."""

    def __init__(
        self,
        inner: EventStream,
        first: list[bytes],
        lease: Lease,
        route: Route,
        request: ChatRequest,
        body: dict[str, Any],
        answering: Answering,
        registry: Registry,
        open_stream: OpenStream,
        allowed: Set[str] | None,
        collect_text: bool,
    ) -> None:
        assert route.resume is not None
        self.inner = inner
        self.stats = inner.stats
        self._route = route  # the route the client asked for: its resume policy, its fallbacks
        self._max_resumes = route.resume.max_resumes
        self._request = request
        self._body = body
        self._answering = answering
        self._registry = registry
        self._events: EventBus = registry.events
        self._open_stream = open_stream
        self._allowed = allowed
        self._collect = collect_text
        first_policy = lease.route.config.policy
        self._budget = clamp_max_tokens(
            request.max_completion_tokens or request.max_tokens, first_policy.max_tokens
        )
        self._serving = (lease.route.path, lease.replica.name)  # the attempt now relayed
        self._upstreams = [lease.upstream_name]
        self._failed: list[tuple[str, str]] = []  # (route path, replica) of every attempt that broke
        self._pieces: list[str] = []  # the answer's content so far, as relayed (once read)
        self._raw: list[bytes] | None = []  # the first attempt's payloads not read yet; None: never again
        self._keep_raw = route.resume.keep_raw_bytes
        self._raw_left = self._keep_raw  # what `_raw` may still hold, as of its first `_raw_summed` payloads
        self._raw_summed = 0
        self._check_at = _CHECK_EVERY if self._keep_raw else 1  # `_raw`'s length at which to sum it again
        self._blocked = False  # tool calls, reasoning or an unreadable chunk relayed: never resumed
        self._finished = False  # a finish reason relayed: the answer was complete
        self._head: dict[str, Any] | None = None  # the first chunk's id, created and model
        self._resumes = 0
        self._pending: asyncio.Task[list[bytes]] | None = None  # a resume under way
        self._messages: list[Any] = answering.messages  # the current attempt's prompt, for an estimate
        self._attempt_open = True  # the current attempt's tokens are not in the sums yet
        self._attempt_from = 0  # where the current attempt's text starts in `_pieces`
        self._earlier = [0, 0]  # prompt and completion tokens of the attempts that broke
        self._summed: AnswerStats | None = None  # the answer's stats once it was resumed
        self._loop = asyncio.get_running_loop()
        self._observe(first)

    async def read(self) -> list[bytes] | None:
        """The next batch of the answer; a break it may resume is resumed, others are raised."""
        while True:
            pending = self._pending
            if pending is not None:
                try:
                    # The relay cancels a silent read every heartbeat_interval: the resume goes on, and
                    # the next read takes its result (even one that came at the very moment of the cancel).
                    batch = await asyncio.shield(pending)
                except asyncio.CancelledError:
                    if pending.cancelled():  # the resume itself was cancelled (the stream is closing)
                        self._pending = None
                    raise
                except BaseException:
                    self._pending = None
                    raise
                self._pending = None
                return batch
            try:
                batch_or_end = await self.inner.read()
            except UpstreamError as error:
                if not self.survives(error):
                    self._fold()
                    raise
                continue
            if batch_or_end:
                raw = self._raw
                if raw is not None:  # `_observe`, inline: this is all an unbroken stream pays per batch
                    raw.extend(batch_or_end)
                    if len(raw) >= self._check_at:
                        self._check_raw()
                    return batch_or_end
                return self._stitch(batch_or_end) if self._resumes else batch_or_end
            if batch_or_end is None:
                self._fold()
            return batch_or_end

    def survives(self, error: RouterError) -> bool:
        """Resume after `error` (a break of the read, or the relay's stall) if the answer may be resumed:
        the resume starts now and the next reads take its continuation. True while one is under way."""
        if self._pending is not None:
            return True
        cause = cause_of(error)
        if cause is None or self._resumes >= self._max_resumes:
            return False
        self._read_raw()
        if self._blocked or self._finished:
            return False
        self._pending = self._loop.create_task(self._resume(error, cause))
        return True

    def close(self) -> None:
        """Cancel a resume under way, close the active upstream, and settle the answer's counts."""
        pending, self._pending = self._pending, None
        if pending is not None:
            if not pending.done():
                pending.cancel()
            elif not pending.cancelled():
                pending.exception()  # retrieved: the relay reports the break itself
        self.inner.close()
        self._fold()

    # ---- resuming ------------------------------------------------------------------------------------

    async def _resume(self, error: RouterError, cause: str) -> list[bytes]:
        """Continue the answer on another upstream; its first payloads, stitched. Raises `error` when no
        upstream can continue it (or none is left within the token budget)."""
        answering = self._answering
        record = answering.record
        broken = self._upstreams[-1]
        self._read_raw()  # `survives` read them; nothing came in between, but the text must be whole
        self._failed.append(self._serving)
        self.inner.close()
        self._close_attempt()
        self._raw = None  # what comes next is the continuation's (`_stitch` notes it)
        answering.attempt_broke(error)
        partial = "".join(self._pieces)
        remaining = None if self._budget is None else self._budget - self._earlier[1]
        if remaining is not None and remaining < 1:
            self._announce(cause, broken, None, "the answer's max_tokens were spent", error)
            raise error
        request = msgspec.structs.replace(self._request, max_tokens=remaining, max_completion_tokens=None)
        by_adapter = {  # how each server that may take over continues (one server, one mechanism)
            id(replica.upstream.adapter): replica.continuation
            for candidate in self._route.candidates()
            for replica in candidate.replicas
            if can_continue(replica.continuation)
        }
        body, open_stream = self._body, self._open_stream

        async def attempt(
            adapter: UpstreamAdapter, call: ChatCall, limits: Limits
        ) -> tuple[EventStream, list[bytes]]:
            mechanism = by_adapter.get(id(adapter), "none")
            call = replace(call, body=continuation_body(mechanism, body, partial))
            return await open_stream(adapter, call, limits)

        tally = _Tally()
        try:
            (stream, first), lease = await dispatch(
                self._route,
                request,
                body,
                record.request_id,
                self._registry,
                attempt,
                tally,
                self._allowed,
                False,
                trace=answering.trace,
                never=self._barred,
            )
        except Exception as failure:  # no upstream could take over: the client gets the break's error event
            record.retries += tally.retries
            if not isinstance(failure, RouterError):
                log.error("unexpected error resuming a stream", exc_info=failure)
            self._announce(cause, broken, None, str(failure), error)
            raise error from None
        record.retries += tally.retries
        self.inner = stream
        answering.continue_on(lease)
        self._serving = (lease.route.path, lease.replica.name)
        self._upstreams.append(lease.upstream_name)
        self._resumes += 1
        record.resumes, record.upstreams = self._resumes, list(self._upstreams)
        self._messages = (
            [*body["messages"], {"role": "assistant", "content": partial}] if partial else body["messages"]
        )
        self._attempt_open = True
        self._attempt_from = len(self._pieces)
        self._announce(cause, broken, lease.upstream_name, str(error), error)
        return self._stitch(first)

    def _barred(self, candidate: Route) -> Collection[str]:
        """Replicas of `candidate` a resume must not use: those that broke, those that cannot continue."""
        names = {replica.name for replica in candidate.replicas if not can_continue(replica.continuation)}
        names.update(name for path, name in self._failed if path == candidate.path)
        return names

    def _announce(
        self, cause: str, broken: str, upstream: str | None, detail: str, error: BaseException
    ) -> None:
        """The `resume` event (`/events`, the log, `router_stream_resumes_total`)."""
        route = self._route.path
        if upstream is not None:
            message = (
                f"stream of route {route} resumed on upstream {upstream} after upstream {broken} broke "
                f"({cause}): {detail}"
            )
        else:
            message = (
                f"stream of route {route} could not be resumed after upstream {broken} broke ({cause}: "
                f"{error}): {detail}"
            )
        self._events.publish(
            "resume",
            message=message,
            route=route,
            cause=cause,
            ok=upstream is not None,
            broken=broken,
            upstream=upstream,
            upstreams=list(self._upstreams),
            resumes=self._resumes,
            request_id=self._answering.record.request_id,
        )

    # ---- what was relayed ------------------------------------------------------------------------------

    def _observe(self, payloads: list[bytes]) -> None:
        """Keep the first attempt's chunks (they are relayed untouched) to be read at a break: an unbroken
        stream pays a list extend per batch. Past `resume.keep_raw_bytes` of them they are read now
        (`_read_raw`), and only their text is kept. `read` does the same inline."""
        raw = self._raw
        if raw is not None:
            raw.extend(payloads)
            if len(raw) >= self._check_at:
                self._check_raw()

    def _check_raw(self) -> None:
        """Sum the payloads kept since the last check; past `keep_raw_bytes`, read them all now."""
        raw = self._raw
        assert raw is not None
        count = len(raw)
        new = raw[self._raw_summed :]
        self._raw_left -= sum(map(len, new)) + _OVERHEAD * len(new)
        self._raw_summed = count
        if self._raw_left < 0:
            self._read_raw()
        else:
            self._check_at = count + _CHECK_EVERY

    def _read_raw(self) -> None:
        """Read the kept chunks: the text, the head, and what forbids a resume (tool calls, reasoning, a
        finish reason, a chunk we cannot read). Once a resume is forbidden, later chunks are not kept."""
        raw = self._raw
        if not raw:
            return
        self._raw, self._raw_left, self._raw_summed = [], self._keep_raw, 0
        self._check_at = _CHECK_EVERY if self._keep_raw else 1
        for payload in raw:
            try:
                chunk = _read_chunk(payload)
            except (msgspec.DecodeError, msgspec.ValidationError):
                self._blocked = True  # not a chunk we can read: never guess what the client saw
                continue
            if self._head is None and chunk.id is not None:
                head = {"id": chunk.id, "created": chunk.created, "model": chunk.model}
                self._head = {key: value for key, value in head.items() if value is not None}
            for choice in chunk.choices or ():
                delta = choice.delta
                if delta is not None:
                    if isinstance(delta.content, str) and delta.content:
                        self._pieces.append(delta.content)
                    if delta.tool_calls or delta.reasoning_content or delta.reasoning:
                        self._blocked = True
                if choice.finish_reason:
                    self._finished = True
        if self._blocked or self._finished:
            self._raw = None  # this attempt is never resumed: nothing more to note

    def _stitch(self, payloads: list[bytes]) -> list[bytes]:
        """A continuation's chunks as part of the first attempt's stream: its id, created and model, no
        second role, usage summed, and the finish chunk saying who served the answer."""
        out: list[bytes] = []
        for payload in payloads:
            chunk = msgspec.json.decode(payload)  # the adapter checked it is a JSON object
            if self._head:
                chunk.update(self._head)
            keep = False
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if isinstance(delta, dict):
                    delta.pop("role", None)
                    content = delta.get("content")
                    if isinstance(content, str) and content:
                        self._pieces.append(content)
                    if delta.get("tool_calls") or delta.get("reasoning_content") or delta.get("reasoning"):
                        self._blocked = True
                    keep = keep or any(value not in (None, "") for value in delta.values())
                if isinstance(choice, dict) and choice.get("finish_reason"):
                    self._finished = keep = True
                    chunk["router"] = {"upstreams": list(self._upstreams), "resumes": self._resumes}
            usage = chunk.get("usage")
            if isinstance(usage, dict):
                chunk["usage"] = self._summed_usage(usage)
                keep = True
            if keep:
                out.append(msgspec.json.encode(chunk))
        return out

    def _summed_usage(self, usage: dict[str, Any]) -> dict[str, Any]:
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        prompt = self._earlier[0] + (prompt if isinstance(prompt, int) else 0)
        completion = self._earlier[1] + (completion if isinstance(completion, int) else 0)
        return {
            **usage,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    # ---- counting ----------------------------------------------------------------------------------

    def _close_attempt(self) -> None:
        """Add the current attempt's tokens (its own counts, else estimates) to the answer's sums."""
        if not self._attempt_open:
            return
        self._attempt_open = False
        stats = self.inner.stats
        record = self._answering.record
        # what this attempt relayed (the adapters' `chars` may also count text that was never relayed)
        chars = sum(map(len, self._pieces[self._attempt_from :]))
        prompt, completion = stats.prompt_tokens, stats.completion_tokens
        if prompt is None:
            prompt, record.prompt_estimated = estimate_prompt(self._messages), True
        if completion is None:
            completion, record.completion_estimated = estimate_tokens(chars), True
        self._earlier[0] += prompt
        self._earlier[1] += completion
        summed = self._summed
        if summed is None:
            summed = self._summed = AnswerStats(model=stats.model)
            self.stats = self._answering.stats = summed
        summed.prompt_tokens, summed.completion_tokens = self._earlier
        summed.chars += chars
        summed.finish_reason = stats.finish_reason
        summed.text = self._pieces if self._collect else None

    def _fold(self) -> None:
        """At the answer's end: a resumed answer's stats take the last attempt's tokens too."""
        if self._summed is not None:
            self._close_attempt()
