"""Secrets never show: not in responses (errors included), /status, /debug, /metrics, logs or events.

The router is given every kind of secret it knows (an upstream API key, a credential header, a password
in a base_url, client and admin keys), then driven through successes and failures: bad keys, an upstream
that echoes its credentials in an error body, an upstream that is down, a reload that changes a credential
header (whose diff the reloader logs). Every byte it wrote anywhere is then searched for every secret.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes import FakeOllama, FakeOpenAI
from tests.support.router_server import RunningRouter, table

UPSTREAM_KEY = "sk-upstream-9f8e7d6c5b4a3210"
TOKEN = "tok-header-0a1b2c3d4e5f"
NEW_TOKEN = "tok-rotated-6a7b8c9d0e1f"
URL_PASSWORD = "pw-in-url-1357924680"
ALICE = "alice-client-key-24680135"
ADMIN = "admin-key-97531864200"
WRONG = "wrong-key-presented-by-client-0000"
SECRETS = (UPSTREAM_KEY, TOKEN, NEW_TOKEN, URL_PASSWORD, ALICE, ADMIN, WRONG)
MESSAGES = [{"role": "user", "content": "hello there"}]


def routes_yaml(ollama: FakeOllama, openai: FakeOpenAI, log: Path, token_var: str = "UPSTREAM_TOKEN") -> str:
    return table(
        upstreams={
            "local": {
                "type": "openai",
                "base_url": openai.base_url,
                "api_key": "${UPSTREAM_KEY}",
                "headers": {"X-Upstream-Token": "${" + token_var + "}"},
            },
            "ollama": {
                "type": "ollama",
                "base_url": ollama.base_url.replace("://", "://router:${URL_PASSWORD}@"),
            },
        },
        routes=[
            {"path": "/chat/local", "model": "smollm2", "upstream": "local"},
            {"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"},
        ],
        defaults={"max_retries": 0},
        auth={
            "api_keys": [{"name": "alice", "key": "${ALICE_KEY}"}],
            "admin_keys": [{"name": "ops", "key": "${ADMIN_KEY}"}],
        },
        logging={"file": str(log), "level": "debug"},
    )


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "UPSTREAM_KEY": UPSTREAM_KEY,
        "UPSTREAM_TOKEN": TOKEN,
        "NEW_TOKEN": NEW_TOKEN,
        "URL_PASSWORD": URL_PASSWORD,
        "ALICE_KEY": ALICE,
        "ADMIN_KEY": ADMIN,
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_no_secret_appears_in_any_output(
    fake_ollama: FakeOllama,
    tmp_path: Path,
    environment: None,
    root_logging: None,
    capfd: pytest.CaptureFixture[str],
) -> None:
    log = tmp_path / "router.log"
    file = tmp_path / "routes.yaml"
    with FakeOpenAI(["smollm2"], api_key=UPSTREAM_KEY) as fake_openai:
        file.write_text(routes_yaml(fake_ollama, fake_openai, log))
        outputs: list[str] = []

        def keep(response: httpx.Response) -> httpx.Response:
            outputs.append(f"{response.status_code} {dict(response.headers)} {response.text}")
            return response

        with (
            RunningRouter.from_file(str(file)) as router,
            httpx.Client(base_url=router.url, timeout=10) as http,
        ):
            router.runtime.logs.install_stdlib()  # as `router serve` does: stdlib logs in the same file
            alice, admin = {"Authorization": f"Bearer {ALICE}"}, {"X-API-Key": ADMIN}
            chat = {"messages": MESSAGES}

            assert keep(http.post("/chat/local", json=chat, headers=alice)).status_code == 200
            assert fake_openai.last_request.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
            assert fake_openai.last_request.headers["x-upstream-token"] == TOKEN
            assert keep(http.post("/chat/local", json=chat, headers={"X-API-Key": WRONG})).status_code == 401
            assert keep(http.get("/status", headers={"Authorization": f"Bearer {WRONG}"})).status_code == 401
            assert keep(http.get("/status", headers=alice)).status_code == 403

            # an upstream that quotes the credentials it was sent in its error message
            echo = {"error": {"message": f"rejected key {UPSTREAM_KEY} with token {TOKEN}", "type": "x"}}
            fake_openai.set_behaviour("status", code=500, body=echo)
            failed = keep(http.post("/chat/local", json=chat, headers=alice))
            assert failed.status_code == 502 and "rejected key [REDACTED]" in failed.text
            fake_openai.set_behaviour("status", code=401, body=echo)
            assert (
                keep(
                    http.post("/v1/chat/completions", json={**chat, "model": "local"}, headers=alice)
                ).status_code
                == 502
            )
            fake_openai.reset()

            # the same, after the stream started: the final error event is masked too
            fake_openai.set_behaviour("error_line", after=2, message=f"rejected key {UPSTREAM_KEY}")
            fake_openai.chunk_delay = 0.05
            with http.stream("POST", "/chat/local", json={**chat, "stream": True}, headers=alice) as stream:
                events = [line for line in stream.iter_lines() if line.startswith("data: ")]
            outputs.append("\n".join(events))
            assert "rejected key [REDACTED]" in events[-1]
            fake_openai.reset()
            fake_openai.chunk_delay = 0.0

            # an upstream that is down: the error names its URL, which carries a password
            fake_ollama.go_down()
            down = keep(http.post("/chat/qwen3", json=chat, headers=alice))
            assert down.status_code == 503 and "router:[REDACTED]@127.0.0.1" in down.text
            fake_ollama.come_up()

            # a reload that rotates a credential header: its diff names the old and new value
            file.write_text(routes_yaml(fake_ollama, fake_openai, log, token_var="NEW_TOKEN"))
            reloaded = keep(http.post("/admin/reload", headers=admin))
            assert reloaded.status_code == 200
            assert any("X-Upstream-Token" in change for change in reloaded.json()["changes"])
            assert keep(http.post("/chat/local", json=chat, headers=alice)).status_code == 200
            assert fake_openai.last_request.headers["x-upstream-token"] == NEW_TOKEN

            for path in ("/status", "/debug", "/metrics", "/v1/models", "/readyz"):
                assert keep(http.get(path, headers=alice if path == "/v1/models" else admin)).is_success
            status = http.get("/status", headers=admin).json()
            urls = [r["base_url"] for route in status["routes"] for r in route["replicas"]]
            assert any("router:[REDACTED]@" in url for url in urls)

    logged = log.read_text()
    assert '"event":"request"' in logged and "X-Upstream-Token" in logged  # the reload diff was logged
    captured = capfd.readouterr()
    everything = "\n".join([*outputs, logged, captured.out, captured.err])
    leaks = [everything[max(0, i - 200) : i + 40] for s in SECRETS if (i := everything.find(s)) >= 0]
    assert not leaks, "secrets in the router's output:\n" + "\n".join(leaks)
