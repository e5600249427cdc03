"""What each continuation mechanism puts on the wire beyond tests/upstreams/test_continuation.py: the fields
win over the client's own, over real sockets too (docs/resume.md has the sources for every field)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from router.upstreams.continuation import continuation_body
from tests.fakes import FakeOpenAI
from tests.support.router_server import RunningRouter, table

BODY: dict[str, Any] = {
    "model": "m",
    "stream": True,
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Count to five."}],
}


@pytest.mark.parametrize("mechanism", ["vllm", "llama_cpp"])
def test_a_clients_own_echo_or_template_flags_cannot_undo_the_continuation(mechanism: str) -> None:
    # unknown fields pass through to openai upstreams: a client's echo: true would make the server repeat
    # the partial answer at the head of its continuation, and the client would read it twice
    client = {**BODY, "echo": True, "add_generation_prompt": True, "continue_final_message": False}
    sent = continuation_body(mechanism, client, "One, two")
    flags = (sent["echo"], sent["add_generation_prompt"], sent["continue_final_message"])
    assert flags == (False, False, True)


# ---------------------------------------------------------------------------------------------- over sockets


@pytest.mark.parametrize("mechanism", ["vllm", "llama_cpp"])
def test_a_resume_sends_the_fields_whatever_the_client_sent(mechanism: str) -> None:
    """A client's `echo: true` passes through to openai upstreams like any unknown field; the resumed
    request must not carry it, or vLLM and llama-server would repeat the partial at the seam."""
    answer = "One, two, three, four, five."
    with FakeOpenAI(["m"], reply_text=answer) as first, FakeOpenAI(["m"], reply_text=answer) as second:
        first.set_behaviour("reset_mid_stream", after=2)
        second.continuation = mechanism  # it continues a final assistant message as that server would
        text = table(
            {
                "first": {"type": "openai", "base_url": first.base_url},
                "second": {"type": "openai", "base_url": second.base_url, "continuation": mechanism},
            },
            [
                {
                    "path": "/chat/m",
                    "model": "m",
                    "upstream": "first",
                    "max_retries": 0,
                    "fallbacks": ["/chat/spare"],
                    "resume": {"enabled": True},
                },
                {"path": "/chat/spare", "model": "m", "upstream": "second"},
            ],
        )
        body = {
            "messages": [{"role": "user", "content": "Count to five."}],
            "stream": True,
            "echo": True,
            "add_generation_prompt": True,
            "continue_final_message": False,
        }
        with RunningRouter.from_yaml(text) as router:
            received = httpx.post(router.url + "/chat/m", json=body, timeout=10).text
        sent = second.last_request.json
    assert sent["messages"][-1] == {"role": "assistant", "content": "One, two,"}
    assert (sent["echo"], sent["add_generation_prompt"], sent["continue_final_message"]) == (
        False,
        False,
        True,
    )
    assert received.rstrip().endswith("data: [DONE]")
    relayed = [json.loads(line[6:]) for line in received.splitlines() if line.startswith("data: {")]
    content = "".join(c["delta"].get("content") or "" for e in relayed for c in e.get("choices", []))
    assert content == answer
    assert second.continued == ["One, two,"]
