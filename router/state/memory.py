"""The in-process backend: today's behaviour of one router process, behind the shared-state interface."""

from __future__ import annotations

from typing import Any

from router.sessions import SessionStore
from router.state.backend import SessionBackend, SharedState


class LocalSessions:
    """The process's `SessionStore`, awaited like a shared one (every call completes at once)."""

    __slots__ = ("store",)

    def __init__(self, store: SessionStore) -> None:
        self.store = store

    async def history(self, session_id: str, owner: str | None) -> list[dict[str, Any]]:
        return self.store.history(session_id, owner)

    async def record_turn(
        self, session_id: str, owner: str | None, sent: list[dict[str, Any]], answer: str, interrupted: bool
    ) -> None:
        self.store.record_turn(session_id, owner, sent, answer, interrupted)

    async def delete(self, session_id: str, owner: str | None) -> bool:
        return self.store.delete(session_id, owner)


class MemoryState(SharedState):
    """Nothing is shared: sessions, buckets, breakers and health stay in this process."""

    backend = "memory"

    def sessions(self, store: SessionStore) -> SessionBackend:
        return LocalSessions(store)
