"""End to end: the real SmolLM2-135M model behind the router, streamed to the official SDK of each client
dialect other than OpenAI chat and Ollama (tests/e2e/test_smollm2.py and test_smollm2_ollama.py have
those): Anthropic Messages (`/v1/messages`) and OpenAI Responses (`/v1/responses`). Each asserts that real
text arrived in pieces and that the stream ended properly in its dialect (a stop reason, a terminal
event)."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest

from tests.e2e.test_smollm2 import model_server  # noqa: F401  (the model server fixture)
from tests.support.router_server import RunningRouter, table

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def router(model_server: str) -> Iterator[RunningRouter]:  # noqa: F811
    # No health probes: llama-cpp-python's server ends a stream in progress when another request (a probe
    # too) waits for the model (README, upstream quirks), which would cut these answers short at random.
    text = table(
        {"local": {"type": "openai", "base_url": model_server}},
        [
            {
                "path": "/chat/local",
                "name": "local",
                "model": "smollm2",
                "upstream": "local",
                "aliases": ["claude-local"],
                "timeout": 60,
                "max_tokens": 24,
            }
        ],
        defaults={"stall_timeout": 30},
    )
    with RunningRouter.from_yaml(text) as running:
        yield running


def test_real_model_streams_through_the_anthropic_messages_door(router: RunningRouter) -> None:
    client = anthropic.Anthropic(base_url=router.url, api_key="unused", max_retries=0, timeout=90)
    with client.messages.stream(
        model="claude-local", max_tokens=200, messages=[{"role": "user", "content": "Count from one to ten."}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len([p for p in pieces if p]) > 3, "the answer did not arrive in pieces"
    assert "".join(pieces).strip()
    assert final.stop_reason in ("end_turn", "max_tokens"), final.stop_reason
    assert "".join(b.text for b in final.content if b.type == "text") == "".join(pieces)
    # llama-cpp-python reports no usage in streams; a piece is a token, so the route's 24-token cap shows here
    assert len(pieces) <= 24


def test_real_model_streams_through_the_responses_door(router: RunningRouter) -> None:
    client = openai.OpenAI(base_url=router.url + "/v1", api_key="unused", max_retries=0, timeout=90)
    events = list(client.responses.create(model="local", input="Count from one to ten.", stream=True))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len([d for d in deltas if d]) > 3, "the answer did not arrive in pieces"
    assert "".join(deltas).strip()
    assert events[0].type == "response.created"
    last = events[-1]
    # a clean end: completed, or incomplete when the route's 24-token cap cut the answer
    assert last.type in ("response.completed", "response.incomplete"), [e.type for e in events[-3:]]
    assert last.response.status == last.type.removeprefix("response.")
    assert last.response.output_text == "".join(deltas)
