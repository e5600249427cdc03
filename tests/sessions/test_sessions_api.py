"""Server-side sessions through the HTTP API, against a real router and fake model servers.

The headline case is "interrupt and continue" with the official openai SDK: the first answer is streamed
and abandoned half-way, the second request carries only the new question, and the model still receives
the whole conversation, the partial answer included.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import NotFoundError, OpenAI

from tests.fakes import FakeOllama, FakeOpenAI, wait_for
from tests.support.router_server import RunningRouter, table


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


@pytest.fixture
def router(fake_ollama: FakeOllama, start_router: Callable[..., RunningRouter]) -> RunningRouter:
    return start_router(
        table(
            upstreams={"ollama": {"type": "ollama", "base_url": fake_ollama.base_url}},
            routes=[{"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"}],
        )
    )


def client(router: RunningRouter, key: str = "unused") -> OpenAI:
    return OpenAI(base_url=router.url + "/v1", api_key=key, max_retries=0, timeout=10)


def stored(router: RunningRouter, session_id: str, owner: str | None = None) -> list[dict[str, Any]]:
    return router.sync(lambda: router.runtime.sessions.history(session_id, owner))


def test_continue_after_interrupt_with_the_openai_sdk(router: RunningRouter, fake_ollama: FakeOllama) -> None:
    fake_ollama.reply_tokens = 300
    fake_ollama.chunk_delay = 0.02
    session = str(uuid.uuid4())
    sdk = client(router)

    stream = sdk.chat.completions.create(
        model="qwen3",
        messages=[{"role": "user", "content": "Tell me a long story"}],
        stream=True,
        extra_body={"session_id": session},
    )
    seen = ""
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            seen += chunk.choices[0].delta.content
        if "tok5" in seen:
            break
    stream.close()  # the user pressed Stop: the connection closes mid-answer

    wait_for(lambda: fake_ollama.disconnects == 1)
    history = wait_for(lambda: stored(router, session))
    assert history[0] == user("Tell me a long story")
    partial = history[1]["content"]
    assert history[1]["role"] == "assistant" and partial.startswith(seen)
    assert "tok299" not in partial  # really cut off

    fake_ollama.reply_tokens = 3
    fake_ollama.chunk_delay = 0
    answer = sdk.chat.completions.create(
        model="qwen3",
        messages=[{"role": "user", "content": "Go on"}],  # only the new message
        extra_body={"session_id": session},
    )
    assert answer.choices[0].message.content == "tok0 tok1 tok2"
    assert fake_ollama.last_request.json["messages"] == [
        user("Tell me a long story"),
        assistant(partial),
        user("Go on"),
    ]
    assert stored(router, session) == [
        user("Tell me a long story"),
        assistant(partial),
        user("Go on"),
        assistant("tok0 tok1 tok2"),
    ]


def test_session_id_in_a_header_on_a_route_path(router: RunningRouter, fake_ollama: FakeOllama) -> None:
    fake_ollama.reply_tokens = 2
    with httpx.Client(base_url=router.url, headers={"X-Session-ID": "abc-123"}) as http:
        for question in ("one", "two"):
            reply = http.post("/chat/qwen3", json={"messages": [user(question)]})
            assert reply.status_code == 200
    assert fake_ollama.last_request.json["messages"] == [user("one"), assistant("tok0 tok1"), user("two")]


def test_requests_without_a_session_keep_nothing(router: RunningRouter) -> None:
    reply = httpx.post(router.url + "/chat/qwen3", json={"messages": [user("hi")]})
    assert reply.status_code == 200
    assert httpx.get(router.url + "/status").json()["sessions"]["sessions"] == 0


def test_a_failed_request_records_no_turn(router: RunningRouter, fake_ollama: FakeOllama) -> None:
    fake_ollama.set_behaviour("status", code=400)
    reply = httpx.post(router.url + "/chat/qwen3", json={"messages": [user("hi")], "session_id": "s1"})
    assert reply.status_code == 400
    assert stored(router, "s1") == []


def test_delete_a_session(router: RunningRouter, fake_ollama: FakeOllama) -> None:
    body = {"messages": [user("remember me")], "session_id": "s-del"}
    assert httpx.post(router.url + "/chat/qwen3", json=body).status_code == 200
    assert len(stored(router, "s-del")) == 2

    deleted = httpx.delete(router.url + "/sessions/s-del")
    assert deleted.status_code == 204 and deleted.content == b""
    again = httpx.delete(router.url + "/sessions/s-del")
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "session_not_found"
    assert again.json()["error"]["type"] == "not_found_error"

    body = {"messages": [user("who am I?")], "session_id": "s-del"}
    assert httpx.post(router.url + "/chat/qwen3", json=body).status_code == 200
    assert fake_ollama.last_request.json["messages"] == [user("who am I?")]  # a fresh start


def test_an_invalid_session_id_is_a_400(router: RunningRouter) -> None:
    body = {"messages": [user("hi")], "session_id": "not a valid id!"}
    reply = httpx.post(router.url + "/chat/qwen3", json=body)
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "session_id"


def test_status_shows_session_counts(router: RunningRouter) -> None:
    for name in ("a", "b"):
        body = {"messages": [user("hi")], "session_id": name}
        assert httpx.post(router.url + "/chat/qwen3", json=body).status_code == 200
    sessions = httpx.get(router.url + "/status").json()["sessions"]
    assert sessions["sessions"] == 2 and sessions["messages"] == 4
    assert (sessions["max_sessions"], sessions["max_messages"], sessions["idle_ttl"]) == (1000, 200, 1800)


def test_sessions_can_be_turned_off(
    fake_openai: FakeOpenAI, start_router: Callable[..., RunningRouter]
) -> None:
    router = start_router(
        table(
            upstreams={"local": {"type": "openai", "base_url": fake_openai.base_url}},
            routes=[{"path": "/chat/local", "model": "smollm2", "upstream": "local"}],
            sessions={"enabled": False},
        )
    )
    for question in ("one", "two"):
        body = {"messages": [user(question)], "session_id": "s1"}
        assert httpx.post(router.url + "/chat/local", json=body).status_code == 200
    assert fake_openai.last_request.json["messages"] == [user("two")]
    assert "session_id" not in fake_openai.last_request.json  # never sent upstream
    assert httpx.get(router.url + "/status").json()["sessions"]["enabled"] is False


def test_a_session_belongs_to_the_key_that_created_it(
    fake_ollama: FakeOllama, start_router: Callable[..., RunningRouter]
) -> None:
    router = start_router(
        table(
            upstreams={"ollama": {"type": "ollama", "base_url": fake_ollama.base_url}},
            routes=[{"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"}],
            auth={
                "api_keys": [
                    {"name": "alice", "key": "alice-key-0123456789abcdef"},
                    {"name": "bob", "key": "bob-key-0123456789abcdef"},
                ]
            },
        )
    )
    alice, bob = client(router, "alice-key-0123456789abcdef"), client(router, "bob-key-0123456789abcdef")
    alice.chat.completions.create(model="qwen3", messages=[user("secret")], extra_body={"session_id": "s1"})

    with pytest.raises(NotFoundError) as info:
        bob.chat.completions.create(model="qwen3", messages=[user("peek")], extra_body={"session_id": "s1"})
    assert "secret" not in str(info.value)
    assert fake_ollama.chat_count == 1  # bob's request never reached the model

    as_bob = {"Authorization": "Bearer bob-key-0123456789abcdef"}
    as_alice = {"Authorization": "Bearer alice-key-0123456789abcdef"}
    assert httpx.delete(router.url + "/sessions/s1", headers=as_bob).status_code == 404
    assert httpx.delete(router.url + "/sessions/nope", headers=as_bob).status_code == 404  # the same answer
    assert httpx.delete(router.url + "/sessions/s1").status_code == 401
    alice.chat.completions.create(model="qwen3", messages=[user("more")], extra_body={"session_id": "s1"})
    sent = [m["content"] for m in fake_ollama.last_request.json["messages"]]
    assert sent == ["secret", "tok0 tok1 tok2 tok3 tok4", "more"]
    assert httpx.delete(router.url + "/sessions/s1", headers=as_alice).status_code == 204


def test_a_reload_keeps_the_sessions_and_applies_new_limits(fake_ollama: FakeOllama, tmp_path: Path) -> None:
    def write(sessions: dict[str, Any]) -> None:
        text = table(
            upstreams={"ollama": {"type": "ollama", "base_url": fake_ollama.base_url}},
            routes=[{"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"}],
            sessions=sessions,
        )
        path.write_text(text)

    path = tmp_path / "routes.yaml"
    write({"max_messages": 10})
    router = RunningRouter.from_file(str(path)).start()
    try:
        store_before = router.runtime.sessions
        for question in ("one", "two", "three"):
            body = {"messages": [user(question)], "session_id": "kept"}
            assert httpx.post(router.url + "/chat/qwen3", json=body).status_code == 200
        assert len(stored(router, "kept")) == 6

        write({"max_messages": 4})
        result = httpx.post(router.url + "/admin/reload")
        assert result.status_code == 200, result.text
        assert router.runtime.sessions is store_before
        assert router.runtime.sessions.settings.max_messages == 4
        answer = "tok0 tok1 tok2 tok3 tok4"
        assert [m["content"] for m in stored(router, "kept")] == ["two", answer, "three", answer]
    finally:
        router.stop()


def test_padding_outside_content_is_counted_over_http(
    fake_ollama: FakeOllama, start_router: Callable[..., RunningRouter]
) -> None:
    router = start_router(
        table(
            upstreams={"ollama": {"type": "ollama", "base_url": fake_ollama.base_url}},
            routes=[{"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"}],
            sessions={"max_chars": 20_000},
        )
    )
    fake_ollama.reply_tokens = 2
    padded = {**user("hi"), "name": "n" * 300_000, "padding": ["p" * 1000] * 200}
    for message in (user("first"), padded):
        body = {"messages": [message], "session_id": "padded"}
        assert httpx.post(router.url + "/chat/qwen3", json=body, timeout=10).status_code == 200
    status = httpx.get(router.url + "/status").json()["sessions"]
    assert 0 < status["chars"] <= 20_000  # it used to report the 2 characters of "hi" and keep 500 KB
    assert status["messages"] == 1 and status["trimmed_messages"] == 3

    body = {"messages": [user("next")], "session_id": "padded"}
    assert httpx.post(router.url + "/chat/qwen3", json=body, timeout=10).status_code == 200
    assert fake_ollama.last_request.json["messages"] == [assistant("tok0 tok1"), user("next")]


def test_one_key_cannot_evict_another_keys_sessions(
    fake_ollama: FakeOllama, start_router: Callable[..., RunningRouter]
) -> None:
    router = start_router(
        table(
            upstreams={"ollama": {"type": "ollama", "base_url": fake_ollama.base_url}},
            routes=[{"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"}],
            auth={
                "api_keys": [
                    {"name": "alice", "key": "alice-key-0123456789abcdef"},
                    {"name": "bob", "key": "bob-key-0123456789abcdef"},
                ]
            },
            sessions={"max_sessions": 10, "max_sessions_per_key": 3},
        )
    )
    fake_ollama.reply_tokens = 1
    alice, bob = client(router, "alice-key-0123456789abcdef"), client(router, "bob-key-0123456789abcdef")
    bob.chat.completions.create(model="qwen3", messages=[user("remember")], extra_body={"session_id": "bob"})
    for n in range(25):  # far more than the whole store holds
        alice.chat.completions.create(model="qwen3", messages=[user("x")], extra_body={"session_id": f"a{n}"})

    status = router.sync(router.runtime.sessions.counts)  # /status needs an admin key here
    assert (status["sessions"], status["evicted"], status["max_sessions_per_key"]) == (4, 22, 3)
    bob.chat.completions.create(
        model="qwen3", messages=[user("still there?")], extra_body={"session_id": "bob"}
    )
    sent = [m["content"] for m in fake_ollama.last_request.json["messages"]]
    assert sent == ["remember", "tok0", "still there?"]
    alice.chat.completions.create(model="qwen3", messages=[user("y")], extra_body={"session_id": "a0"})
    assert [m["content"] for m in fake_ollama.last_request.json["messages"]] == ["y"]  # her oldest went
