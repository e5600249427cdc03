"""Claude Code (`claude -p`, npm package @anthropic-ai/claude-code) answers through `/v1/messages`.

Claude Code is pointed at the router with `ANTHROPIC_BASE_URL`; `ANTHROPIC_MODEL` (and the small/fast
model it uses for side tasks) is a route alias; the router's client key goes in `ANTHROPIC_API_KEY` (sent
as `x-api-key`) or `ANTHROPIC_AUTH_TOKEN` (sent as `Authorization: Bearer`), which `-p` (print mode) uses
without a login. Its telemetry, error reporting, update checks and other non-essential traffic are turned
off, and every non-loopback connection goes to a trap (tests/dialects/agents.py) that must stay empty.
The route's upstream is the fake OpenAI-compatible server answering in plain text, which ends Claude
Code's turn; the test checks what Claude Code printed and what the router sent upstream (Anthropic's
request translated to chat: Claude Code's system prompt, its tools, the user's words, a stream).

Marked `agents`; the binary comes from deploy/local/setup.sh (pinned there). Verified with 2.1.332.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from tests.dialects.agents import ProxyTrap, agent_binary, base_env
from tests.fakes import FakeOpenAI
from tests.support.router_server import RunningRouter, table

pytestmark = pytest.mark.agents

ANSWER = "Hello from the model behind the router."
ALIAS = "claude-local"
KEY = "sk-router-" + "c" * 24


def claude_env(router_url: str, home: Path, trap: ProxyTrap, credentials: dict[str, str]) -> dict[str, str]:
    """Claude Code's environment for a router at `router_url` (documented in docs/dialects/agents.md)."""
    return {
        **base_env(home),
        **trap.env(),
        **credentials,
        "ANTHROPIC_BASE_URL": router_url,
        "ANTHROPIC_MODEL": ALIAS,
        "ANTHROPIC_SMALL_FAST_MODEL": ALIAS,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": ALIAS,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": ALIAS,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": ALIAS,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS": "1",
    }


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(["smollm2"]) as fake:
        fake.reply_text = lambda body: ANSWER
        yield fake


@pytest.fixture
def router(upstream: FakeOpenAI, start_router: Any) -> RunningRouter:
    """The router with one keyed route on the fake upstream, named by the alias Claude Code asks for."""
    text = table(
        upstreams={"local": {"type": "openai", "base_url": upstream.base_url}},
        routes=[{"path": "/chat/local", "model": "smollm2", "upstream": "local", "aliases": [ALIAS]}],
        auth={"api_keys": [{"name": "claude", "key": "${CLAUDE_KEY}"}]},
    )
    return cast(RunningRouter, start_router(text, env={"CLAUDE_KEY": KEY}))


def run_claude(router: RunningRouter, tmp_path: Path, credentials: dict[str, str]) -> tuple[Any, list[str]]:
    """`claude -p "Say hello"` against the router: its finished process and the trap's attempts."""
    claude = agent_binary("claude", "CLAUDE_BIN")
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    with ProxyTrap() as trap:
        done = subprocess.run(
            [claude, "-p", "Say hello"],
            cwd=work,
            env=claude_env(router.url, home, trap, credentials),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
    return done, trap.attempts


@pytest.mark.parametrize("variable", ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"])
def test_claude_code_prints_the_answer_of_the_routed_model(
    upstream: FakeOpenAI, router: RunningRouter, tmp_path: Path, variable: str
) -> None:
    done, attempts = run_claude(router, tmp_path, {variable: KEY})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert ANSWER in done.stdout
    assert attempts == [], f"Claude Code tried to reach beyond loopback: {attempts}"
    # the main turn: Anthropic's request as chat, streamed, with Claude Code's tools and system prompt
    turns = [r.json for r in upstream.requests if any(m["role"] == "user" for m in r.json["messages"])]
    main = [body for body in turns if body.get("tools")]
    assert main, [body["messages"][-1] for body in turns]
    body = main[-1]
    assert body["model"] == "smollm2" and body["stream"] is True
    assert body["messages"][0]["role"] == "system" and "Claude" in body["messages"][0]["content"]
    users = [m for m in body["messages"] if m["role"] == "user"]
    assert any("Say hello" in str(m["content"]) for m in users)
    names = {tool["function"]["name"] for tool in body["tools"]}
    assert "Bash" in names, names


def test_claude_code_with_a_wrong_key_fails_with_the_router_s_message(
    upstream: FakeOpenAI, router: RunningRouter, tmp_path: Path
) -> None:
    # Claude Code retries a 401 with backoff for minutes unless told not to retry
    wrong = {"ANTHROPIC_API_KEY": "sk-wrong-" + "d" * 24, "CLAUDE_CODE_MAX_RETRIES": "0"}
    done, attempts = run_claude(router, tmp_path, wrong)
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert "401" in said and "the API key is not valid for this router" in said, said[-2000:]
    assert upstream.requests == [] and attempts == []
