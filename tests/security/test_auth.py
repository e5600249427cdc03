"""Client keys on the model routes, admin keys on /admin and the status endpoints, per-key rate limits."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.fakes import FakeOllama, FakeOpenAI
from tests.support.router_server import RunningRouter, table

Start = Callable[..., RunningRouter]
MESSAGES = [{"role": "user", "content": "hello there"}]
ALICE = "alice-key-0123456789abcdef"  # every route, from the environment
BOB = "bob-key-0123456789abcdef"  # /chat/local only, configured by digest
CAROL = "carol-key-0123456789abcdef"  # rate limited
ADMIN = "admin-key-0123456789abcdef"
ENV = {"ALICE_KEY": ALICE, "CAROL_KEY": CAROL, "ADMIN_KEY": ADMIN}


def keyed_table(ollama: FakeOllama, openai: FakeOpenAI, **auth: Any) -> str:
    bob_digest = hashlib.sha256(BOB.encode()).hexdigest()
    return table(
        upstreams={
            "ollama": {"type": "ollama", "base_url": ollama.base_url},
            "local": {"type": "openai", "base_url": openai.base_url},
        },
        routes=[
            {"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"},
            {"path": "/chat/local", "model": "smollm2", "upstream": "local"},
        ],
        auth={
            "api_keys": [
                {"name": "alice", "key": "${ALICE_KEY}"},
                {"name": "bob", "key": f"sha256:{bob_digest}", "routes": ["/chat/local"]},
                {"name": "carol", "key": "${CAROL_KEY}", "rate_limit_per_minute": 3},
            ],
            "admin_keys": [{"name": "ops", "key": "${ADMIN_KEY}"}],
            **auth,
        },
    )


@pytest.fixture
def router(fake_ollama: FakeOllama, fake_openai: FakeOpenAI, start_router: Start) -> RunningRouter:
    return start_router(keyed_table(fake_ollama, fake_openai), env=ENV)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def chat(router: RunningRouter, path: str, headers: dict[str, str], **body: Any) -> httpx.Response:
    return httpx.post(router.url + path, json={"messages": MESSAGES, **body}, headers=headers, timeout=10)


def error_of(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("wrong-key-0123456789abcdef"),
        {"Authorization": f"Basic {ALICE}"},
        {"Authorization": "Bearer"},
    ],
    ids=["none", "wrong", "other-scheme", "empty-bearer"],
)
def test_model_routes_need_a_valid_key(router: RunningRouter, headers: dict[str, str]) -> None:
    for path, body in (("/chat/qwen3", {}), ("/v1/chat/completions", {"model": "qwen3"})):
        response = chat(router, path, headers, **body)
        assert response.status_code == 401
        assert error_of(response)["type"] == "authentication_error"
        assert response.headers["www-authenticate"].startswith("Bearer")
    models = httpx.get(router.url + "/v1/models", headers=headers, timeout=5)
    assert models.status_code == 401


def test_a_missing_key_is_refused_before_the_body_is_looked_at(router: RunningRouter) -> None:
    response = httpx.post(router.url + "/v1/chat/completions", content=b"not json", timeout=5)
    assert response.status_code == 401
    response = chat(router, "/v1/chat/completions", {}, model="no-such-model")
    assert response.status_code == 401, "unknown models are not revealed to strangers"


@pytest.mark.parametrize("send", [bearer, lambda key: {"X-API-Key": key}], ids=["bearer", "x-api-key"])
def test_valid_keys_by_either_header(router: RunningRouter, send: Callable[[str], dict[str, str]]) -> None:
    assert chat(router, "/chat/qwen3", send(ALICE)).status_code == 200
    assert chat(router, "/v1/chat/completions", send(ALICE), model="local").status_code == 200
    assert chat(router, "/chat/local", send(BOB)).status_code == 200, "a key given as its sha256 digest"
    assert httpx.get(router.url + "/v1/models", headers=send(ALICE), timeout=5).status_code == 200


def test_a_key_limited_to_some_routes_gets_403_elsewhere(router: RunningRouter) -> None:
    for path, body in (("/chat/qwen3", {}), ("/v1/chat/completions", {"model": "qwen3"})):
        response = chat(router, path, bearer(BOB), **body)
        assert response.status_code == 403
        error = error_of(response)
        assert error["type"] == "permission_error"
        assert "bob" in error["message"] and "/chat/qwen3" in error["message"]
    listed = httpx.get(router.url + "/v1/models", headers=bearer(BOB), timeout=5).json()
    assert [m["id"] for m in listed["data"]] == ["local"]
    everything = httpx.get(router.url + "/v1/models", headers=bearer(ALICE), timeout=5).json()
    assert [m["id"] for m in everything["data"]] == ["qwen3", "local"]


def test_rate_limit_per_key_is_429_with_retry_after(router: RunningRouter) -> None:
    for _ in range(3):
        assert chat(router, "/chat/qwen3", bearer(CAROL)).status_code == 200
    response = chat(router, "/chat/qwen3", bearer(CAROL))
    assert response.status_code == 429
    error = error_of(response)
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert 1 <= int(response.headers["retry-after"]) <= 20  # 3 a minute: one token every 20 s
    assert chat(router, "/chat/qwen3", bearer(ALICE)).status_code == 200, "other keys are not affected"


ADMIN_ONLY = [("GET", "/status"), ("GET", "/debug"), ("GET", "/metrics"), ("POST", "/admin/reload")]


@pytest.mark.parametrize(("method", "path"), ADMIN_ONLY)
def test_admin_and_status_endpoints_need_an_admin_key(router: RunningRouter, method: str, path: str) -> None:
    def call(headers: dict[str, str]) -> httpx.Response:
        return httpx.request(method, router.url + path, headers=headers, timeout=5)

    assert call({}).status_code == 401
    assert error_of(call(bearer("nobody-0123456789abcdef")))["type"] == "authentication_error"
    client_key = call(bearer(ALICE))
    assert client_key.status_code == 403
    assert "admin key" in error_of(client_key)["message"]
    admitted = call({"X-API-Key": ADMIN})
    assert admitted.status_code == (409 if path == "/admin/reload" else 200)  # 409: no file to reload


def test_events_need_an_admin_key(router: RunningRouter) -> None:
    assert httpx.get(router.url + "/events", timeout=5).status_code == 401
    with httpx.stream("GET", router.url + "/events", headers=bearer(ADMIN), timeout=5) as response:
        assert response.status_code == 200
        assert next(response.iter_lines()).startswith("event: snapshot")


def test_admin_keys_do_not_open_model_routes(router: RunningRouter) -> None:
    assert chat(router, "/chat/qwen3", bearer(ADMIN)).status_code == 401


def test_public_status_opens_status_but_not_admin(
    fake_ollama: FakeOllama, fake_openai: FakeOpenAI, start_router: Start
) -> None:
    router = start_router(keyed_table(fake_ollama, fake_openai, public_status=True), env=ENV)
    for path in ("/status", "/debug", "/metrics"):
        assert httpx.get(router.url + path, timeout=5).status_code == 200
    assert httpx.post(router.url + "/admin/reload", timeout=5).status_code == 401


def test_probes_stay_open_and_the_schema_is_for_admins(router: RunningRouter) -> None:
    for path in ("/healthz", "/readyz"):
        assert httpx.get(router.url + path, timeout=5).status_code == 200
    assert httpx.get(router.url + "/schema/openapi.json", timeout=5).status_code == 401
    assert httpx.get(router.url + "/schema/openapi.json", headers=bearer(ADMIN), timeout=5).status_code == 200


def test_without_keys_everything_is_open(both_upstreams_router: RunningRouter) -> None:
    router = both_upstreams_router
    assert chat(router, "/chat/qwen3", {}).status_code == 200
    assert chat(router, "/chat/qwen3", bearer("anything-at-all")).status_code == 200
    for path in ("/status", "/metrics", "/v1/models"):
        assert httpx.get(router.url + path, timeout=5).status_code == 200


def test_admin_keys_alone_guard_admin_but_leave_routes_open(
    fake_ollama: FakeOllama, start_router: Start
) -> None:
    text = table(
        upstreams={"ollama": {"type": "ollama", "base_url": fake_ollama.base_url}},
        routes=[{"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"}],
        auth={"admin_keys": [{"name": "ops", "key": "${ADMIN_KEY}"}]},
    )
    router = start_router(text, env=ENV)
    assert chat(router, "/chat/qwen3", {}).status_code == 200
    assert httpx.get(router.url + "/status", timeout=5).status_code == 401
    assert httpx.get(router.url + "/status", headers=bearer(ADMIN), timeout=5).status_code == 200


def test_client_keys_without_admin_keys_disable_admin(fake_ollama: FakeOllama, start_router: Start) -> None:
    text = table(
        upstreams={"ollama": {"type": "ollama", "base_url": fake_ollama.base_url}},
        routes=[{"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"}],
        auth={"api_keys": [{"name": "alice", "key": "${ALICE_KEY}"}]},
    )
    router = start_router(text, env=ENV)
    response = httpx.post(router.url + "/admin/reload", headers=bearer("x" * 20), timeout=5)
    assert response.status_code == 403
    assert "auth.admin_keys" in error_of(response)["message"]


def test_sessions_need_a_client_key(router: RunningRouter) -> None:
    assert httpx.delete(router.url + "/sessions/abc", timeout=5).status_code == 401
    assert httpx.delete(router.url + "/sessions/abc", headers=bearer(ADMIN), timeout=5).status_code == 401
    assert httpx.delete(router.url + "/sessions/abc", headers=bearer(ALICE), timeout=5).status_code == 404
    session = {"session_id": "s-1"}
    assert chat(router, "/chat/qwen3", {}, **session).status_code == 401
    assert chat(router, "/chat/qwen3", bearer(ALICE), **session).status_code == 200
