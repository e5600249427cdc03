"""Two router processes (one of them with two workers) on one table with `state.backend: redis`.

Everything over real sockets: a real redis-server, `router serve` processes, fake model servers that count
what reaches them. Requests go through fresh connections so the kernel spreads them over both workers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes import FakeOpenAI, wait_for
from tests.state.conftest import APP_KEY, LIMIT, LIMITED_KEY, OTHER_KEY, RedisServer, shared_table
from tests.support.router_server import ServeProcess

APP = {"Authorization": f"Bearer {APP_KEY}"}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


class Fleet:
    def __init__(self, redis: RedisServer, chat: FakeOpenAI, flaky: FakeOpenAI, probed: FakeOpenAI) -> None:
        self.redis, self.chat, self.flaky, self.probed = redis, chat, flaky, probed
        self.routers: list[ServeProcess] = []

    def post(self, router: ServeProcess, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
        with httpx.Client(timeout=10) as fresh:  # a new connection: either worker may take it
            return fresh.post(router.url + path, json=body, headers={**APP, **headers})


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    redis = RedisServer().start()
    with FakeOpenAI(["m"]) as chat, FakeOpenAI(["m"]) as flaky, FakeOpenAI(["m"]) as probed:
        path = Path(tmp_path_factory.mktemp("fleet")) / "routes.yaml"
        path.write_text(
            shared_table(
                redis.url,
                {
                    "chat": {"type": "openai", "base_url": chat.base_url},
                    "flaky": {
                        "type": "openai",
                        "base_url": flaky.base_url,
                        "circuit_breaker": {"failure_threshold": 2, "open_seconds": 60},
                    },
                    "probed": {"type": "openai", "base_url": probed.base_url},
                },
                [
                    {"path": "/chat/m", "model": "m", "upstream": "chat"},
                    {"path": "/chat/flaky", "model": "m", "upstream": "flaky", "max_retries": 0},
                    {
                        "path": "/chat/probed",
                        "model": "m",
                        "upstream": "probed",
                        "health_check": {
                            "enabled": True,
                            "interval": 0.2,
                            "recovery_interval": 0.2,
                            "failure_threshold": 1,
                            "recovery_threshold": 1,
                            "timeout": 1,
                            "jitter": 0,
                        },
                    },
                ],
                redis_timeout=2.0,  # Redis must count as up even while the machine is busy
            )
        )
        fleet = Fleet(redis, chat, flaky, probed)
        with ServeProcess(str(path)) as one, ServeProcess(str(path), "--workers", "2") as two:
            fleet.routers = [one, two]
            yield fleet
    redis.stop()


def test_a_session_continues_across_processes(fleet: Fleet) -> None:
    fleet.chat.reply_tokens = 2
    sizes = []
    for turn in range(8):
        router = fleet.routers[turn % 2]
        reply = fleet.post(router, "/chat/m", {"messages": [user(f"q{turn}")], "session_id": "across"})
        assert reply.status_code == 200, reply.text
        sizes.append(len(fleet.chat.last_request.json["messages"]))
    assert sizes == [1, 3, 5, 7, 9, 11, 13, 15]
    assert fleet.chat.last_request.json["messages"][-3:] == [
        user("q6"),
        {"role": "assistant", "content": "tok0 tok1"},
        user("q7"),
    ]


def test_a_streamed_turn_is_stored_before_the_stream_ends(fleet: Fleet) -> None:
    one, two = fleet.routers
    body = {"messages": [user("s1")], "session_id": "streamed", "stream": True}
    with httpx.Client(timeout=10) as fresh:
        with fresh.stream("POST", one.url + "/chat/m", json=body, headers=APP) as streamed:
            assert b"[DONE]" in streamed.read()
    reply = fleet.post(two, "/chat/m", {"messages": [user("s2")], "session_id": "streamed"})
    assert reply.status_code == 200
    assert [m["content"] for m in fleet.chat.last_request.json["messages"]][::2] == ["s1", "s2"]


def test_deleted_on_one_process_is_gone_on_the_other(fleet: Fleet) -> None:
    one, two = fleet.routers
    assert fleet.post(one, "/chat/m", {"messages": [user("keep")], "session_id": "gone"}).status_code == 200
    with httpx.Client() as fresh:
        assert fresh.delete(two.url + "/sessions/gone", headers=APP).status_code == 204
        assert fresh.delete(one.url + "/sessions/gone", headers=APP).status_code == 404
    assert fleet.post(two, "/chat/m", {"messages": [user("who")], "session_id": "gone"}).status_code == 200
    assert fleet.chat.last_request.json["messages"] == [user("who")]


def test_another_key_cannot_see_the_session(fleet: Fleet) -> None:
    one, two = fleet.routers
    assert fleet.post(one, "/chat/m", {"messages": [user("mine")], "session_id": "owned"}).status_code == 200
    other = {"Authorization": f"Bearer {OTHER_KEY}"}
    reply = fleet.post(two, "/chat/m", {"messages": [user("x")], "session_id": "owned"}, **other)
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "session_not_found"


def test_a_key_rate_limit_is_exact_across_processes(fleet: Fleet) -> None:
    codes: list[int] = []
    lock = threading.Lock()

    def send(router: ServeProcess) -> None:
        with httpx.Client(timeout=10) as fresh:
            reply = fresh.post(
                router.url + "/chat/m",
                json={"messages": [user("hi")]},
                headers={"Authorization": f"Bearer {LIMITED_KEY}"},
            )
        with lock:
            codes.append(reply.status_code)

    threads = [threading.Thread(target=send, args=(fleet.routers[i % 2],)) for i in range(3 * LIMIT)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    took = time.monotonic() - started
    refilled = int(took * LIMIT / 60)  # tokens that came back while the burst ran
    assert sorted(set(codes)) == [200, 429]
    assert LIMIT <= codes.count(200) <= LIMIT + refilled, (codes.count(200), took)


def test_a_breaker_opened_through_one_process_refuses_on_the_other(fleet: Fleet) -> None:
    one, two = fleet.routers
    fleet.flaky.set_behaviour("status", code=500)
    for _ in range(2):
        assert fleet.post(one, "/chat/flaky", {"messages": [user("x")]}).status_code == 502
    reply = fleet.post(one, "/chat/flaky", {"messages": [user("x")]})
    assert reply.status_code == 503  # open in the process that saw the failures
    before = fleet.flaky.chat_count
    time.sleep(0.1)  # the bound on adopting a transition
    for _ in range(6):  # fresh connections: both workers of the other process
        reply = fleet.post(two, "/chat/flaky", {"messages": [user("x")]})
        assert reply.status_code == 503, reply.text
        assert "Retry-After" in reply.headers
    assert fleet.flaky.chat_count == before  # refused without calling the upstream
    breaker = _replica(two, "/chat/flaky")["breaker"]
    assert breaker["state"] == "open" and breaker["retry_after"] > 50


def _replica(router: ServeProcess, path: str) -> dict[str, Any]:
    status = httpx.get(router.url + "/status").json()
    route = next(r for r in status["routes"] if r["path"] == path)
    return route["replicas"][0]  # type: ignore[no-any-return]


def test_health_transitions_are_seen_by_every_process(fleet: Fleet) -> None:
    one, two = fleet.routers

    def states() -> set[str]:
        return {_replica(router, "/chat/probed")["health"]["state"] for router in (one, two)}

    wait_for(lambda: states() == {"healthy"}, timeout=10)
    fleet.probed.probe_status = 500
    wait_for(lambda: "unhealthy" in states(), timeout=5)
    # Once one process shows it, the other shows it within the adoption bound (plus this poll's time).
    time.sleep(0.1)
    assert states() == {"unhealthy"}
    reply = fleet.post(two, "/chat/probed", {"messages": [user("x")]})
    assert reply.status_code == 503
    fleet.probed.probe_status = None
    wait_for(lambda: "healthy" in states(), timeout=5)
    time.sleep(0.1)
    assert states() == {"healthy"}


def _first_health_event(
    router: ServeProcess, found: dict[str, dict[str, Any]], ready: threading.Event
) -> None:
    import json

    with (
        httpx.Client(timeout=httpx.Timeout(8)) as client,
        client.stream("GET", router.url + "/events") as events,
    ):
        kind = ""
        for line in events.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
                if kind == "snapshot":
                    continue
            elif line.startswith("data: ") and kind == "snapshot":
                ready.set()
            elif line.startswith("data: ") and kind == "health":
                event = json.loads(line.removeprefix("data: "))
                if event["upstream"] == "probed" and event["new"] == "unhealthy":
                    found[router.url] = event
                    return


def test_events_tell_every_process_of_a_transition(fleet: Fleet) -> None:
    one, two = fleet.routers
    found: dict[str, dict[str, Any]] = {}
    ready = [threading.Event(), threading.Event()]
    listeners = [
        threading.Thread(target=_first_health_event, args=(router, found, flag), daemon=True)
        for router, flag in zip(fleet.routers, ready, strict=True)
    ]
    for listener in listeners:
        listener.start()
    assert all(flag.wait(5) for flag in ready)
    fleet.probed.probe_status = 500
    try:
        for listener in listeners:
            listener.join(timeout=8)
        assert set(found) == {one.url, two.url}, found
        reasons = [event["reason"] for event in found.values()]
        assert any(reason.startswith("shared by another router process") for reason in reasons)
    finally:
        fleet.probed.probe_status = None
        wait_for(lambda: _replica(one, "/chat/probed")["health"]["state"] == "healthy", timeout=5)


def test_probes_run_once_for_the_whole_fleet(fleet: Fleet) -> None:
    path = "/v1/models"
    before = fleet.probed.probe_count[path]
    time.sleep(2.0)
    probes = fleet.probed.probe_count[path] - before
    # One prober every 0.2 s makes about 10; three processes probing each would make about 30.
    assert 5 <= probes <= 15, probes


def test_two_simultaneous_turns_of_one_session_leave_a_consistent_history(fleet: Fleet) -> None:
    one, two = fleet.routers
    fleet.chat.chunk_delay = 0.05
    fleet.chat.reply_tokens = 4
    try:
        results: list[int] = []
        threads = [
            threading.Thread(
                target=lambda r=router, q=q: results.append(
                    fleet.post(r, "/chat/m", {"messages": [user(q)], "session_id": "race"}).status_code
                )
            )
            for router, q in ((one, "left"), (two, "right"))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        assert results == [200, 200]
    finally:
        fleet.chat.chunk_delay = 0
    assert fleet.post(one, "/chat/m", {"messages": [user("after")], "session_id": "race"}).status_code == 200
    history = fleet.chat.last_request.json["messages"]
    assert len(history) == 5 and history[-1] == user("after")
    # Each turn is its question followed by its answer, whole: never interleaved, none lost.
    assert history[0]["role"] == "user" and history[1]["role"] == "assistant"
    assert history[2]["role"] == "user" and history[3]["role"] == "assistant"
    assert {history[0]["content"], history[2]["content"]} == {"left", "right"}


def test_a_stranger_on_the_channel_changes_nothing(fleet: Fleet) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", fleet.redis.port), timeout=2) as conn:
        conn.sendall(b'PUBLISH router:transitions "not json"\r\nPUBLISH router:transitions "{}"\r\n')
        time.sleep(0.1)
        assert conn.recv(64).startswith(b":")
    time.sleep(0.2)
    for router in fleet.routers:
        assert httpx.get(router.url + "/status").json()["state"]["up"] is True
    assert fleet.post(fleet.routers[1], "/chat/m", {"messages": [user("still")]}).status_code == 200


def test_status_readyz_and_metrics_show_the_shared_state(fleet: Fleet) -> None:
    for router in fleet.routers:
        assert httpx.get(router.url + "/status").json()["state"]["up"] is True
        assert httpx.get(router.url + "/readyz").json()["state"]["backend"] == "redis"
        assert 'router_state_backend_up{backend="redis"} 1.0' in httpx.get(router.url + "/metrics").text


def test_session_ids_that_look_like_key_suffixes_stay_apart(fleet: Fleet) -> None:
    one, two = fleet.routers
    for session in ("col", "col:m", "col:m"):
        reply = fleet.post(one, "/chat/m", {"messages": [user(session)], "session_id": session})
        assert reply.status_code == 200, reply.text
    assert fleet.post(two, "/chat/m", {"messages": [user("again")], "session_id": "col"}).status_code == 200
    assert [m["content"] for m in fleet.chat.last_request.json["messages"]][::2] == ["col", "again"]
    assert httpx.get(one.url + "/status").json()["state"]["up"] is True
