"""End to end: resuming a broken stream with the real SmolLM2-135M model (llama-cpp-python's server) as the
other upstream (docs/resume.md).

llama-cpp-python's server cannot continue a final assistant message: it renders it closed and opens a new
assistant turn, and ignores vLLM's `continue_final_message`. These tests show that against the real server
(the prompt-token arithmetic), that a resuming route therefore passes over it (its default
`continuation: none`) to an upstream that can continue, or ends the stream with its error event when there
is none, and what a client would read if a table declared otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from router.upstreams.continuation import continuation_body
from tests.e2e.test_smollm2 import model_server  # noqa: F401  (the model server fixture)
from tests.fakes import FakeOpenAI
from tests.observability import scrape
from tests.support.router_server import RunningRouter, table

pytestmark = pytest.mark.model

QUESTION = [{"role": "user", "content": "Count from one to ten in words."}]
# What the fake first upstream says before it dies: split into word chunks, "One," " two," " three,"
ANSWER = "One, two, three, four, five, six, seven, eight, nine, ten."
PARTIAL = "One, two, three,"
BROKEN_AFTER = 3
# SmolLM2's chat template (ChatML) closes a message and opens the next assistant turn with these
CLOSE_AND_REOPEN = "<|im_end|>\n<|im_start|>assistant\n"
MAX_TOKENS = 24


def chat(base: str, body: dict[str, Any]) -> dict[str, Any]:
    """A whole answer from the model server, at temperature 0."""
    full = {"model": "smollm2", "temperature": 0, "max_tokens": MAX_TOKENS, **body}
    response = httpx.post(base + "/chat/completions", json=full, timeout=90)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def token_count(base: str, text: str) -> int:
    """Tokens of `text` by the model's own tokenizer (llama-cpp-python's /extras/tokenize/count)."""
    root = base.removesuffix("/v1")
    response = httpx.post(root + "/extras/tokenize/count", json={"input": text}, timeout=30)
    assert response.status_code == 200, response.text
    return int(response.json()["count"])


def test_llama_cpp_python_closes_a_final_assistant_message(model_server: str) -> None:  # noqa: F811
    alone = chat(model_server, {"messages": QUESTION})["usage"]["prompt_tokens"]
    partial, reopen = token_count(model_server, PARTIAL), token_count(model_server, CLOSE_AND_REOPEN)
    assert partial > 0 and reopen > 0
    prefilled = [*QUESTION, {"role": "assistant", "content": PARTIAL}]
    plain = chat(model_server, {"messages": prefilled})
    # a server that continued the message would have read `alone + partial` tokens; this one also read the
    # end of the assistant turn and the header of a new one
    assert plain["usage"]["prompt_tokens"] == alone + partial + reopen
    # vLLM's fields (what `continuation: vllm` or `llama_cpp` would send) change nothing: they are ignored
    asked = continuation_body("vllm", {"messages": QUESTION}, PARTIAL)
    explicit = chat(model_server, asked)
    assert explicit["usage"]["prompt_tokens"] == alone + partial + reopen
    assert explicit["choices"][0]["message"]["content"] == plain["choices"][0]["message"]["content"]


# ---------------------------------------------------------------------------------------------- the router


@pytest.fixture
def broken() -> Iterator[FakeOpenAI]:
    """The first upstream: says ANSWER word by word (and, as told, breaks)."""
    with FakeOpenAI(["smollm2"], reply_text=ANSWER) as fake:
        yield fake


@pytest.fixture
def spare() -> Iterator[FakeOpenAI]:
    """An upstream that continues a final assistant message as vLLM does (the rest of ANSWER)."""
    with FakeOpenAI(["smollm2"], reply_text=ANSWER) as fake:
        fake.continuation = "vllm"
        yield fake


def resuming_router(
    broken: FakeOpenAI, spare: FakeOpenAI, base_url: str, continuation: str | None = None
) -> RunningRouter:
    """/chat/flaky on the broken fake, resuming; its fallbacks in order: /chat/local, the real SmolLM2
    server (declared with `continuation`, or with the default of an openai upstream, `none`, when None),
    then /chat/spare, the fake that continues as vLLM does."""
    local: dict[str, Any] = {"type": "openai", "base_url": base_url}
    if continuation is not None:
        local["continuation"] = continuation
    text = table(
        {
            "broken": {"type": "openai", "base_url": broken.base_url},
            "local": local,
            "spare": {"type": "openai", "base_url": spare.base_url, "continuation": "vllm"},
        },
        [
            {
                "path": "/chat/flaky",
                "name": "flaky",
                "model": "smollm2",
                "upstream": "broken",
                "fallbacks": ["/chat/local", "/chat/spare"],
                "max_retries": 0,
                "resume": {"enabled": True, "max_resumes": 1},
            },
            {"path": "/chat/local", "name": "local", "model": "smollm2", "upstream": "local"},
            {"path": "/chat/spare", "name": "spare", "model": "smollm2", "upstream": "spare"},
        ],
        # No health probes: llama-cpp-python ends a stream in progress when another request waits (see
        # tests/e2e/test_smollm2_ollama.py).
        defaults={"stall_timeout": 30, "timeout": 60, "max_tokens": MAX_TOKENS},
    )
    return RunningRouter.from_yaml(text)


def stream(router: RunningRouter) -> tuple[str, list[dict[str, Any]], bool, str]:
    """A streamed /chat/flaky answer: the text a client reads, every event, whether [DONE] came, and the
    X-Router-Upstream header (the upstream that started the answer)."""
    body = {"messages": QUESTION, "stream": True, "temperature": 0}
    events: list[dict[str, Any]] = []
    done = False
    with httpx.stream("POST", router.url + "/chat/flaky", json=body, timeout=90) as response:
        assert response.status_code == 200, response.read()
        upstream = response.headers["x-router-upstream"]
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                continue
            events.append(json.loads(line[len("data: ") :]))
    text = "".join(
        choice["delta"].get("content") or "" for event in events for choice in event.get("choices", [])
    )
    return text, events, done, upstream


def served_by(events: list[dict[str, Any]]) -> list[str] | None:
    """The upstreams a resumed answer's finish chunk names (None: the answer was not resumed)."""
    marks = [event["router"]["upstreams"] for event in events if "router" in event]
    return marks[-1] if marks else None


def counted(router: RunningRouter, metric: str) -> float:
    """A counter's total over every route and cause (router_stream_resumes_total: streams resumed;
    router_stream_resume_failures_total: broken streams that found no upstream to continue them)."""
    return sum(v for (name, _), v in scrape(router).items() if name == metric)


def test_a_failure_before_the_answer_goes_to_the_real_model(
    broken: FakeOpenAI,
    spare: FakeOpenAI,
    model_server: str,  # noqa: F811
) -> None:
    # the control: /chat/local is up and first in line; a failure before the first byte fails over to it
    broken.set_behaviour("status", code=500)
    with resuming_router(broken, spare, model_server) as router:
        text, events, done, upstream = stream(router)
    assert upstream == "local" and done and text.strip()
    assert served_by(events) is None and spare.chat_count == 0


def test_a_resume_passes_over_llama_cpp_python(
    broken: FakeOpenAI,
    spare: FakeOpenAI,
    model_server: str,  # noqa: F811
) -> None:
    broken.set_behaviour("reset_mid_stream", after=BROKEN_AFTER)
    with resuming_router(broken, spare, model_server) as router:
        text, events, done, upstream = stream(router)
        assert counted(router, "router_stream_resumes_total") == 1
    # the first fallback, the real model, cannot continue: the answer went on on the second
    assert upstream == "broken" and served_by(events) == ["broken", "spare"]
    assert spare.continued == [PARTIAL]
    assert done and text == ANSWER  # the partial, then exactly the rest: nothing twice, nothing lost


def test_with_nowhere_else_to_go_the_stream_ends_with_its_error(
    broken: FakeOpenAI,
    spare: FakeOpenAI,
    model_server: str,  # noqa: F811
) -> None:
    broken.set_behaviour("reset_mid_stream", after=BROKEN_AFTER)
    with resuming_router(broken, spare, model_server) as router:
        spare.go_down()
        text, events, done, _ = stream(router)
        # the break was seen and a resume looked for: the spare is down, the real model cannot continue
        assert counted(router, "router_stream_resumes_total") == 0
        assert counted(router, "router_stream_resume_failures_total") == 1
    assert text == PARTIAL  # what the first upstream said, and nothing from SmolLM2
    assert "error" in events[-1] and not done  # the broken answer is not passed off as complete
    assert not any(c.get("finish_reason") for e in events for c in e.get("choices", []))


def test_declared_as_llama_cpp_it_would_start_over(
    broken: FakeOpenAI,
    spare: FakeOpenAI,
    model_server: str,  # noqa: F811
) -> None:
    # What `continuation: llama_cpp` (or vllm) on llama-cpp-python would do: the router resumes on it, as
    # told, but the server answers the closed turn anew; the client would read the beginning twice.
    broken.set_behaviour("reset_mid_stream", after=BROKEN_AFTER)
    with resuming_router(broken, spare, model_server, "llama_cpp") as router:
        text, events, done, _ = stream(router)
    assert served_by(events) == ["broken", "local"] and spare.chat_count == 0
    assert done and text.startswith(PARTIAL)
    continuation = text[len(PARTIAL) :]
    anew = chat(model_server, continuation_body("llama_cpp", {"messages": QUESTION}, PARTIAL))
    assert continuation == anew["choices"][0]["message"]["content"]  # exactly what the new turn says
    # and that is not a continuation: SmolLM2's new turn starts from the beginning again
    assert continuation.lstrip().startswith("One")
