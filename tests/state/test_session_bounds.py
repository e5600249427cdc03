"""The Redis session store keeps the very bounds of the in-memory one: the same turns, the same histories."""

from __future__ import annotations

import asyncio
from typing import Any

from router.config.models import SessionSettings, StateSettings
from router.sessions import SessionNotFound, SessionStore
from router.state.memory import LocalSessions
from router.state.redis import RedisState
from tests.state.conftest import RedisServer


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


TURNS = [  # (session, owner, question, answer, interrupted)
    ("a", None, "one", "uno", False),
    ("b", None, "two", "dos", False),
    ("a", None, "three" * 5, "tres", False),  # 53 bytes of JSON: trims by max_chars
    ("c", None, "four", "", True),  # interrupted before a word: the question alone
    ("d", "k", "five", "cinco", False),  # evicts the least recently used (b)
    ("a", None, "six", "seis", False),
]


async def _replay(sessions: Any) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for session, owner, question, answer, interrupted in TURNS:
        await sessions.history(session, owner)
        await sessions.record_turn(session, owner, [user(question)], answer, interrupted)
    for session, owner in (("a", None), ("b", None), ("c", None), ("d", "k")):
        seen[session] = await sessions.history(session, owner)
    try:
        await sessions.history("d", None)
        seen["d-other"] = "visible"
    except SessionNotFound:
        seen["d-other"] = "not found"
    seen["deleted"] = (await sessions.delete("c", "k"), await sessions.delete("c", None))
    seen["after"] = await sessions.history("c", None)
    return seen


async def test_both_stores_keep_the_same_bounds(redis_server: RedisServer) -> None:
    # Whole messages count (their JSON): the last three of "a" are 37 + 31 + 37 = 105 bytes, four are 158.
    limits = SessionSettings(max_sessions=3, max_messages=5, max_chars=120, idle_ttl=60)
    state = RedisState(StateSettings(backend="redis", url=redis_server.url, key_prefix="bounds:"))
    await state.start()
    try:
        assert state.up
        shared = await _replay(state.sessions(SessionStore(limits)))
    finally:
        await state.close()
    local = await _replay(LocalSessions(SessionStore(limits)))
    assert shared == local
    assert shared["b"] == []  # evicted: the least recently used when d arrived
    assert [m["content"] for m in shared["a"]] == ["tres", "six", "seis"]  # trimmed by max_chars
    assert shared["d-other"] == "not found" and shared["deleted"] == (False, True)


async def test_one_key_making_sessions_only_evicts_its_own(redis_server: RedisServer) -> None:
    """The per-key bound holds in Redis as in memory: key k churns through its own sessions only."""
    limits = SessionSettings(max_sessions=4, max_sessions_per_key=2, idle_ttl=60)

    async def replay(sessions: Any) -> dict[str, Any]:
        await sessions.record_turn("mine", "j", [user("keep me")], "kept", False)
        for n in range(6):
            await sessions.record_turn(f"k{n}", "k", [user(str(n))], "ok", False)
        return {
            sid: await sessions.history(sid, owner)
            for sid, owner in [("mine", "j"), *((f"k{n}", "k") for n in range(6))]
        }

    state = RedisState(StateSettings(backend="redis", url=redis_server.url, key_prefix="perkey:"))
    await state.start()
    try:
        shared = await replay(state.sessions(SessionStore(limits)))
    finally:
        await state.close()
    local = await replay(LocalSessions(SessionStore(limits)))
    assert shared == local
    assert len(shared["mine"]) == 2  # another key's conversation is untouched
    assert [sid for sid in ("k0", "k1", "k2", "k3", "k4", "k5") if shared[sid]] == ["k4", "k5"]


async def test_an_idle_session_expires(redis_server: RedisServer) -> None:
    limits = SessionSettings(idle_ttl=0.3)
    state = RedisState(StateSettings(backend="redis", url=redis_server.url, key_prefix="ttl:"))
    await state.start()
    try:
        sessions = state.sessions(SessionStore(limits))
        await sessions.record_turn("s", None, [user("hi")], "hello", False)
        assert len(await sessions.history("s", None)) == 2
        await asyncio.sleep(0.5)
        assert await sessions.history("s", None) == []
    finally:
        await state.close()
