"""Redis killed under a running router, then started again: what clients see, and that nothing hangs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.fakes import FakeOpenAI, wait_for
from tests.state.conftest import APP_KEY, LIMITED_KEY, RedisServer, shared_table
from tests.support.router_server import ServeProcess

APP = {"Authorization": f"Bearer {APP_KEY}"}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def test_redis_lost_and_back(tmp_path: Path, redis_server: RedisServer, fake_openai: FakeOpenAI) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(
        shared_table(
            redis_server.url,
            {"local": {"type": "openai", "base_url": fake_openai.base_url}},
            [{"path": "/chat/local", "model": "smollm2", "upstream": "local"}],
        )
    )
    served = ServeProcess(str(path), capture=True)
    with served as router, httpx.Client(base_url=router.url, timeout=10) as http:

        def chat(body: dict[str, Any], key: str = APP_KEY) -> httpx.Response:
            return http.post("/chat/local", json=body, headers={"Authorization": f"Bearer {key}"})

        assert chat({"messages": [user("one")], "session_id": "s"}).status_code == 200

        redis_server.stop()
        started = time.monotonic()
        first = chat({"messages": [user("two")], "session_id": "s"})
        assert first.status_code == 503, first.text
        assert time.monotonic() - started < 2.0  # bounded by state.timeout, not a hang
        assert first.json()["error"]["code"] == "state_unavailable"
        assert "Retry-After" in first.headers
        for _ in range(5):  # known lost: refused at once
            started = time.monotonic()
            assert chat({"messages": [user("two")], "session_id": "s"}).status_code == 503
            assert time.monotonic() - started < 0.5
        # Plain requests, keyed and rate-limited ones included, go on from local state.
        assert chat({"messages": [user("plain")]}).status_code == 200
        assert chat({"messages": [user("plain")]}, key=LIMITED_KEY).status_code == 200
        state = http.get("/status").json()["state"]
        assert state["backend"] == "redis" and state["up"] is False and state["last_error"]
        assert http.get("/readyz").json()["state"]["up"] is False
        assert 'router_state_backend_up{backend="redis"} 0.0' in http.get("/metrics").text

        redis_server.start()  # same port, empty: it kept nothing
        wait_for(lambda: http.get("/status").json()["state"]["up"], timeout=5)
        assert chat({"messages": [user("three")], "session_id": "s"}).status_code == 200
        assert chat({"messages": [user("four")], "session_id": "s"}).status_code == 200
        assert fake_openai.last_request.json["messages"][::2] == [user("three"), user("four")]
        assert 'router_state_backend_up{backend="redis"} 1.0' in http.get("/metrics").text
    log = router.output().decode()
    assert "Redis at redis://127.0.0.1" in log and "lost" in log and "answers again" in log


def test_a_router_starts_while_redis_is_down(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    redis = RedisServer()  # not started: nobody listens on its port
    path = tmp_path / "routes.yaml"
    path.write_text(
        shared_table(
            redis.url,
            {"local": {"type": "openai", "base_url": fake_openai.base_url}},
            [{"path": "/chat/local", "model": "smollm2", "upstream": "local"}],
        )
    )
    with ServeProcess(str(path)) as router, httpx.Client(base_url=router.url, headers=APP) as http:
        assert http.post("/chat/local", json={"messages": [user("x")]}).status_code == 200
        body = {"messages": [user("x")], "session_id": "s"}
        assert http.post("/chat/local", json=body).status_code == 503
        redis.start()
        try:
            wait_for(lambda: http.get("/status").json()["state"]["up"], timeout=5)
            assert http.post("/chat/local", json=body).status_code == 200
        finally:
            redis.stop()


def test_a_password_from_the_environment_is_used_and_never_shown(
    tmp_path: Path, fake_openai: FakeOpenAI, monkeypatch: Any
) -> None:
    password = "s3cret-redis-password"
    redis = RedisServer(password=password).start()
    monkeypatch.setenv("ROUTER_TEST_REDIS_PASSWORD", password)
    path = tmp_path / "routes.yaml"
    url = f"redis://:${{ROUTER_TEST_REDIS_PASSWORD}}@127.0.0.1:{redis.port}/0"
    path.write_text(
        shared_table(
            url,
            {"local": {"type": "openai", "base_url": fake_openai.base_url}},
            [{"path": "/chat/local", "model": "smollm2", "upstream": "local"}],
        )
    )
    try:
        with ServeProcess(str(path)) as router, httpx.Client(base_url=router.url, headers=APP) as http:
            body = {"messages": [user("x")], "session_id": "s"}
            assert http.post("/chat/local", json=body).status_code == 200
            status = http.get("/status")
            assert status.json()["state"]["up"] is True
            assert password not in status.text and "[REDACTED]" in status.json()["state"]["url"]
    finally:
        redis.stop()


def _pause_writes(redis: RedisServer, milliseconds: int) -> None:
    """Make Redis hold every write for a while: a Redis that is there but too slow."""
    import socket

    with socket.create_connection(("127.0.0.1", redis.port), timeout=2) as conn:
        conn.sendall(f"CLIENT PAUSE {milliseconds} WRITE\r\n".encode())
        assert conn.recv(16).startswith(b"+OK")


def test_a_turn_that_cannot_be_stored_is_not_passed_off_as_complete(
    tmp_path: Path, redis_server: RedisServer, fake_openai: FakeOpenAI
) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(
        shared_table(
            redis_server.url,
            {"local": {"type": "openai", "base_url": fake_openai.base_url}},
            [{"path": "/chat/local", "model": "smollm2", "upstream": "local"}],
        )
    )
    fake_openai.reply_tokens = 10
    fake_openai.chunk_delay = 0.05
    served = ServeProcess(str(path))
    with served as router, httpx.Client(base_url=router.url, headers=APP, timeout=10) as http:
        body = {"messages": [user("kept")], "session_id": "p"}
        assert http.post("/chat/local", json=body).status_code == 200
        streamed = b""
        body = {"messages": [user("lost")], "session_id": "p", "stream": True}
        with http.stream("POST", "/chat/local", json=body) as answer:
            assert answer.status_code == 200
            for chunk in answer.iter_bytes():
                if not streamed:
                    _pause_writes(redis_server, 1500)  # Redis slower than state.timeout from here on
                streamed += chunk
        assert b"[DONE]" not in streamed and b"state_unavailable" in streamed
        started = time.monotonic()
        reply = http.post("/chat/local", json={"messages": [user("lost too")], "session_id": "p"})
        assert reply.status_code == 503 and time.monotonic() - started < 1.0
        time.sleep(1.6)  # the pause ends; the monitor finds Redis again
        wait_for(lambda: http.get("/status").json()["state"]["up"], timeout=5)
        fake_openai.chunk_delay = 0
        reply = http.post("/chat/local", json={"messages": [user("next")], "session_id": "p"})
        assert reply.status_code == 200
        sent = [m["content"] for m in fake_openai.last_request.json["messages"] if m["role"] == "user"]
        assert sent == ["kept", "next"]  # the turns that failed are not in the history


def test_shutdown_never_hangs_on_redis(
    tmp_path: Path, redis_server: RedisServer, fake_openai: FakeOpenAI
) -> None:
    """Shut down right after start-up (here: the port is taken, so uvicorn gives up at once)."""
    import socket
    import subprocess
    import sys

    path = tmp_path / "routes.yaml"
    path.write_text(
        shared_table(
            redis_server.url,
            {"local": {"type": "openai", "base_url": fake_openai.base_url}},
            [{"path": "/chat/local", "model": "smollm2", "upstream": "local"}],
        )
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = subprocess.run(
            [sys.executable, "-m", "router", "serve", "--config", str(path), "--port", port],
            capture_output=True,
            timeout=20,
            check=False,
        )
    assert done.returncode != 0 and b"address already in use" in done.stdout + done.stderr
