"""The session store alone: bounds, idle expiry (with a hand-driven clock), eviction order, owners."""

from __future__ import annotations

from typing import Any

import pytest

from router.config.models import SessionSettings
from router.errors import InvalidRequest
from router.sessions import SessionNotFound, SessionStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def store(clock: Clock | None = None, **limits: Any) -> SessionStore:
    return SessionStore(SessionSettings(**limits), clock=clock or Clock())


def test_a_new_session_is_empty_and_turns_accumulate() -> None:
    sessions = store()
    assert sessions.history("s1", None) == []
    assert "s1" not in sessions  # asking for a history creates nothing
    sessions.record_turn("s1", None, [user("hi")], "hello", interrupted=False)
    sessions.record_turn("s1", None, [user("and?")], "and more", interrupted=False)
    assert sessions.history("s1", None) == [
        user("hi"),
        assistant("hello"),
        user("and?"),
        assistant("and more"),
    ]


def test_an_interrupted_turn_keeps_its_partial_answer() -> None:
    sessions = store()
    sessions.record_turn("s1", None, [user("story")], "Once upon a", interrupted=True)
    assert sessions.history("s1", None) == [user("story"), assistant("Once upon a")]
    assert sessions.counts()["sessions"] == 1


def test_an_answer_interrupted_before_its_first_word_adds_no_empty_message() -> None:
    sessions = store()
    sessions.record_turn("s1", None, [user("story")], "", interrupted=True)
    assert sessions.history("s1", None) == [user("story")]


def test_history_is_a_copy() -> None:
    sessions = store()
    sent = [user("hi")]
    sessions.record_turn("s1", None, sent, "hello", interrupted=False)
    sent[0]["content"] = "changed by the caller"
    sessions.history("s1", None).clear()
    assert sessions.history("s1", None) == [user("hi"), assistant("hello")]


def test_messages_beyond_max_messages_drop_the_oldest_first() -> None:
    sessions = store(max_messages=4)
    for n in range(3):
        sessions.record_turn("s1", None, [user(f"q{n}")], f"a{n}", interrupted=False)
    assert sessions.history("s1", None) == [user("q1"), assistant("a1"), user("q2"), assistant("a2")]
    assert sessions.counts()["trimmed_messages"] == 2


def test_characters_beyond_max_chars_drop_the_oldest_messages() -> None:
    sessions = store(max_chars=10)
    sessions.record_turn("s1", None, [user("aaaa")], "bbbb", interrupted=False)  # 8 characters
    sessions.record_turn("s1", None, [user("cc")], "dd", interrupted=False)  # 12: "aaaa" goes
    assert sessions.history("s1", None) == [assistant("bbbb"), user("cc"), assistant("dd")]
    assert sessions.counts()["chars"] == 8


def test_non_text_content_counts_by_its_json_size() -> None:
    sessions = store(max_chars=40)
    parts = [{"type": "text", "text": "x" * 30}]
    sessions.record_turn("s1", None, [{"role": "user", "content": parts}], "ok", interrupted=False)
    assert sessions.history("s1", None) == [assistant("ok")]  # the 50-odd characters of JSON did not fit


def test_idle_sessions_expire_after_the_ttl() -> None:
    clock = Clock()
    sessions = store(clock, idle_ttl=60)
    sessions.record_turn("old", None, [user("1")], "1", interrupted=False)
    clock.now += 30
    sessions.record_turn("young", None, [user("2")], "2", interrupted=False)
    clock.now += 29.9
    assert sessions.history("old", None) != []  # used again: its idle time starts over
    clock.now += 59.9
    assert sessions.counts()["sessions"] == 1
    assert "old" in sessions and "young" not in sessions
    clock.now += 0.2
    assert sessions.history("old", None) == []
    assert sessions.counts()["expired"] == 2


def test_the_least_recently_used_session_is_evicted_first() -> None:
    clock = Clock()
    sessions = store(clock, max_sessions=2)
    sessions.record_turn("a", None, [user("a")], "a", interrupted=False)
    clock.now += 1
    sessions.record_turn("b", None, [user("b")], "b", interrupted=False)
    clock.now += 1
    sessions.history("a", None)  # "a" is now the most recently used
    sessions.record_turn("c", None, [user("c")], "c", interrupted=False)
    assert "a" in sessions and "c" in sessions and "b" not in sessions
    assert sessions.counts()["evicted"] == 1


def test_another_owner_is_told_the_session_does_not_exist() -> None:
    sessions = store()
    sessions.record_turn("s1", "alice", [user("secret")], "ok", interrupted=False)
    with pytest.raises(SessionNotFound) as info:
        sessions.history("s1", "bob")
    assert info.value.status == 404 and "secret" not in info.value.message
    with pytest.raises(SessionNotFound):
        sessions.history("s1", None)
    assert sessions.delete("s1", "bob") is False
    sessions.record_turn("s1", "bob", [user("overwrite?")], "no", interrupted=False)  # dropped, not raised
    assert sessions.history("s1", "alice") == [user("secret"), assistant("ok")]
    assert sessions.delete("s1", "alice") is True
    assert sessions.delete("s1", "alice") is False


def test_invalid_session_ids_are_refused() -> None:
    sessions = store()
    for bad in ("", "x" * 129, "a b", "../etc", "é"):
        with pytest.raises(InvalidRequest) as info:
            sessions.history(bad, None)
        assert info.value.param == "session_id"
    sessions.history("0b6b0243-c3e7-4b4f-a362-89bac1723ad3", None)


def test_new_limits_apply_to_the_sessions_already_kept() -> None:
    clock = Clock()
    sessions = store(clock)
    for name in ("a", "b", "c"):
        clock.now += 1
        for n in range(5):
            sessions.record_turn(name, None, [user(f"{name}{n}")], "x", interrupted=False)
    sessions.configure(SessionSettings(max_sessions=2, max_messages=4))
    assert "a" not in sessions and len(sessions) == 2
    assert len(sessions.history("c", None)) == 4
    assert sessions.counts()["max_messages"] == 4
    clock.now += 10
    sessions.configure(SessionSettings(idle_ttl=5))
    assert len(sessions) == 0


def test_counts_for_status() -> None:
    sessions = store(max_sessions=10, max_messages=20, max_chars=1000, idle_ttl=60)
    sessions.record_turn("s1", None, [user("abc")], "de", interrupted=True)
    assert sessions.counts() == {
        "enabled": True,
        "sessions": 1,
        "messages": 2,
        "chars": 5,
        "max_sessions": 10,
        "max_messages": 20,
        "max_chars": 1000,
        "idle_ttl": 60.0,
        "evicted": 0,
        "expired": 0,
        "trimmed_messages": 0,
    }
