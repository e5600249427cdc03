"""One chat request's life, from arrival to the end of its answer, ended exactly once by one owner.

What a request holds must be let go on every way out: the upstream's lease (in-flight count, concurrency
slot, breaker permit), the session turn waiting for its answer, the request record waiting to be logged.
Those ways out are many (an error before the answer, a whole answer sent, a stream that ends, fails, stalls
or loses its client before or after its first byte, a cancelled task) and they happen in different
places: the handler, the whole-answer response, the streaming relay, the SSE response. Each of them calls
`Exchange.end`; only the first call does anything, so the lease, the record and the turn need no
"already done" flags of their own.

The end has two steps, because a whole answer is complete before it is sent: `upstream_done` frees the
upstream and records the session turn as soon as the upstream's part is over, and `end` (which takes
that step too if it was not taken) closes the record and reports it, once the answer has left, so
logging and metrics never run on the client's clock.

A traced request (tracing on) also holds its server span, `trace`, which the end closes with the record;
with tracing off it is None and costs nothing. Every answer says what the router itself cost it:
`X-Router-Overhead-Ms` (`RequestRecord.overhead` up to the moment the answer starts leaving).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from router.dispatch import Lease
from router.echo import shown
from router.errors import RouterError
from router.observability import Observer, RequestRecord
from router.observability.tokens import estimate_prompt, estimate_tokens
from router.upstreams.base import AnswerStats, EventStream

log = logging.getLogger("router.sessions")

if TYPE_CHECKING:
    from router.observability.tracing import RequestTrace

OVERHEAD_HEADER = "X-Router-Overhead-Ms"


class Sessions(Protocol):
    """Server-side conversations (see `router.sessions`, `router.state`): history in, the finished turn out.

    Awaited, because the store may be shared between processes (Redis): a RouterError (503) then says the
    shared store cannot be reached, and the turn is refused rather than answered without its history.
    """

    async def history(self, session_id: str, owner: str | None) -> list[dict[str, Any]]:
        """The stored messages of a session (empty for a new one); RouterError if not the owner's."""
        ...

    async def record_turn(
        self, session_id: str, owner: str | None, sent: list[dict[str, Any]], answer: str, interrupted: bool
    ) -> None:
        """Append what the client sent and what the model answered (partially, when interrupted)."""
        ...


class Turn:
    """A session turn waiting for its answer."""

    __slots__ = ("owner", "sent", "session_id", "sessions")

    def __init__(self, sessions: Sessions, session_id: str, owner: str | None, sent: list[dict[str, Any]]):
        self.sessions = sessions
        self.session_id = session_id
        self.owner = owner
        self.sent = sent

    async def save(self, stats: AnswerStats, interrupted: bool = False) -> None:
        """Store the turn with the answer's text (the part that arrived, when interrupted)."""
        answer = "".join(stats.text or ())
        await self.sessions.record_turn(self.session_id, self.owner, self.sent, answer, interrupted)

    def save_later(self, stats: AnswerStats, interrupted: bool) -> None:
        """Store the turn in the background (an answer that did not end cleanly: nobody waits for it)."""
        task = asyncio.get_running_loop().create_task(self._save_logged(stats, interrupted))
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)

    async def _save_logged(self, stats: AnswerStats, interrupted: bool) -> None:
        try:
            await self.save(stats, interrupted)
        except Exception as error:
            log.warning("session %s: turn not recorded: %s", shown(self.session_id), error)


_BACKGROUND: set[asyncio.Task[None]] = set()  # turns being stored in the background (kept from collection)


class Exchange:
    """A chat request and everything it holds; `end` lets all of it go, once."""

    __slots__ = ("_between", "_ended", "lease", "messages", "observer", "record", "stats", "trace", "turn")

    def __init__(self, request_id: str, observer: Observer) -> None:
        self.record = RequestRecord(request_id)
        self.observer = observer
        self.turn: Turn | None = None
        self.lease: Lease | None = None
        self.stats: AnswerStats | None = None
        self.trace: RequestTrace | None = None
        self.messages: list[Any] = []  # the prompt sent upstream, for an estimate when no count comes
        self._ended = False
        self._between = False  # a resumed stream between a broken attempt and its continuation

    def serve(self, lease: Lease, stats: AnswerStats) -> dict[str, str]:
        """The answer started on `lease`; the headers that say which route and upstream serve it, and
        what the router cost it so far (all of it for a whole answer, but for the write itself)."""
        self.lease, self.stats = lease, stats
        record = self.record
        record.upstream, record.route = lease.upstream_name, lease.route.path
        now = record.served_at = time.perf_counter()
        overhead = max(now - record.started - record.upstream_wait, 0.0)
        if self.trace is not None:
            self.trace.served(lease.replica.upstream.config.type)
        return {
            "X-Router-Route": lease.route.path,
            "X-Router-Upstream": lease.upstream_name,
            OVERHEAD_HEADER: f"{overhead * 1000.0:.3f}",
        }

    async def save_turn(self) -> None:
        """Store the session turn of an answer that completed, before its end reaches the client.

        The client's next turn, on any process, then finds it; a store that cannot be reached fails this
        answer (503, or the stream's error event) rather than silently forking the conversation.
        """
        turn, self.turn = self.turn, None
        if turn is not None and self.stats is not None:
            await turn.save(self.stats)

    def attempt_broke(self, error: BaseException) -> None:
        """A resumed stream's attempt broke (`router.resume`): its lease is freed now, so its breaker learns
        of `error` at once; the answer goes on, on the lease `continue_on` brings, or ends without one."""
        lease, self.lease = self.lease, None
        if lease is not None:
            lease.finish(error)
            self._between = True

    def continue_on(self, lease: Lease) -> None:
        """The continuation of a resumed stream holds `lease` from now on (freed when the answer ends)."""
        self.lease, self._between = lease, False

    def upstream_done(self, outcome: BaseException | None) -> None:
        """The upstream's part is over: free the lease (the breaker learns the outcome), store the turn."""
        lease, self.lease = self.lease, None
        if lease is not None:
            lease.finish(outcome)
        elif self._between:  # a resumed stream ended while it had no attempt: its answer still counts
            self._between = False
        else:
            return
        stats = self.stats
        if stats is not None:
            record = self.record
            record.prompt_tokens, record.completion_tokens = stats.prompt_tokens, stats.completion_tokens
            if record.prompt_tokens is None:  # the upstream said nothing: estimate, and say so
                record.prompt_tokens, record.prompt_estimated = estimate_prompt(self.messages), True
            if record.completion_tokens is None:
                record.completion_tokens, record.completion_estimated = estimate_tokens(stats.chars), True
            turn, self.turn = self.turn, None
            if turn is not None:  # not stored yet: the answer did not complete (see `save_turn`)
                turn.save_later(stats, interrupted=outcome is not None)

    def end(self, outcome: BaseException | None, status: int = 200) -> None:
        """The request is over (`outcome` None: answered in full); only the first call counts."""
        if self._ended:
            return
        self._ended = True
        self.upstream_done(outcome)
        self.record.close(status, outcome)
        if self.trace is not None:
            self.trace.finish(self.record, self.stats)
        self.observer.request_finished(self.record)


class TurnSavingStream(EventStream):
    """A stream whose clean end first stores the session turn, so its end marker means "saved" too."""

    def __init__(self, inner: EventStream, exchange: Exchange) -> None:
        self.inner, self.exchange, self.stats = inner, exchange, inner.stats

    async def read(self) -> list[bytes] | None:
        """The inner stream's next batch; at its clean end, the turn is stored first."""
        batch = await self.inner.read()
        if batch is None:
            await self.exchange.save_turn()
        return batch

    def close(self) -> None:
        """Close the inner stream."""
        self.inner.close()

    def survives(self, error: RouterError) -> bool:
        """What the inner stream says (a resumable one may go on after a stall)."""
        return self.inner.survives(error)
