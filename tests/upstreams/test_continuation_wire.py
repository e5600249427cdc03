"""What each continuation mechanism puts on the wire (router.upstreams.continuation; docs/resume.md has the
sources for every field)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from router.upstreams.continuation import can_continue, continuation_body
from tests.fakes import FakeOpenAI
from tests.support.router_server import RunningRouter, table

BODY: dict[str, Any] = {
    "model": "m",
    "stream": True,
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Count to five."}],
}


@pytest.mark.parametrize("mechanism", ["vllm", "llama_cpp"])
def test_openai_servers_are_asked_to_continue_the_final_message_explicitly(mechanism: str) -> None:
    sent = continuation_body(mechanism, BODY, "One, two, th")
    assert sent["messages"][-1] == {"role": "assistant", "content": "One, two, th"}
    # vLLM refuses continue_final_message with its default add_generation_prompt (true); llama-server
    # (since it reads the flags) refuses the same pair, and builds before that continue by prefill alone
    assert sent["continue_final_message"] is True
    assert sent["add_generation_prompt"] is False
    assert sent["echo"] is False
    assert sent["messages"][:-1] == BODY["messages"]


@pytest.mark.parametrize("mechanism", ["vllm", "llama_cpp"])
def test_a_clients_own_echo_or_template_flags_cannot_undo_the_continuation(mechanism: str) -> None:
    # unknown fields pass through to openai upstreams: a client's echo: true would make the server repeat
    # the partial answer at the head of its continuation, and the client would read it twice
    client = {**BODY, "echo": True, "add_generation_prompt": True, "continue_final_message": False}
    sent = continuation_body(mechanism, client, "One, two")
    flags = (sent["echo"], sent["add_generation_prompt"], sent["continue_final_message"])
    assert flags == (False, False, True)


def test_ollama_gets_the_conversation_alone() -> None:
    sent = continuation_body("ollama", BODY, "One, two")
    assert set(sent) == set(BODY)
    assert sent["messages"][-1] == {"role": "assistant", "content": "One, two"}


def test_a_client_prefill_is_continued_as_one_message() -> None:
    # two assistant messages in a row: llama-server refuses them, Ollama joins them with a blank line
    prefilled = {**BODY, "messages": [*BODY["messages"], {"role": "assistant", "content": "Sure: "}]}
    sent = continuation_body("llama_cpp", prefilled, "one, two")
    assert sent["messages"][-1] == {"role": "assistant", "content": "Sure: one, two"}
    assert len(sent["messages"]) == len(prefilled["messages"])


def test_the_clients_body_is_left_alone() -> None:
    before = repr(BODY)
    continuation_body("vllm", BODY, "x")
    assert repr(BODY) == before


def test_none_cannot_continue() -> None:
    assert not can_continue("none")
    assert all(can_continue(m) for m in ("ollama", "vllm", "llama_cpp"))
    with pytest.raises(ValueError):
        continuation_body("none", BODY, "x")


# ---------------------------------------------------------------------------------------------- over sockets


@pytest.mark.parametrize("mechanism", ["vllm", "llama_cpp"])
def test_a_resume_sends_the_fields_whatever_the_client_sent(mechanism: str) -> None:
    """A client's `echo: true` passes through to openai upstreams like any unknown field; the resumed
    request must not carry it, or vLLM and llama-server would repeat the partial at the seam."""
    answer = "One, two, three, four, five."
    with FakeOpenAI(["m"], reply_text=answer) as first, FakeOpenAI(["m"], reply_text=answer) as second:
        first.set_behaviour("reset_mid_stream", after=2)
        if hasattr(second, "continuation"):  # fakes that continue a final assistant message as told
            second.continuation = mechanism
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
    assert content.startswith("One, two,")
