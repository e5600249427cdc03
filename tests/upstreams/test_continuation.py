"""The continuation body each mechanism asks for (router.upstreams.continuation), as a table."""

from __future__ import annotations

from typing import Any

import pytest

from router.resume import cause_of
from router.upstreams.continuation import can_continue, continuation_body
from router.upstreams.errors import (
    BadUpstreamResponse,
    UpstreamPoolExhausted,
    UpstreamReset,
    UpstreamStalled,
    UpstreamStatus,
)

USER = {"role": "user", "content": "hi"}
BODY: dict[str, Any] = {"messages": [USER], "stream": True, "max_tokens": 9}


@pytest.mark.parametrize(
    ("mechanism", "extra"),
    [
        ("ollama", {}),
        # llama-server reads vLLM's fields since May 2026 and continues by default before (docs/resume.md)
        ("llama_cpp", {"continue_final_message": True, "add_generation_prompt": False, "echo": False}),
        ("vllm", {"continue_final_message": True, "add_generation_prompt": False, "echo": False}),
    ],
)
def test_the_partial_answer_is_the_final_assistant_message(mechanism: str, extra: dict[str, Any]) -> None:
    body = continuation_body(mechanism, BODY, "Hello wor")
    assert body == {**BODY, "messages": [USER, {"role": "assistant", "content": "Hello wor"}], **extra}
    assert BODY["messages"] == [USER]  # the request's own body is left alone
    assert can_continue(mechanism)


def test_a_prefilled_assistant_message_is_continued_whole() -> None:
    prefill = {"messages": [USER, {"role": "assistant", "content": [{"type": "text", "text": "{"}]}]}
    body = continuation_body("vllm", prefill, '"a": 1')
    assert body["messages"] == [USER, {"role": "assistant", "content": '{"a": 1'}]


def test_nothing_relayed_yet_is_a_plain_retry() -> None:
    assert continuation_body("vllm", BODY, "") == BODY


def test_none_cannot_continue() -> None:
    assert not can_continue("none")
    with pytest.raises(ValueError, match="none"):
        continuation_body("none", BODY, "x")


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (UpstreamStalled("silent"), "stall"),
        (UpstreamReset("reset"), "reset"),
        (BadUpstreamResponse("not json"), "malformed"),
        (UpstreamStatus("failed mid-answer", status=500), "error"),
        (UpstreamStatus("rate limited", status=429), None),  # not the upstream's fault
        (UpstreamPoolExhausted("busy"), None),
        (RuntimeError("a bug"), None),
    ],
)
def test_causes(error: Exception, cause: str | None) -> None:
    assert cause_of(error) == cause
