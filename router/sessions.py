"""Server-side conversations: a client sends `session_id` and only its new message; the router keeps the rest.

The store is in memory and bounded on every axis an abusive or forgetful client could grow: the number
of sessions (least recently used dropped first), messages and characters per session (oldest messages
dropped first) and idle time. It lives in the runtime, not in a table version, so a reload keeps every
conversation and only updates the limits.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from router.config.models import SessionSettings
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


def message_chars(message: dict[str, Any]) -> int:
    """A message's size for the per-session bound: its text, or its JSON when content is not plain text."""
    content = message.get("content")
    if isinstance(content, str):
        return len(content)
    if content is None:
        return 0
    return len(msgspec.json.encode(content))


@dataclass(slots=True)
class _Session:
    owner: str | None
    last_used: float
    messages: deque[dict[str, Any]] = field(default_factory=deque)
    chars: int = 0
    turns: int = 0
    interrupted_turns: int = 0


class SessionStore:
    """Conversations by id, bounded by `SessionSettings`; implements `router.api.chat.Sessions`."""

    def __init__(
        self, settings: SessionSettings | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings or SessionSettings()
        self._clock = clock
        # Least recently used first: eviction pops from the front, a use moves a session to the end.
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
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
        while len(self._sessions) > settings.max_sessions:
            self._evict_oldest()
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
            raise _not_found(session_id)
        self._touch(session_id, session, now)
        return list(session.messages)

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
            while len(self._sessions) >= self.settings.max_sessions:
                self._evict_oldest()
            session = self._sessions[session_id] = _Session(owner=owner, last_used=now)
        elif session.owner != owner:
            log.warning("session %s: turn not recorded, the session belongs to another caller", session_id)
            return
        # An answer cut off before its first word adds nothing a model could continue from.
        assistant = [{"role": "assistant", "content": answer}] if answer or not interrupted else []
        for message in [*sent, *assistant]:
            message = dict(message)  # the request's own dict may still be read by the adapter
            session.messages.append(message)
            session.chars += message_chars(message)
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
        del self._sessions[session_id]
        return True

    def counts(self) -> dict[str, Any]:
        """What /status shows: current use, the limits, and what the bounds took away since start."""
        self._expire(self._clock())
        settings = self.settings
        return {
            "enabled": settings.enabled,
            "sessions": len(self._sessions),
            "messages": sum(len(s.messages) for s in self._sessions.values()),
            "chars": sum(s.chars for s in self._sessions.values()),
            "max_sessions": settings.max_sessions,
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

    def _touch(self, session_id: str, session: _Session, now: float) -> None:
        session.last_used = now
        self._sessions.move_to_end(session_id)

    def _expire(self, now: float) -> None:
        # The front is the least recently used, so the expired ones are a prefix: stop at the first live one.
        deadline = now - self.settings.idle_ttl
        while self._sessions:
            session_id, session = next(iter(self._sessions.items()))
            if session.last_used > deadline:
                return
            del self._sessions[session_id]
            self.expired += 1

    def _evict_oldest(self) -> None:
        session_id, _ = self._sessions.popitem(last=False)
        self.evicted += 1
        log.info("session %s evicted: max_sessions (%d) reached", session_id, self.settings.max_sessions)

    def _trim(self, session: _Session) -> None:
        settings = self.settings
        while session.messages and (
            len(session.messages) > settings.max_messages or session.chars > settings.max_chars
        ):
            session.chars -= message_chars(session.messages.popleft())
            self.trimmed_messages += 1


def _not_found(session_id: str) -> SessionNotFound:
    return SessionNotFound(
        f"no session {session_id!r}; it may have expired or been deleted", param="session_id"
    )
