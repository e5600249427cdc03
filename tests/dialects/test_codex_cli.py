"""Codex CLI (`codex exec`, npm package @openai/codex) completes a task through `/v1/responses`.

Codex is configured with a custom provider whose `wire_api` is `responses` and whose `base_url` is the
router's `/v1`; the route's upstream is a fake OpenAI-compatible server that first asks for Codex's own
`exec_command` tool, then answers in text. So the whole agent loop crosses the router: a streamed
response with a function call, Codex running the command, the `function_call_output` sent back, and the
final answer Codex prints.

Every non-loopback connection goes to a trap (tests/dialects/agents.py) that must stay empty. The binary
comes from deploy/local/setup.sh (pinned there; `CODEX_BIN` overrides it); marked `agents`. Verified with
@openai/codex 0.169.0 and 0.171.0.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dialects.agents import ProxyTrap, agent_binary, base_env
from tests.fakes import FakeOpenAI
from tests.support.router_server import RunningRouter, table

pytestmark = pytest.mark.agents

ANSWER = "The command printed codex-tool-ok."


def _answered(body: dict[str, Any]) -> bool:
    return bool(body["messages"][-1]["role"] == "tool")


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(["smollm2"]) as fake:
        fake.reply_text = lambda body: ANSWER if _answered(body) else ""
        fake.reply_tool_calls = lambda body: (
            None
            if _answered(body)
            else [{"name": "exec_command", "arguments": {"cmd": "echo codex-tool-ok"}}]
        )
        yield fake


def test_codex_exec_runs_a_tool_and_answers(upstream: FakeOpenAI, start_router: Any, tmp_path: Path) -> None:
    codex = agent_binary("codex", "CODEX_BIN")
    router: RunningRouter = start_router(
        table(
            upstreams={"local": {"type": "openai", "base_url": upstream.base_url}},
            routes=[{"path": "/chat/local", "model": "smollm2", "upstream": "local"}],
        )
    )
    home, work = tmp_path / "codex-home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (home / "config.toml").write_text(
        'model = "local"\n'
        "check_for_update_on_startup = false\n"
        'model_provider = "router"\n'
        "[model_providers.router]\n"
        'name = "router"\n'
        f'base_url = "{router.url}/v1"\n'
        'wire_api = "responses"\n'
        'env_key = "ROUTER_KEY"\n'
        # without these Codex 0.171 calls github.com (plugin sync) and chatgpt.com (analytics)
        "[analytics]\n"
        "enabled = false\n"
        "[features]\n"
        "plugins = false\n"
    )
    with ProxyTrap() as trap:
        done = subprocess.run(
            [codex, "exec", "--skip-git-repo-check", "Run a command that prints codex-tool-ok"],
            cwd=work,
            env={**base_env(tmp_path), **trap.env(), "CODEX_HOME": str(home), "ROUTER_KEY": "unused"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    assert ANSWER in done.stdout
    assert trap.attempts == [], f"Codex tried to reach beyond loopback: {trap.attempts}"
    first, second = [request.json for request in upstream.requests][-2:]
    assert first["stream"] is True and "exec_command" in [t["function"]["name"] for t in first["tools"]]
    # the second turn carries the call and the command's output back, in chat form
    assistant, tool = second["messages"][-2:]
    assert assistant["tool_calls"][0]["function"]["name"] == "exec_command"
    assert tool["role"] == "tool" and tool["tool_call_id"] == assistant["tool_calls"][0]["id"]
    assert "codex-tool-ok" in tool["content"]
