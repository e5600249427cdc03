"""Server-side conversations: a client sends `session_id` and only its new message; the router keeps the rest.

The store is in memory and bounded on every axis an abusive or forgetful client could grow: the number
of sessions per key and in all (least recently used dropped first, a key's own before anybody else's),
messages and characters per session (oldest messages dropped first, each message counted whole) and idle
time. It lives in the runtime, not in a table version, so a reload keeps every conversation and only
updates the limits. The bounds themselves are small pure functions (`message_size`, `messages_to_drop`,
`make_room`, `enforce_limits`) so that any other store applies exactly the same rules.

A session belongs to the principal (API key name) that created it. Another principal is told the session
does not exist, exactly as for an unknown id; with no keys configured every caller is the same `None`.

Everything runs on the event loop thread, so there is no locking. Two requests of one session running at
the same time both see the history as it was when they started, and their turns are appended in the
order they end: the same as a client sending two messages without waiting.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from router.config.models import SessionSettings
from router.echo import quoted
from router.errors import InvalidRequest, RouterError

log = logging.getLogger("router.sessions")

SESSION_ID = re.compile(r"[A-Za-z0-9._~:-]{1,128}")
"""What a session id may look like: a UUID, a ULID or any short token, safe in a URL path and in logs."""


class SessionNotFound(RouterError):
    """No session by that id for this caller (it may exist for another one: that is not revealed)."""

    status = 404
    type = "not_found_error"
    code = "session_not_found"


def check_session_id(session_id: str) -> str:
    """The id itself, or InvalidRequest naming the field."""
    if not SESSION_ID.fullmatch(session_id):
        raise InvalidRequest(
            "session_id must be 1 to 128 characters among letters, digits and . _ ~ : - (a UUID works)",
            param="session_id",
            code="invalid_session_id",
        )
    return session_id


Principal = str | None
"""Who owns a session: the name of the API key that created it, or None when the router has no client keys."""


def encode_message(message: Mapping[str, Any]) -> bytes:
    """A message as a store keeps it: its compact JSON encoding, every field included."""
    return msgspec.json.encode(message)


def message_size(message: Mapping[str, Any]) -> int:
    """What one message counts against `sessions.max_chars`: the length of `encode_message(message)`.

    The whole message counts, not only its `content`: every field a client sends (`name`, `tool_calls`,
    fields the router does not know) is kept and sent again on every turn, so counting less would let a
    client park megabytes in a field nobody counted while /status reported a few characters. The length is
    in UTF-8 bytes of the JSON (plain ASCII text counts its characters plus the JSON around them), which
    is exactly what a store holds: this one keeps the encoded bytes, a remote store sends them.
    """
    return len(encode_message(message))


def messages_to_drop(sizes: Iterable[int], count: int, total: int, settings: SessionSettings) -> int:
    """How many of a session's oldest messages to drop so that it fits `max_messages` and `max_chars`.

    `sizes` are the `message_size`s of its messages, oldest first; `count` how many there are and `total`
    their sum. The answer is the fewest oldest messages whose removal leaves at most `max_messages`
    messages totalling at most `max_chars`. It may be all of them: a message larger than `max_chars` on
    its own is not kept at all (the request that carried it was still answered).
    """
    drop = 0
    for size in sizes:
        if count - drop <= settings.max_messages and total <= settings.max_chars:
            break
        drop += 1
        total -= size
    return drop


def make_room(
    owner: Principal, counts: Mapping[Principal, int], settings: SessionSettings
) -> list[Principal]:
    """Before `owner` starts a new session: whose least recently used session goes, one entry per session.

    `counts` holds how many sessions each principal has now. First the per-key bound: an owner holding
    `max_sessions_per_key` sessions or more loses its own oldest ones until the new one fits, never anybody
    else's, so one key creating sessions in a loop only ever churns through its own. Then the global
    bound: while the store holds `max_sessions` or more, the principal holding the most sessions loses its
    least recently used one (the owner itself on a tie), so a key never pushes out the conversations of a
    key holding fewer than it does. Without client keys every caller is the one principal None, and both
    bounds apply to it: the store then keeps at most min(max_sessions, max_sessions_per_key) sessions.
    """
    left = dict(counts)
    victims: list[Principal] = []
    for _ in range(left.get(owner, 0) - settings.max_sessions_per_key + 1):
        victims.append(owner)
        left[owner] -= 1
    victims += _largest_first(left, settings.max_sessions - 1, owner)
    return victims


def enforce_limits(counts: Mapping[Principal, int], settings: SessionSettings) -> list[Principal]:
    """After the limits changed (a reload): whose least recently used sessions go, one entry per session.

    The same rules as `make_room` without a newcomer: each principal above `max_sessions_per_key` loses its
    own oldest sessions down to it, then, while the total is above `max_sessions`, the principal holding
    the most sessions loses its least recently used one.
    """
    left = dict(counts)
    victims: list[Principal] = []
    for principal, count in counts.items():
        for _ in range(count - settings.max_sessions_per_key):
            victims.append(principal)
            left[principal] -= 1
    victims += _largest_first(left, settings.max_sessions, None)
    return victims


def _largest_first(left: dict[Principal, int], most: int, prefer: Principal) -> list[Principal]:
    """Take sessions one at a time from whoever holds the most (`prefer` on a tie) until `most` remain."""
    victims: list[Principal] = []
    total = sum(left.values())
    while total > most:
        victim = max(left, key=lambda principal: (left[principal], principal == prefer))
        victims.append(victim)
        left[victim] -= 1
        total -= 1
    return victims


@dataclass(slots=True)
class _Session:
    owner: Principal
    last_used: float
    messages: deque[bytes] = field(default_factory=deque)  # each as `encode_message` made it
    chars: int = 0  # the sum of their lengths: the session's `message_size` total
    turns: int = 0
    interrupted_turns: int = 0


class SessionStore:
    """Conversations by id, bounded by `SessionSettings`; implements `router.api.chat.Sessions`.

    Messages are kept as their JSON encoding, so the size each counts (`message_size`) is exactly the
    memory it holds, and what /status reports is what is stored.
    """

    def __init__(
        self, settings: SessionSettings | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings or SessionSettings()
        self._clock = clock
        # Least recently used first: eviction pops from the front, a use moves a session to the end.
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        # The same order per owner, for the per-key bound (evicting an owner's oldest is one pop).
        self._owned: dict[Principal, OrderedDict[str, None]] = {}
        self.evicted = 0
        self.expired = 0
        self.trimmed_messages = 0

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def configure(self, settings: SessionSettings) -> None:
        """Apply the limits of a new config to the sessions already kept (a reload keeps them)."""
        self.settings = settings
        self._expire(self._clock())
        for owner in enforce_limits(self._counts(), settings):
            self._evict_oldest_of(owner)
        for session in self._sessions.values():
            self._trim(session)

    # ---- the Sessions protocol ----------------------------------------------------------------------

    def history(self, session_id: str, owner: str | None) -> list[dict[str, Any]]:
        """The stored messages (a copy; empty for a new id); SessionNotFound if another owner's."""
        check_session_id(session_id)
        now = self._clock()
        self._expire(now)
        session = self._sessions.get(session_id)
        if session is None:
            return []
        if session.owner != owner:
            raise not_found(session_id)
        self._touch(session_id, session, now)
        if not session.messages:
            return []
        return msgspec.json.decode(b"[" + b",".join(session.messages) + b"]")  # type: ignore[no-any-return]

    def record_turn(
        self, session_id: str, owner: str | None, sent: list[dict[str, Any]], answer: str, interrupted: bool
    ) -> None:
        """Append what was sent and the answer (the partial one when interrupted); never raises.

        Called when a request ends, possibly after the client left: there is nobody to tell about a
        problem, so a turn that cannot be recorded (the id was taken by another owner meanwhile) is logged.
        """
        now = self._clock()
        self._expire(now)
        session = self._sessions.get(session_id)
        if session is None:
            for victim in make_room(owner, self._counts(), self.settings):
                self._evict_oldest_of(victim)
            session = self._sessions[session_id] = _Session(owner=owner, last_used=now)
            self._owned.setdefault(owner, OrderedDict())[session_id] = None
        elif session.owner != owner:
            log.warning("session %s: turn not recorded, the session belongs to another caller", session_id)
            return
        # An answer cut off before its first word adds nothing a model could continue from.
        assistant = [{"role": "assistant", "content": answer}] if answer or not interrupted else []
        for message in [*sent, *assistant]:
            encoded = encode_message(message)  # a copy: the request's own dict may still be read
            session.messages.append(encoded)
            session.chars += len(encoded)
        session.turns += 1
        session.interrupted_turns += interrupted
        self._touch(session_id, session, now)
        self._trim(session)

    # ---- the rest of the API ------------------------------------------------------------------------

    def delete(self, session_id: str, owner: str | None) -> bool:
        """Forget a session; False when there is none by that id for this owner."""
        self._expire(self._clock())
        session = self._sessions.get(session_id)
        if session is None or session.owner != owner:
            return False
        self._forget(session_id, session)
        return True

    def counts(self) -> dict[str, Any]:
        """What /status shows: current use, the limits, and what the bounds took away since start.

        `chars` is the sum of the stored messages' `message_size`, the quantity `max_chars` bounds.
        """
        self._expire(self._clock())
        settings = self.settings
        return {
            "enabled": settings.enabled,
            "sessions": len(self._sessions),
            "messages": sum(len(s.messages) for s in self._sessions.values()),
            "chars": sum(s.chars for s in self._sessions.values()),
            "max_sessions": settings.max_sessions,
            "max_sessions_per_key": settings.max_sessions_per_key,
            "max_messages": settings.max_messages,
            "max_chars": settings.max_chars,
            "idle_ttl": settings.idle_ttl,
            "evicted": self.evicted,
            "expired": self.expired,
            "trimmed_messages": self.trimmed_messages,
        }

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    # ---- bounds ---------------------------------------------------------------------------------------

    def _counts(self) -> dict[Principal, int]:
        return {owner: len(ids) for owner, ids in self._owned.items()}

    def _touch(self, session_id: str, session: _Session, now: float) -> None:
        session.last_used = now
        self._sessions.move_to_end(session_id)
        self._owned[session.owner].move_to_end(session_id)

    def _forget(self, session_id: str, session: _Session) -> None:
        del self._sessions[session_id]
        owned = self._owned[session.owner]
        del owned[session_id]
        if not owned:
            del self._owned[session.owner]

    def _expire(self, now: float) -> None:
        # The front is the least recently used, so the expired ones are a prefix: stop at the first live one.
        deadline = now - self.settings.idle_ttl
        while self._sessions:
            session_id, session = next(iter(self._sessions.items()))
            if session.last_used > deadline:
                return
            self._forget(session_id, session)
            self.expired += 1

    def _evict_oldest_of(self, owner: Principal) -> None:
        session_id = next(iter(self._owned[owner]))
        self._forget(session_id, self._sessions[session_id])
        self.evicted += 1
        log.info("session %s evicted: max_sessions or max_sessions_per_key reached", session_id)

    def _trim(self, session: _Session) -> None:
        messages = session.messages
        drop = messages_to_drop(map(len, messages), len(messages), session.chars, self.settings)
        for _ in range(drop):
            session.chars -= len(messages.popleft())
        self.trimmed_messages += drop


def not_found(session_id: str) -> SessionNotFound:
    """The 404 for a session this caller does not have (unknown, expired, deleted or another's)."""
    return SessionNotFound(
        f"no session {quoted(session_id)}; it may have expired or been deleted", param="session_id"
    )
