"""The session store alone: bounds, idle expiry (with a hand-driven clock), eviction order, owners."""

from __future__ import annotations

from typing import Any

import pytest

from router.config.models import SessionSettings
from router.errors import InvalidRequest
from router.sessions import (
    SessionNotFound,
    SessionStore,
    enforce_limits,
    make_room,
    message_size,
    messages_to_drop,
)


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
    kept = [assistant("bbbb"), user("cc"), assistant("dd")]
    sessions = store(max_chars=sum(map(message_size, kept)))
    sessions.record_turn("s1", None, [user("aaaa")], "bbbb", interrupted=False)
    sessions.record_turn("s1", None, [user("cc")], "dd", interrupted=False)  # one too many: "aaaa" goes
    assert sessions.history("s1", None) == kept
    assert sessions.counts()["chars"] == sum(map(message_size, kept))


def test_a_message_counts_whole_as_its_json() -> None:
    assert message_size(user("abc")) == len('{"role":"user","content":"abc"}')
    padded = {**user("hi"), "name": "n" * 1000, "tool_calls": [{"id": "x" * 500}], "unknown": ["y" * 700]}
    assert message_size(padded) > 2200


@pytest.mark.parametrize(
    "padding",
    [
        {"name": "n" * 100_000},
        {"tool_calls": [{"function": {"name": "f", "arguments": "a" * 100_000}}]},
        {"not_a_field_anyone_knows": ["z" * 1000] * 100},
    ],
    ids=["name", "tool_calls", "unknown field"],
)
def test_padding_in_any_field_counts_against_max_chars(padding: dict[str, Any]) -> None:
    sessions = store(max_chars=5000)
    sessions.record_turn("s1", None, [user("before")], "ok", interrupted=False)
    sessions.record_turn("s1", None, [{**user("hi"), **padding}], "answer", interrupted=False)
    history = sessions.history("s1", None)
    # The padded message is larger than the bound on its own: it is not kept, nor is anything older.
    assert history == [assistant("answer")]
    counts = sessions.counts()
    assert counts["chars"] == message_size(assistant("answer")) <= 5000
    assert counts["trimmed_messages"] == 3


def test_the_reported_size_is_the_stored_size() -> None:
    sessions = store(max_chars=10_000)
    messages = [
        {**user("hi"), "name": "me" * 100},
        {"role": "user", "content": [{"type": "text", "text": "t"}]},
    ]
    sessions.record_turn("s1", None, messages, "yes", interrupted=False)
    stored = sessions.history("s1", None)
    assert stored == [*messages, assistant("yes")]
    assert sessions.counts()["chars"] == sum(map(message_size, stored))


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
        "chars": message_size(user("abc")) + message_size(assistant("de")),
        "max_sessions": 10,
        "max_sessions_per_key": 100,
        "max_messages": 20,
        "max_chars": 1000,
        "idle_ttl": 60.0,
        "evicted": 0,
        "expired": 0,
        "trimmed_messages": 0,
    }


# ---- sessions per key -------------------------------------------------------------------------------


def test_one_key_creating_sessions_evicts_only_its_own() -> None:
    clock = Clock()
    sessions = store(clock, max_sessions=1000, max_sessions_per_key=3)
    sessions.record_turn("bob-1", "bob", [user("mine")], "ok", interrupted=False)
    for n in range(50):
        clock.now += 1
        sessions.record_turn(f"alice-{n}", "alice", [user(f"q{n}")], "a", interrupted=False)
    assert sessions.history("bob-1", "bob") == [user("mine"), assistant("ok")]
    assert [f"alice-{n}" in sessions for n in (46, 47, 48, 49)] == [False, True, True, True]
    assert len(sessions) == 4 and sessions.counts()["evicted"] == 47


def test_a_key_keeps_its_most_recently_used_sessions() -> None:
    clock = Clock()
    sessions = store(clock, max_sessions_per_key=2)
    for name in ("a", "b"):
        clock.now += 1
        sessions.record_turn(name, "alice", [user(name)], "x", interrupted=False)
    sessions.history("a", "alice")  # "a" is now alice's most recently used
    sessions.record_turn("c", "alice", [user("c")], "x", interrupted=False)
    assert "a" in sessions and "c" in sessions and "b" not in sessions


def test_a_full_store_takes_from_the_key_holding_the_most() -> None:
    sessions = store(max_sessions=6, max_sessions_per_key=5)
    for n in range(4):
        sessions.record_turn(f"alice-{n}", "alice", [user("a")], "a", interrupted=False)
    for n in range(2):
        sessions.record_turn(f"bob-{n}", "bob", [user("b")], "b", interrupted=False)
    sessions.record_turn("bob-2", "bob", [user("b")], "b", interrupted=False)  # full: alice holds the most
    assert "alice-0" not in sessions and all(f"bob-{n}" in sessions for n in range(3))
    sessions.record_turn("bob-3", "bob", [user("b")], "b", interrupted=False)  # a tie: bob pays himself
    assert "bob-0" not in sessions and len(sessions) == 6


def test_without_keys_the_per_key_bound_holds_for_everyone_together() -> None:
    sessions = store(max_sessions=1000, max_sessions_per_key=2)
    for name in ("a", "b", "c"):
        sessions.record_turn(name, None, [user(name)], "x", interrupted=False)
    assert len(sessions) == 2 and "a" not in sessions


def test_lower_per_key_limits_apply_on_reload() -> None:
    clock = Clock()
    sessions = store(clock)
    for owner in ("alice", "bob"):
        for n in range(4):
            clock.now += 1
            sessions.record_turn(f"{owner}-{n}", owner, [user("q")], "a", interrupted=False)
    sessions.configure(SessionSettings(max_sessions_per_key=2))
    assert sorted(id for id in ("alice-2", "alice-3", "bob-2", "bob-3") if id in sessions) == [
        "alice-2",
        "alice-3",
        "bob-2",
        "bob-3",
    ]
    assert len(sessions) == 4
    sessions.history("alice-2", "alice")  # now alice's most recently used
    sessions.configure(SessionSettings(max_sessions=3, max_sessions_per_key=2))
    assert len(sessions) == 3 and "alice-2" in sessions and "bob-3" in sessions


# ---- the bound functions, as any store applies them ----------------------------------------------------


def test_messages_to_drop() -> None:
    limits = SessionSettings(max_messages=3, max_chars=100)
    assert messages_to_drop([10, 10, 10], 3, 30, limits) == 0
    assert messages_to_drop([10, 10, 10, 10], 4, 40, limits) == 1  # too many
    assert messages_to_drop([60, 30, 20], 3, 110, limits) == 1  # too large: the oldest goes
    assert messages_to_drop([10, 500], 2, 510, limits) == 2  # a message larger than the bound: all go
    assert messages_to_drop([], 0, 0, limits) == 0


def test_make_room() -> None:
    limits = SessionSettings(max_sessions=10, max_sessions_per_key=3)
    assert make_room("a", {}, limits) == []
    assert make_room("a", {"a": 2, "b": 3}, limits) == []
    assert make_room("a", {"a": 3, "b": 3}, limits) == ["a"]  # its own, never b's
    assert make_room("a", {"a": 5, "b": 3}, limits) == ["a", "a", "a"]  # after the limit was lowered
    assert make_room("c", {"a": 3, "b": 3, "c": 1, None: 3}, limits) == ["a"]  # full: the largest, first seen
    assert make_room("c", {"a": 2, "b": 3, "c": 3, None: 2}, limits) == ["c"]  # c is at its own limit
    roomy = SessionSettings(max_sessions=10, max_sessions_per_key=5)
    assert make_room(None, {"a": 3, "b": 3, None: 3, "c": 1}, roomy) == [None]  # full, a tie: the newcomer


def test_enforce_limits() -> None:
    limits = SessionSettings(max_sessions=4, max_sessions_per_key=3)
    assert enforce_limits({"a": 3, "b": 1}, limits) == []
    assert enforce_limits({"a": 5, "b": 1}, limits) == ["a", "a"]
    assert sorted(map(str, enforce_limits({"a": 3, "b": 3}, limits))) == ["a", "b"]
