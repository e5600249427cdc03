"""Token accounting over real sockets: `/metrics` (`router_tokens_total`) and the request log line, for both
upstream kinds, whole and streamed answers, and upstreams that report no usage (estimated, and marked so)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from router.observability.tokens import MESSAGE_OVERHEAD, estimate_prompt, estimate_tokens
from tests.fakes import FakeOllama, FakeOpenAI, wait_for
from tests.fakes._base import count_prompt_tokens
from tests.support.router_server import RunningRouter, table

KEY = "tokens-test-key-0123456789"
ADMIN = "tokens-admin-key-0123456789"
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hello to everyone"}]
ROUTES = {"/chat/ollama": "ollama", "/chat/local": "local"}


class Setup:
    def __init__(self, router: RunningRouter, log: Path, ollama: FakeOllama, openai: FakeOpenAI) -> None:
        self.router, self.log, self.ollama, self.openai = router, log, ollama, openai

    def chat(self, path: str, stream: bool, **body: Any) -> tuple[httpx.Response, str, list[dict[str, Any]]]:
        """Send one request; the answer, the content the client received, and the stream's chunks."""
        request = {"messages": MESSAGES, "stream": stream, **body}
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.stream("POST", self.router.url + path, json=request, headers=headers, timeout=10) as r:
            r.read()
        if not stream:
            answer = r.json()
            return r, answer["choices"][0]["message"]["content"], []
        chunks = [
            json.loads(line[6:])
            for line in r.text.splitlines()
            if line.startswith("data: ") and "[DONE]" not in line
        ]
        text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])
        return r, text, chunks

    def requests(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        lines = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [line for line in lines if line["event"] == "request"]

    def last_line(self, count: int) -> dict[str, Any]:
        wait_for(lambda: len(self.requests()) >= count)
        return self.requests()[count - 1]

    def tokens(self) -> dict[tuple[str, ...], float]:
        text = httpx.get(self.router.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN}"}).text
        found = {}
        for family in text_string_to_metric_families(text):
            if family.name == "router_tokens":
                for sample in family.samples:
                    if sample.name == "router_tokens_total":
                        labels = sample.labels
                        found[
                            tuple(
                                labels[n]
                                for n in ("route", "upstream", "key", "dialect", "type", "estimated")
                            )
                        ] = sample.value
        return found


@pytest.fixture
def setup(
    fake_ollama: FakeOllama,
    fake_openai: FakeOpenAI,
    tmp_path: Path,
    start_router: Callable[..., RunningRouter],
) -> Iterator[Setup]:
    log = tmp_path / "router.log"
    text = table(
        upstreams={
            "ollama": {"type": "ollama", "base_url": fake_ollama.base_url},
            "local": {"type": "openai", "base_url": fake_openai.base_url},
        },
        routes=[
            {"path": "/chat/ollama", "model": "qwen3:32b", "upstream": "ollama"},
            {"path": "/chat/local", "model": "smollm2", "upstream": "local"},
        ],
        logging={"file": str(log)},
        auth={"api_keys": [{"name": "app", "key": KEY}], "admin_keys": [{"name": "ops", "key": ADMIN}]},
    )
    yield Setup(start_router(text), log, fake_ollama, fake_openai)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("path", list(ROUTES))
def test_reported_tokens_reach_the_log_line_and_the_metrics(setup: Setup, path: str, stream: bool) -> None:
    response, _, chunks = setup.chat(path, stream)
    assert response.status_code == 200
    prompt, completion = count_prompt_tokens(MESSAGES), 5  # what the fakes report
    line = setup.last_line(1)
    assert (line["prompt_tokens"], line["completion_tokens"], line["tokens_estimated"]) == (
        prompt,
        completion,
        False,
    )
    assert line["dialect"] == "openai_chat" and line["key"] == "app"
    labels = (path, ROUTES[path], "app", "openai_chat")
    counted = setup.tokens()
    assert counted[(*labels, "prompt", "false")] == prompt
    assert counted[(*labels, "completion", "false")] == completion
    assert (*labels, "completion", "true") not in counted
    if stream:  # the client did not ask for usage: it gets none, though the router asked the upstream
        assert chunks and all(c["choices"] for c in chunks)
        assert all(c.get("usage") is None for c in chunks)
    if stream and path == "/chat/local":
        sent = setup.openai.last_request.json
        assert sent["stream_options"] == {"include_usage": True}


def test_a_client_that_asks_for_usage_gets_one_usage_chunk(setup: Setup) -> None:
    _, _, chunks = setup.chat("/chat/local", True, stream_options={"include_usage": True})
    usage = [c for c in chunks if not c["choices"]]
    assert len(usage) == 1 and usage[0]["usage"]["completion_tokens"] == 5
    assert setup.last_line(1)["tokens_estimated"] is False


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_upstream_without_usage_is_counted_from_what_was_relayed_and_marked(
    setup: Setup, stream: bool
) -> None:
    setup.openai.send_usage = False  # llama-cpp-python: no usage in streams, whatever was asked
    response, text, chunks = setup.chat("/chat/local", stream)
    assert response.status_code == 200 and text
    assert all(c["choices"] for c in chunks)
    prompt, completion = estimate_prompt(MESSAGES), estimate_tokens(len(text))
    assert prompt == -(-sum(len(m["content"]) for m in MESSAGES) // 4) + MESSAGE_OVERHEAD * len(MESSAGES)
    line = setup.last_line(1)
    assert (line["prompt_tokens"], line["completion_tokens"], line["tokens_estimated"]) == (
        prompt,
        completion,
        True,
    )
    labels = ("/chat/local", "local", "app", "openai_chat")
    counted = setup.tokens()
    assert counted[(*labels, "prompt", "true")] == prompt
    assert counted[(*labels, "completion", "true")] == completion
    assert (*labels, "completion", "false") not in counted


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_ollama_without_a_prompt_count_estimates_only_the_prompt(setup: Setup, stream: bool) -> None:
    setup.ollama.send_prompt_count = False  # Ollama leaves it out when the prompt came from its cache
    assert setup.chat("/chat/ollama", stream)[0].status_code == 200
    line = setup.last_line(1)
    assert (line["prompt_tokens"], line["completion_tokens"]) == (estimate_prompt(MESSAGES), 5)
    assert line["tokens_estimated"] is True
    labels = ("/chat/ollama", "ollama", "app", "openai_chat")
    counted = setup.tokens()
    assert counted[(*labels, "prompt", "true")] == estimate_prompt(MESSAGES)
    assert counted[(*labels, "completion", "false")] == 5


def test_counters_add_up_and_keep_the_older_per_route_totals(setup: Setup) -> None:
    for stream in (False, True, False):
        setup.chat("/chat/ollama", stream)
    setup.last_line(3)
    prompt = count_prompt_tokens(MESSAGES)
    labels = ("/chat/ollama", "ollama", "app", "openai_chat")
    assert setup.tokens()[(*labels, "prompt", "false")] == 3 * prompt
    metrics = httpx.get(setup.router.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN}"}).text
    assert f'router_prompt_tokens_total{{route="/chat/ollama"}} {3 * prompt:.1f}' in metrics
    assert 'router_completion_tokens_total{route="/chat/ollama"} 15.0' in metrics
